"""Data-consistency residual ``||M (F S x) - M y||`` of a reconstruction, per coil and per phase-encode line.

A solver predicts k-space ``F S x`` (the forward model of its image ``x``: coil maps ``S``, centred FFT ``F``);
``M`` keeps the acquired samples. The residual says how far the reconstruction is from the measured data,
where it is (which coil, which line) and, relative to ``||M y||``, how much of the data it leaves unexplained.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

from recon.errors import UsageError
from recon.sampling import SamplingMask

Array = Union[np.ndarray, torch.Tensor]


def _complex(x: Array, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    if not (t.is_complex() or t.is_floating_point()):
        raise UsageError(f"{name} must be complex (or real) k-space, got dtype {t.dtype}")
    return t.to(torch.complex128)


def _mask(mask: Array | None, kspace_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The mask as bool broadcastable to ``(S, C, H, W)``: ``(W,)``, ``(H, W)``, ``(S, H, W)``, ``(S, 1|C, H, W)``."""
    s, c, h, w = kspace_shape
    if mask is None:
        return torch.ones((1, 1, 1, w), dtype=torch.bool, device=device)
    m = mask.detach() if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
    if m.dtype != torch.bool:
        if not bool(torch.all((m == 0) | (m == 1))):
            raise UsageError("mask must be boolean (or 0/1)")
        m = m != 0
    return SamplingMask(m).for_kspace(kspace_shape, per_coil=True).to(device)


def dc_residual(kspace: Array, mask: Array | None, predicted_kspace: Array) -> dict[str, Any]:
    """Data-consistency residual of a reconstruction.

    Parameters
    ----------
    kspace: measured ``y``, ``(S, C, H, W)`` complex (unsampled points are ignored).
    mask: acquired samples, bool ``(W,)`` column mask, ``(H, W)``, ``(S, H, W)`` or broadcastable to
        ``(S, C, H, W)``; None = everything acquired.
    predicted_kspace: ``F S x``, ``(S, C, H, W)`` complex, the reconstruction's k-space per coil.

    Returns
    -------
    A dict (numpy arrays float64, in k-space units):

    * ``per_coil_line``: ``(S, C, W)`` ``||r[s, c, :, w]||`` over the readout: the residual map per coil/line;
    * ``per_coil``: ``(C,)`` norm over slices, readout and lines;
    * ``per_line``: ``(W,)`` norm over slices, coils and readout (0 on unsampled lines);
    * ``total``: ``||r||`` over everything; ``relative``: ``||r|| / ||M y||`` (nan when ``M y = 0``);

    with ``r = M (F S x) - M y``.
    """
    y = _complex(kspace, "kspace")
    p = _complex(predicted_kspace, "predicted_kspace").to(y.device)
    if y.ndim != 4:
        raise UsageError(f"kspace must have shape (slices, coils, H, W), got {tuple(y.shape)}")
    if p.shape != y.shape:
        raise UsageError(f"predicted k-space {tuple(p.shape)} does not match the measured k-space {tuple(y.shape)}")
    m = _mask(mask, tuple(y.shape), y.device)
    r2 = torch.where(m, p - y, torch.zeros((), dtype=y.dtype, device=y.device)).abs() ** 2  # (S, C, H, W)
    y2 = torch.where(m, y, torch.zeros((), dtype=y.dtype, device=y.device)).abs() ** 2
    per_coil_line = r2.sum(dim=2)  # (S, C, W)
    total2 = float(per_coil_line.sum())
    ref2 = float(y2.sum())
    return {
        "per_coil_line": per_coil_line.sqrt().cpu().numpy(),
        "per_coil": per_coil_line.sum(dim=(0, 2)).sqrt().cpu().numpy(),
        "per_line": per_coil_line.sum(dim=(0, 1)).sqrt().cpu().numpy(),
        "total": total2 ** 0.5,
        "relative": (total2 / ref2) ** 0.5 if ref2 > 0 else float("nan"),
    }
