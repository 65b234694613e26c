"""Periodic cubic resampling of smooth image-space fields (coil maps, eigenvalue maps) onto a finer grid.

Grids are centred (``data_specs/conventions.md``): sample ``i`` of an axis of length ``N`` sits at
``(i - N // 2) / N`` of the field of view, so the finer grid's centre pixel coincides with the coarse one's.
"""
from __future__ import annotations

import torch


def _keys_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Keys cubic convolution weights (a = -0.5) for taps at offsets -1, 0, 1, 2 of fractional position ``t``."""
    t2, t3 = t * t, t * t * t
    return [
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    ]


def resample_matrix(length: int, size: int, device: torch.device | None = None) -> torch.Tensor:
    """``(size, length)`` float32 matrix of periodic cubic interpolation from ``length`` to ``size`` samples."""
    i = torch.arange(size, dtype=torch.float64)
    pos = (i - size // 2) * (length / size) + length // 2
    i0 = torch.floor(pos)
    t = pos - i0
    i0 = i0.to(torch.long)
    mat = torch.zeros(size, length, dtype=torch.float64)
    rows = torch.arange(size)
    for offset, w in zip((-1, 0, 1, 2), _keys_weights(t)):
        mat.index_put_((rows, torch.remainder(i0 + offset, length)), w, accumulate=True)
    return mat.to(device=device, dtype=torch.float32)


def resample_2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample the last two axes of ``x`` (``(..., h, w)``, periodic, centred) to ``size`` = ``(H, W)``.

    Separable Keys cubic interpolation (a = -0.5), applied as two small dense real matrix products.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    rh = resample_matrix(h, size[0], x.device)
    rw = resample_matrix(w, size[1], x.device).transpose(0, 1)
    lead = x.shape[:-2]
    if x.is_complex():
        # real matrix products on (real, imag) planes: several times faster than complex matmul on CPU
        planes = torch.view_as_real(x.reshape(-1, h, w)).permute(0, 3, 1, 2).reshape(-1, h, w)
        out = (rh @ planes @ rw).reshape(-1, 2, size[0], size[1]).permute(0, 2, 3, 1).contiguous()
        return torch.view_as_complex(out).reshape(lead + tuple(size))
    return (rh.to(x.dtype) @ x.reshape(-1, h, w) @ rw.to(x.dtype)).reshape(lead + tuple(size))
