"""Centred orthonormal 2D FFTs in numpy, for the file boundary (simulation, previews).

Solvers use the torch operators in ``recon.operators``; both follow the same convention
(``data_specs/conventions.md``): ``image = fftshift(ifft2(ifftshift(kspace), norm="ortho"))``
over the last two axes (H = readout, W = phase encode).
"""
from __future__ import annotations

import numpy as np

AXES = (-2, -1)


def fft2c(image: np.ndarray, axes: tuple[int, ...] = AXES) -> np.ndarray:
    """Centred orthonormal forward FFT: image ``(..., H, W)`` -> k-space ``(..., H, W)``."""
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)


def ifft2c(kspace: np.ndarray, axes: tuple[int, ...] = AXES) -> np.ndarray:
    """Centred orthonormal inverse FFT: k-space ``(..., H, W)`` -> image ``(..., H, W)``."""
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes)


def rss(coil_images: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Root sum of squares over the coil axis: ``(S, C, H, W)`` -> ``(S, H, W)``."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=coil_axis))


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre crop the last two axes to ``size`` = (h, w), as fastMRI's ``center_crop`` does.

    When ``size`` exceeds the array along an axis, that axis is zero-padded symmetrically instead.
    """
    h, w = image.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if th > h or tw > w:
        ph, pw = max(th - h, 0), max(tw - w, 0)
        pad = [(0, 0)] * (image.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]
        image = np.pad(image, pad)
        h, w = image.shape[-2:]
    top = (h - th) // 2
    left = (w - tw) // 2
    return image[..., top:top + th, left:left + tw]
