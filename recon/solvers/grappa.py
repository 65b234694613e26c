"""GRAPPA (Griswold et al. 2002) for Cartesian k-space undersampled along the phase encode (W), for any
column mask: equispaced, fastMRI random, or otherwise irregular.

Pattern-specific ("arbitrary Cartesian") GRAPPA: the kernel covers ``kernel_size[0]`` readout points (H)
times a window of ``kernel_size[1]`` phase-encode lines centred on the target line. Around each missing line,
the acquired lines inside that window form its *sampling pattern* (their offsets from the target). One set of
weights per distinct pattern and slice is calibrated on the fully sampled centre (ACS), using only the
pattern's acquired source lines, by Tikhonov-regularised least squares scaled to the calibration matrix

    W = (S^H S + lam I)^{-1} S^H T,     lam = reg * ||S||_F^2 / columns

with ``S`` the source patches at every ACS position where the whole pattern (target included) fits and ``T``
the targets; all targets that share a pattern are then filled in one batched product. A missing line with no
acquired line inside the window is left at zero (counted in ``unfilled_lines``): synthesising it from far-away
lines was measured to be worse than leaving it empty. Acquired lines are kept exactly. The filled k-space is
combined by root sum of squares.

The window defaults to the ACS width: ``2 * clamp((acs - 3) // 4, 1, 3) + 1`` lines (3 lines for an 8-line ACS,
7 for 15 lines): wide patterns calibrated on few ACS positions, and sources three or more lines away, were
measured to hurt (bundled sample, fastMRI random 8x with an 8-line ACS: 3-line window 19.13 dB, 7-line window
18.20, zero filling 18.48).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recon.errors import DataError, UsageError
from recon.operators import ifft2c
from recon.sampling import SamplingMask
from recon.solvers.result import SolverResult
from recon.solvers.sense import as_complex


def column_mask(mask: Any, width: int, height: int | None = None) -> np.ndarray:
    """A ``(W,)`` bool mask from ``(W,)``, ``(1, 1, 1, W)``-like or 2D masks constant along H.

    Raises :class:`UsageError` for a 2D mask that varies along the readout (GRAPPA needs 1D undersampling).
    """
    m = SamplingMask(mask).numpy(bool)
    if m.shape[-1] != width:
        raise UsageError(f"mask of shape {m.shape} does not fit {width} phase-encode lines")
    m2 = m.reshape(-1, width)
    if not (m2 == m2[:1]).all():
        raise UsageError("GRAPPA needs Cartesian data undersampled along the phase encode only (a column mask); "
                         "this mask varies along the readout or between slices")
    return m2[0].copy()


def acs_lines(cols: np.ndarray) -> tuple[int, int]:
    """``[start, end)`` of the contiguous run of sampled lines through the centre ``W // 2`` (empty if unsampled)."""
    w = cols.shape[0]
    c = w // 2
    if not cols[c]:
        return c, c
    a, b = c, c + 1
    while a > 0 and cols[a - 1]:
        a -= 1
    while b < w and cols[b]:
        b += 1
    return a, b


