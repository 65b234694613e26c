"""Centred orthonormal 2D FFTs in numpy, for the file boundary (simulation, previews).

Solvers use the torch operators in ``recon.operators``; both follow the same convention
(``data_specs/conventions.md``): ``image = fftshift(ifft2(ifftshift(kspace), norm="ortho"))``
over the last two axes (H = readout, W = phase encode).

``center_crop`` and ``rss`` moved to :mod:`recon.arrays` (``center_crop_or_pad``, ``rss``); the old names
still import from here, with a :class:`DeprecationWarning`, for one release.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from recon.arrays import center_crop_or_pad as _center_crop_or_pad, rss as _rss

AXES = (-2, -1)


def fft2c(image: np.ndarray, axes: tuple[int, ...] = AXES) -> np.ndarray:
    """Centred orthonormal forward FFT: image ``(..., H, W)`` -> k-space ``(..., H, W)``."""
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)


def ifft2c(kspace: np.ndarray, axes: tuple[int, ...] = AXES) -> np.ndarray:
    """Centred orthonormal inverse FFT: k-space ``(..., H, W)`` -> image ``(..., H, W)``."""
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _rss_coil_axis_1(coil_images: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Root sum of squares over the coil axis: ``(S, C, H, W)`` -> ``(S, H, W)`` (the old signature)."""
    return _rss(coil_images, axis=coil_axis)


#: names that moved to :mod:`recon.arrays` (deprecated here for one release): old name -> (new name, object)
_MOVED = {
    "center_crop": ("recon.arrays.center_crop_or_pad", _center_crop_or_pad),
    "rss": ("recon.arrays.rss (axis= instead of coil_axis=)", _rss_coil_axis_1),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        new, value = _MOVED[name]
        warnings.warn(f"recon.io.fourier.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
