"""Centred orthonormal FFTs on torch tensors (complex64, any leading batch dims, CPU or GPU, autograd).

Convention (``data_specs/conventions.md``): ``image = fftshift(ifft2(ifftshift(k), norm="ortho"))`` over
(H, W) = (readout, phase encode), the same as fastMRI's ``fft2c``/``ifft2c`` without the trailing
real/imaginary axis.

Speed: the two shifts are not done as copies (``roll``). With ``c = N // 2`` along an axis of length N,

    fftshift(fft(ifftshift(x)))[m] = sum_n x[n] exp(-2 pi i (m - c)(n - c) / N)
                                   = p[m] * fft(p * x)[m] * exp(-2 pi i c^2 / N),   p[n] = exp(2 pi i c n / N)

so the centred transform is a modulation, a plain FFT and a modulation; for even N, ``p`` is the real
checkerboard ``(-1)^n`` and the constant is ``(-1)^(N/2)``. The modulations are precomputed per shape
(:func:`centred_phases`) and the output one is applied in place. :class:`recon.operators.sense.Sense` folds
them into the coil maps and the mask, so that its FFTs cost no more than bare ones.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import torch

from recon.operators.base import ANY_SHAPE, Identity, LinearOperator

AXES = (-2, -1)


@lru_cache(maxsize=64)
def _phases_cached(sizes: tuple[int, ...], inverse: bool, dtype: torch.dtype, device: str):
    real_dtype = torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32
    all_even = all(n % 2 == 0 for n in sizes)
    p_in = p_out = None
    const = 1.0 + 0.0j
    for axis, n in enumerate(sizes):
        c = n // 2
        sign = 1.0 if inverse else -1.0
        const *= complex(
            math.cos(sign * 2 * math.pi * c * c / n), math.sin(sign * 2 * math.pi * c * c / n)
        )
        idx = torch.arange(n, dtype=torch.float64)
        if n % 2 == 0:
            vec = 1.0 - 2.0 * (idx % 2)  # (-1)^n, exact
            vec = vec.to(torch.complex128) if not all_even else vec
        else:
            vec = torch.exp(-sign * 2j * math.pi * c * idx / n)
        shape = [1] * len(sizes)
        shape[axis] = n
        vec = vec.reshape(shape)
        p_in = vec if p_in is None else p_in * vec
    if all_even:
        const = round(const.real)  # exactly +-1
        p_out = p_in * const
        target = real_dtype
    else:
        p_out = p_in * const
        target = torch.complex128 if real_dtype == torch.float64 else torch.complex64
    return p_in.to(target).contiguous().to(device), p_out.to(target).contiguous().to(device)


def centred_phases(
    sizes: Sequence[int], inverse: bool = False, dtype: torch.dtype = torch.complex64,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output modulations that turn a plain FFT into the centred one.

    ``fft2c(x) == p_out * fftn(p_in * x, norm="ortho")`` (``inverse=False``) and
    ``ifft2c(k) == p_out * ifftn(p_in * k, norm="ortho")`` (``inverse=True``) over the last ``len(sizes)``
    dims. Shapes ``sizes``; real (float) tensors of +-1 when every size is even, complex otherwise.
    Cached per (sizes, direction, dtype, device).
    """
    return _phases_cached(tuple(int(s) for s in sizes), bool(inverse), dtype, str(torch.device(device)))


def _centred(x: torch.Tensor, dim: Sequence[int], inverse: bool) -> torch.Tensor:
    dims = tuple(d % x.ndim - x.ndim for d in dim)
    fft = torch.fft.ifftn if inverse else torch.fft.fftn
    trailing = sorted(dims) == list(range(-len(dims), 0))
    if not trailing:  # arbitrary axes: plain shifts
        out = fft(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho")
        return torch.fft.fftshift(out, dim=dims)
    sizes = x.shape[-len(dims):]
    dtype = torch.complex128 if x.dtype in (torch.complex128, torch.float64) else torch.complex64
    p_in, p_out = centred_phases(sizes, inverse, dtype, x.device)
    out = fft(x * p_in, dim=dims, norm="ortho")
    return out.mul_(p_out)


def fft2c(image: torch.Tensor, dim: tuple[int, ...] = AXES) -> torch.Tensor:
    """Centred orthonormal forward FFT over ``dim``: image -> k-space, same shape."""
    return _centred(image, dim, inverse=False)


def ifft2c(kspace: torch.Tensor, dim: tuple[int, ...] = AXES) -> torch.Tensor:
    """Centred orthonormal inverse FFT over ``dim``: k-space -> image, same shape."""
    return _centred(kspace, dim, inverse=True)


class FFT(LinearOperator):
    """Centred orthonormal FFT over ``dims`` (default the last two, (H, W)).

    Forward: image ``(..., H, W)`` -> k-space ``(..., H, W)`` (:func:`fft2c`); adjoint = inverse
    (:func:`ifft2c`); normal = identity. Unitary, so ``||A||_2 == 1``. ``shape``: the trailing shape it is
    applied to (checked on every call), or None (default) = any shape (:data:`~recon.operators.base.ANY_SHAPE`).
    """

    def __init__(self, dims: Sequence[int] = AXES, shape: Sequence[int] | None = None):
        self.dims = tuple(int(d) for d in dims)
        self.ishape = self.oshape = ANY_SHAPE if shape is None else tuple(int(n) for n in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x, self.dims)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y, self.dims)

    def normal(self) -> LinearOperator:
        return Identity(self.ishape)

    def __repr__(self) -> str:
        return f"FFT(dims={self.dims})"
