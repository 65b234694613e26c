"""Parallel-imaging calibration (reference) lines and partial-Fourier facts from raw-file headers.

Mappings (``data_specs/calibration_and_partial_fourier.md``):

* twix: the ``refscan`` scans (MDH flag ``PATREFSCAN``; with ``PATREFANDIMASCAN`` they are also image
  lines) are read like the image scans and placed on the same ``(slices, coils, H, W)`` grid:
  ``RawData.calibration`` with ``RawData.calibration_mask`` ``(W,)``. ``sPat.lAccelFactPE`` /
  ``lAccelFact3D`` give the acceleration, ``sPat.lRefLinesPE`` (else the number of distinct refscan lines)
  the reference-line count; ``sKSpace.ucPhasePartialFourier`` / ``ucReadoutPartialFourier`` the
  partial-Fourier fractions (Siemens codes 1, 2, 4, 8, 16 = 4/8, 5/8, 6/8, 7/8, off).
* MRD: acquisitions flagged ``ACQ_IS_PARALLEL_CALIBRATION`` or ``..._AND_IMAGING`` (bits 20, 21) ->
  ``calibration``; ``encoding.parallelImaging.accelerationFactor`` the acceleration.

:func:`calibration_kspace` is what the calibrating methods use: the image k-space with the reference lines
filled in where the image has none (``mask | calibration_mask``).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

__all__ = ["SIEMENS_PF", "siemens_partial_fourier", "read_twix_refscan", "calibration_kspace",
           "calibration_summary", "pat_attrs"]

#: Siemens ``sKSpace.uc*PartialFourier`` code -> sampled fraction
SIEMENS_PF = {1: 0.5, 2: 0.625, 4: 0.75, 8: 0.875, 16: 1.0}


def siemens_partial_fourier(code: Any) -> float | None:
    """The sampled fraction for a Siemens partial-Fourier code (None when unknown/absent)."""
    try:
        return SIEMENS_PF.get(int(code))
    except (TypeError, ValueError):
        return None


def pat_attrs(yaps: dict) -> dict[str, Any]:
    """Header attributes from a twix MeasYaps: acceleration, reference lines, partial Fourier."""
    pat = yaps.get("sPat", {}) or {}
    ksp = yaps.get("sKSpace", {}) or {}
    out: dict[str, Any] = {}
    for key, src in (("acceleration", "lAccelFactPE"), ("acceleration_3d", "lAccelFact3D"),
                     ("reference_lines_pe", "lRefLinesPE")):
        v = pat.get(src)
        if isinstance(v, (int, float)) and v > 0:
            out[key] = int(v)
    for key, src in (("partial_fourier_pe", "ucPhasePartialFourier"),
                     ("partial_fourier_readout", "ucReadoutPartialFourier")):
        frac = siemens_partial_fourier(ksp.get(src))
        if frac is not None:
            out[key] = frac
    return out


def read_twix_refscan(ref_scan: Any, dim_order: tuple[str, ...], remove_os: bool, front: int, width: int,
                      n_slices_kspace: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The twix ``refscan`` category on the image grid: ``(slices, coils, H, width)`` and its line mask.

    ``front`` is the number of lines the reader added in front of the image lines (so that the centre lands
    at ``W // 2``). Returns None when the reference scans do not fit the image grid (3D partitions, a
    different slice count or readout).
    """
    for dim in dim_order:
        ref_scan.flags["average"][dim] = dim in ("Ave", "Seg")
    ref_scan.flags["remove_os"] = remove_os
    ref_scan.flags["regrid"] = False
    ref_scan.flags["squeeze_singletons"] = False
    ref_scan.flags["squeeze_ave_dims"] = False
    ref_scan.flags["zf_missing_lines"] = False
    ref_scan.flags["skip_empty_lead"] = False
    with contextlib.redirect_stdout(io.StringIO()):
        arr = np.asarray(ref_scan[:], dtype=np.complex64).reshape(ref_scan.shape)
    sizes = dict(zip(dim_order, arr.shape))
    if sizes["Par"] > 1:
        return None
    lin_axis = dim_order.index("Lin")
    n_lin = arr.shape[lin_axis]
    if front + n_lin > width:
        return None
    pad = [(0, 0)] * arr.ndim
    pad[lin_axis] = (front, width - front - n_lin)
    arr = np.pad(arr, pad)
    n_cha, n_col = arr.shape[-2], arr.shape[-1]
    k = arr.reshape(-1, width, n_cha, n_col).transpose(0, 2, 3, 1)
    if k.shape[0] != n_slices_kspace:
        return None
    lines = np.zeros(width, dtype=bool)
    for mdb in ref_scan.mdb_list:
        lin = int(mdb.mdh.Counter.Lin)
        if front + lin < width:
            lines[front + lin] = True
    return np.ascontiguousarray(k), lines


def calibration_kspace(raw: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(kspace, mask)`` for calibration: the image k-space with the reference lines filled in where the
    image has none, and the union mask ``(W,)`` (the input's own when it has no calibration data)."""
    if raw.calibration is None or raw.calibration_mask is None:
        return raw.kspace, raw.mask
    cal = np.asarray(raw.calibration_mask, dtype=bool)
    mask = np.ones(raw.kspace.shape[-1], dtype=bool) if raw.mask is None else np.asarray(raw.mask, dtype=bool)
    if mask.ndim != 1:
        return raw.kspace, raw.mask
    fill = cal & ~mask
    k = raw.kspace.copy()
    k[..., fill] = raw.calibration[..., fill]
    return k, mask | cal


def calibration_summary(raw: Any) -> dict[str, Any]:
    """What ``recon info`` shows about calibration data (JSON-serialisable)."""
    if raw.calibration_mask is None:
        return {"reference_lines": 0}
    cal = np.asarray(raw.calibration_mask, dtype=bool)
    idx = np.flatnonzero(cal)
    mask = raw.mask
    separate = int((cal & ~np.asarray(mask, bool)).sum()) if mask is not None and np.ndim(mask) == 1 else 0
    separate = separate or int(raw.header.attrs.get("calibration_only_lines", 0) or 0)  # MRD: calibration-only
    return {"reference_lines": int(cal.sum()),
            "reference_line_range": [int(idx[0]), int(idx[-1]) + 1] if idx.size else None,
            "reference_mode": "separate" if separate else "integrated"}
