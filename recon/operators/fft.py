"""Centred orthonormal FFTs on torch tensors (complex64, any leading batch dims, CPU or GPU, autograd).

Convention (``data_specs/conventions.md``): ``image = fftshift(ifft2(ifftshift(k), norm="ortho"))`` over
(H, W) = (readout, phase encode), the same as fastMRI's ``fft2c``/``ifft2c`` without the trailing
real/imaginary axis.
"""
from __future__ import annotations

import torch

AXES = (-2, -1)


def fft2c(image: torch.Tensor, dim: tuple[int, ...] = AXES) -> torch.Tensor:
    """Centred orthonormal forward FFT over ``dim``: image -> k-space, same shape."""
    x = torch.fft.ifftshift(image, dim=dim)
    x = torch.fft.fftn(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifft2c(kspace: torch.Tensor, dim: tuple[int, ...] = AXES) -> torch.Tensor:
    """Centred orthonormal inverse FFT over ``dim``: k-space -> image, same shape."""
    x = torch.fft.ifftshift(kspace, dim=dim)
    x = torch.fft.ifftn(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)
