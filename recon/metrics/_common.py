"""Names and settings shared by the metric modules (no torch import, so that the CLI can check its inputs
before loading torch)."""
from __future__ import annotations

from typing import TypeVar

from recon.errors import UsageError

A = TypeVar("A")

#: fastMRI's (skimage's default) SSIM settings
WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
#: the fidelity-tier metrics, in the order they are printed
METRIC_NAMES = ("nmse", "psnr", "ssim")


def fastmri_crop_size(target_shape: tuple[int, ...]) -> tuple[int, int]:
    """The crop fastMRI's ``evaluate.py`` applies to target and prediction: ``(W, W)`` with ``W`` the
    target's width. For a target wider than tall (where fastMRI's own crop fails) the height is kept:
    ``(min(H, W), W)``."""
    h, w = int(target_shape[-2]), int(target_shape[-1])
    return min(h, w), w


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
