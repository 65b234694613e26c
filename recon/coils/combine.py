"""Coil combination: root sum of squares and sensitivity-weighted (SENSE, "adaptive") combination."""
from __future__ import annotations

import torch

from recon.arrays import rss as _rss
from recon.coils._tensor import ArrayLike, as_complex_tensor
from recon.errors import UsageError


def rss(coil_images: ArrayLike, dim: int = -3) -> torch.Tensor:
    """Root sum of squares over the coil axis ``dim``: ``(S, C, H, W)`` -> ``(S, H, W)`` float32 tensor, for any
    array-like input (checked and made complex64 first; :func:`recon.arrays.rss` does the sum)."""
    return _rss(as_complex_tensor(coil_images, "coil_images", (2, 3, 4, 5)), axis=dim)


def sense_combine(coil_images: ArrayLike, maps: ArrayLike) -> torch.Tensor:
    """Least-squares combination of fully sampled coil images with sensitivity maps.

    ``x(r) = sum_c conj(S_c(r)) y_c(r) / sum_c |S_c(r)|^2`` (0 where the maps are 0), the SENSE solution for
    an unaccelerated acquisition; with unit-norm maps (ESPIRiT, Walsh) it is ``sum_c conj(S_c) y_c``.

    Parameters
    ----------
    coil_images: ``(S, C, H, W)`` or ``(C, H, W)`` complex.
    maps: the same shape (one set of maps), broadcastable.

    Returns
    -------
    ``(S, H, W)`` or ``(H, W)`` complex64 image.
    """
    y = as_complex_tensor(coil_images, "coil_images", (3, 4))
    s = as_complex_tensor(maps, "maps", (3, 4), y.device)
    try:
        torch.broadcast_shapes(y.shape, s.shape)
    except RuntimeError:
        raise UsageError(f"maps of shape {tuple(s.shape)} do not fit coil images of shape {tuple(y.shape)}") from None
    num = torch.sum(s.conj() * y, dim=-3)
    den = torch.sum(s.real ** 2 + s.imag ** 2, dim=-3)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))
