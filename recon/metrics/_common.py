"""Names and settings shared by the metric modules (no torch import, so that the CLI can check its inputs
before loading torch)."""
from __future__ import annotations

import warnings
from typing import Any

from recon.arrays import center_crop as _center_crop

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


def __getattr__(name: str) -> Any:
    if name == "center_crop":  # moved to recon.arrays (deprecated here for one release)
        warnings.warn("recon.metrics._common.center_crop is deprecated; use recon.arrays.center_crop",
                      DeprecationWarning, stacklevel=2)
        return _center_crop
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
