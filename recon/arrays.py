"""Array utilities shared by every layer, for numpy arrays and torch tensors alike: centre crops and the
root sum of squares.

Two centre crops, named for what they do with a size larger than the array:

* :func:`center_crop`: fastMRI's ``center_crop`` (start ``(H - h) // 2``); a size larger than the array (or
  not positive) is a :class:`~recon.errors.UsageError`. Metrics use it: they never pad.
* :func:`center_crop_or_pad`: the same crop, but an axis shorter than the size is zero-padded symmetrically
  (``(n - H) // 2`` zeros before) first. Writers, simulation and zero-filled reconstruction use it.

:func:`rss` is the root sum of squares over one axis; it returns the input's kind (numpy in, numpy out).

This module imports neither torch nor anything of recon above :mod:`recon.errors`: a torch tensor can only
reach it once torch is loaded, so it looks torch up in ``sys.modules`` rather than importing it.
"""
from __future__ import annotations

import sys
from typing import Any, TypeVar

import numpy as np

from recon.errors import UsageError

A = TypeVar("A")

__all__ = ["center_crop", "center_crop_or_pad", "rss"]


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def center_crop(x: A, size: tuple[int, int], name: str = "image") -> A:
    """Centre crop the last two axes of a numpy array or torch tensor to ``size = (h, w)``, as fastMRI's
    ``center_crop`` (start ``(H - h) // 2``); a size larger than the image is a :class:`UsageError` (metrics
    never pad)."""
    h, w = int(size[0]), int(size[1])
    H, W = x.shape[-2:]  # type: ignore[attr-defined]
    if not (0 < h <= H and 0 < w <= W):
        raise UsageError(f"cannot crop {name} of size {H} x {W} to {h} x {w}")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]  # type: ignore[index]


def center_crop_or_pad(image: A, size: tuple[int, int]) -> A:
    """Centre crop the last two axes to ``size`` = (h, w), as fastMRI's ``center_crop`` does.

    When ``size`` exceeds the array along an axis, that axis is zero-padded symmetrically instead
    (``(n - H) // 2`` zeros before, the rest after). Numpy arrays and torch tensors; the result is a view
    when nothing is padded.
    """
    h, w = image.shape[-2:]  # type: ignore[attr-defined]
    th, tw = int(size[0]), int(size[1])
    if th > h or tw > w:
        ph, pw = max(th - h, 0), max(tw - w, 0)
        if _is_tensor(image):
            image = sys.modules["torch"].nn.functional.pad(image, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        else:
            pad = [(0, 0)] * (image.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]  # type: ignore[attr-defined]
            image = np.pad(image, pad)
        h, w = image.shape[-2:]  # type: ignore[attr-defined]
    top = (h - th) // 2
    left = (w - tw) // 2
    return image[..., top:top + th, left:left + tw]  # type: ignore[index]


def rss(coil_images: A, axis: int = -3) -> A:
    """Root sum of squares over ``axis`` (the coil axis of ``(S, C, H, W)`` or ``(C, H, W)``).

    Numpy in: ``sqrt(sum(|x|^2))`` as a numpy array (float64 for complex128 input). Torch in:
    ``sqrt(sum(re^2 + im^2))`` as a real tensor of the input's precision, on its device.
    """
    if _is_tensor(coil_images):
        torch = sys.modules["torch"]
        x = coil_images
        power = x.real ** 2 + x.imag ** 2 if x.is_complex() else x ** 2  # type: ignore[attr-defined]
        return torch.sqrt(torch.sum(power, dim=axis))
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis))  # type: ignore[return-value]