def default_extent(acs_width: int) -> int:
    """The kernel's phase-encode window (odd number of lines) for an ACS of ``acs_width`` lines."""
    return 2 * min(3, max(1, (acs_width - 3) // 4)) + 1


def _pattern(cols: np.ndarray, target: int, half: int, reach: int) -> tuple[int, ...]:
    """Offsets from ``target`` of the acquired lines within ``half`` lines of it, nearest first, dropping the
    farther ones that would make the pattern (target included) span more than ``reach`` lines."""
    w = cols.shape[0]
    near = sorted((d for d in range(-half, half + 1) if d and 0 <= target + d < w and cols[target + d]),
                  key=lambda d: (abs(d), d))
    chosen: list[int] = []
    for d in near:
        cand = chosen + [d]
        if max(max(cand), 0) - min(min(cand), 0) <= reach:
            chosen = cand
    return tuple(sorted(chosen))


def _line_patches(kpad: torch.Tensor, lines: torch.Tensor, kh: int) -> torch.Tensor:
    """``(S, H, n, C * kh)``: at each readout row, the ``kh`` readout points of every coil of each line in
    ``lines``; ``kpad`` is k-space ``(S, C, H + 2 (kh // 2), W)`` zero-padded along H."""
    s, c = kpad.shape[:2]
    win = kpad[..., lines].unfold(2, kh, 1)  # (S, C, H, n, kh)
    return win.permute(0, 2, 3, 1, 4).reshape(s, win.shape[2], lines.numel(), c * kh)


def grappa(
    kspace: Any,
    mask: Any,
    *,
    kernel_size: tuple[int, int | None] = (5, None),
    reg: float = 1e-3,
    fill_range: tuple[int, int] | None = None,
    min_acs: int | None = None,
    device: Any = None,
    calibration: Any = None,
    calibration_mask: Any = None,
) -> SolverResult:
    """Fill the missing phase-encode lines of ``kspace`` ``(S, C, H, W)`` and return the RSS image.

    Parameters
    ----------
    kspace: undersampled k-space (numpy or torch); unsampled lines are ignored.
    mask: the column mask ``(W,)`` (or any array of that last axis constant elsewhere).
    kernel_size: ``(readout points, phase-encode window in lines)``, both odd; window None (default) =
        :func:`default_extent` of the ACS width (3 to 7 lines).
    reg: relative Tikhonov weight of the calibration.
    fill_range: ``[start, end)`` of the lines to synthesise (the header's ``acquired_pe``); default all.
    min_acs: the fewest ACS lines accepted (default 3).
    device: torch device.
    calibration: separate reference (ACS) k-space ``(S, C, H, W)`` on the same grid (twix ``refscan``, MRD
        ``ACQ_IS_PARALLEL_CALIBRATION``): the kernels are calibrated on it instead of on ``kspace``'s centre;
        the filled k-space keeps only ``kspace``'s own lines.
    calibration_mask: ``(W,)`` the lines ``calibration`` holds (required with it).

    Returns
    -------
    :class:`SolverResult` with ``image`` = the filled k-space's coil images combined by RSS ``(S, H, W)``
    (real, float32), ``parameters`` the kernel, ACS and number of calibrated patterns, ``extras["kspace"]``
    the filled k-space ``(S, C, H, W)``.

    Raises
    ------
    DataError: no (or too narrow) fully sampled centre.
    UsageError: a 2D mask, a bad kernel size or regularisation.
    """
    start = time.perf_counter()
    k = as_complex(kspace, device, "kspace")
    if k.ndim != 4:
        raise UsageError(f"k-space must have shape (slices, coils, H, W), got {tuple(k.shape)}")
    ww = k.shape[-1]
    kh, ky = _check_kernel(kernel_size, reg)
    cols = column_mask(mask, ww)
    kc, a, b = _acs(k, cols, calibration, calibration_mask, min_acs)
    lo, hi = (0, ww) if fill_range is None else (int(fill_range[0]), int(fill_range[1]))
    targets = [t for t in range(lo, hi) if not cols[t]]
    if ky is None:
        ky = default_extent(b - a)
    reach = b - a - 2  # every pattern fits at >= 2 ACS positions
    groups: dict[tuple[int, ...], list[int]] = {}
    for t in targets:
        off = _pattern(cols, t, ky // 2, reach)
        if off:
            groups.setdefault(off, []).append(t)

    out = k * torch.as_tensor(cols, device=k.device).to(k.real.dtype)
    unfilled = len(targets) - sum(len(v) for v in groups.values())
    unfilled += _fill(out, k, kc, groups, a, b, kh, reg)
    images = ifft2c(out)
    rss = (images.real.square() + images.imag.square()).sum(dim=1).sqrt()
    result = SolverResult(
        image=rss, iterations=0, seconds=time.perf_counter() - start,
        parameters={"solver": "grappa", "kernel_size": [kh, ky], "reg": float(reg), "acs": [int(a), int(b)],
                    "calibration": "reference lines" if kc is not None else "image centre",
                    "patterns": len(groups), "filled_lines": len(targets) - unfilled, "unfilled_lines": unfilled},
        extras={"kspace": out},
    )
    return result


def _check_kernel(kernel_size: tuple[int, int | None], reg: float) -> tuple[int, int | None]:
    """``(readout points, phase-encode window or None)`` of a valid ``kernel_size``; a :class:`UsageError` for a
    bad kernel or a negative ``reg``."""
    if len(kernel_size) != 2:
        raise UsageError(f"GRAPPA kernel_size must be (readout points, phase-encode lines), got {kernel_size}")
    kh = int(kernel_size[0])
    ky = None if kernel_size[1] is None else int(kernel_size[1])
    if kh < 1 or kh % 2 == 0 or (ky is not None and (ky < 3 or ky % 2 == 0)):
        raise UsageError("GRAPPA kernel_size must be (odd readout points, odd phase-encode window >= 3 or None), "
                         f"got {kernel_size}")
    if not reg >= 0:
        raise UsageError(f"GRAPPA reg must be >= 0, got {reg}")
    return kh, ky


def _acs(k: torch.Tensor, cols: np.ndarray, calibration: Any, calibration_mask: Any, min_acs: int | None
         ) -> tuple[torch.Tensor | None, int, int]:
    """``(calibration k-space or None, ACS start, ACS end)``: the contiguous fully sampled lines through the
    centre of ``calibration`` (with its line mask) or of ``k``'s own lines; a :class:`DataError` when fewer
    than ``min_acs`` (default 3)."""
    ww = k.shape[-1]
    if calibration is not None:
        kc = as_complex(calibration, k.device, "calibration")
        if tuple(kc.shape) != tuple(k.shape) or calibration_mask is None:
            raise UsageError(f"GRAPPA calibration of shape {tuple(kc.shape)} (with its line mask) must match "
                             f"k-space {tuple(k.shape)}")
        a, b = acs_lines(column_mask(calibration_mask, ww))
    else:
        kc = None
        a, b = acs_lines(cols)
    need = 3 if min_acs is None else max(int(min_acs), 2)
    if b - a < need:
        raise DataError(
            f"GRAPPA needs a fully sampled k-space centre (ACS) of at least {need} phase-encode lines; "
            f"found {b - a} contiguous lines through the centre"
        )
    return kc, a, b


def _fill(out: torch.Tensor, k: torch.Tensor, kc: torch.Tensor | None, groups: dict[tuple[int, ...], list[int]],
          a: int, b: int, kh: int, reg: float) -> int:
    """Calibrate one kernel per sampling pattern (``groups``: source offsets -> target lines) on the ACS lines
    ``[a, b)`` of ``kc`` (or ``k``) and fill its target lines of ``out`` in place; returns the number of lines
    left unfilled (patterns that fit nowhere in the ACS)."""
    _, _, hh, ww = k.shape
    pad = kh // 2
    kpad = F.pad(out.reshape(-1, hh, ww), (0, 0, pad, pad)).reshape(k.shape[:2] + (hh + 2 * pad, ww))
    s, c = k.shape[:2]
    p1 = c * kh
    # Gram blocks of every pair of ACS lines, once: M[l1, l2] = sum_h X_l1(h)^H X_l2(h), (S, n, n, P1, P1);
    # a pattern's normal equations are sums of these blocks over its calibration positions
    acs = torch.arange(a, b, device=k.device)
    kcal = kpad if kc is None else F.pad(kc.reshape(-1, hh, ww), (0, 0, pad, pad)).reshape(kpad.shape)
    x = _line_patches(kcal, acs, kh)  # (S, H, n, P1)
    gram_lines = torch.einsum("shlp,shmq->slmpq", x.conj(), x)
    centre = torch.arange(c, device=k.device) * kh + pad  # the target point of each coil within a patch
    unfilled = 0
    for offsets, lines in groups.items():
        off = torch.as_tensor(offsets, device=k.device)
        pos = torch.arange(a, b, device=k.device)
        pos = pos[(pos + off.min() >= a) & (pos + off.max() < b)]
        if pos.numel() == 0:
            unfilled += len(lines)
            continue
        i = (pos[:, None] + off[None, :]) - a  # (npos, O) ACS-relative source lines
        o = len(offsets)
        gram = gram_lines[:, i[:, :, None], i[:, None, :]].sum(1)  # (S, O, O, P1, P1)
        gram = gram.permute(0, 1, 3, 2, 4).reshape(s, o * p1, o * p1)
        cross = gram_lines[:, i, (pos - a)[:, None]].sum(1)[..., centre]  # (S, O, P1, C)
        cross = cross.reshape(s, o * p1, c)
        lam = reg * gram.diagonal(dim1=-2, dim2=-1).real.sum(-1) / (o * p1)
        eye = torch.eye(o * p1, dtype=gram.dtype, device=gram.device)
        # Cholesky (the system is Hermitian positive definite); batched complex LU in MKL fails with threads
        chol = torch.linalg.cholesky(gram + lam.clamp_min(1e-30)[:, None, None] * eye)
        weights = torch.cholesky_solve(cross, chol)  # (S, O*P1, C)
        tl = torch.as_tensor(lines, device=k.device)
        src = torch.stack([_line_patches(kpad, tl + int(v), kh) for v in offsets], dim=3)  # (S, H, nT, O, P1)
        filled = (src.reshape(s, -1, o * p1) @ weights).reshape(s, hh, len(lines), c).permute(0, 3, 1, 2)
        out[..., tl] = filled
    return unfilled
