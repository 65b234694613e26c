"""Training losses on magnitude images ``(N, h, w)`` on the data's scale.

* ``ssim``: ``1 - SSIM`` with fastMRI's window and constants (:class:`recon.metrics.SSIMLoss`), data range the
  volume maximum, as the E2E-VarNet paper trains;
* ``l1``: mean absolute error divided by the volume maximum (scale-free, so it weights every file alike);
* ``ssdu``: no image loss: self-supervised training from undersampled k-space alone (Yaman et al., MRM 2020),
  the normalised k-space loss of :func:`recon.solvers.learned.adapt.kspace_loss` on a held-back subset of the
  acquired samples (the loop handles it; :func:`get_loss` refuses it).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from recon.errors import UsageError
from recon.metrics import SSIMLoss

LOSSES = ("ssim", "l1", "ssdu")
#: losses against a reference image (what :func:`get_loss` returns)
IMAGE_LOSSES = ("ssim", "l1")

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def get_loss(name: str) -> LossFn:
    """``loss(prediction, target, maxval)``: ``(N, h, w)``, ``(N, h, w)``, ``(N,)`` -> 0-d tensor."""
    if name == "ssim":
        ssim = SSIMLoss()

        def ssim_loss(pred: torch.Tensor, target: torch.Tensor, maxval: torch.Tensor) -> torch.Tensor:
            return ssim(pred, target, data_range=maxval.to(target.dtype))

        return ssim_loss
    if name == "l1":
        def l1_loss(pred: torch.Tensor, target: torch.Tensor, maxval: torch.Tensor) -> torch.Tensor:
            return ((pred - target).abs().flatten(1).mean(1) / maxval.to(target.dtype)).mean()

        return l1_loss
    if name == "ssdu":
        raise UsageError("the ssdu loss is a k-space loss on held-back samples, not an image loss")
    raise UsageError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
