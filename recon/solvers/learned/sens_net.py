"""Learned coil sensitivity estimation from the calibration (ACS) region, as in E2E-VarNet (Sriram et al. 2020).

The fully sampled centre of the masked k-space is kept (:func:`~recon.solvers.learned.common.calibration_mask`),
each coil's low-resolution image is refined by a :class:`~recon.solvers.learned.unet.ComplexUNet` (coils as
batch, so any coil count works), and the maps are divided by their root sum of squares so that
``sum_c |S_c|^2 = 1``.
"""
from __future__ import annotations

import torch
from torch import nn

from recon.operators.fft import ifft2c
from recon.solvers.learned.common import calibration_mask
from recon.solvers.learned.unet import ComplexUNet


class SensitivityNet(nn.Module):
    """``(B, C, H, W)`` masked k-space + ``(B|1, 1, H, W)`` mask -> ``(B, C, H, W)`` complex maps."""

    def __init__(self, chans: int = 8, num_pools: int = 3):
        super().__init__()
        self.unet = ComplexUNet(chans, num_pools)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = kspace.shape
        images = ifft2c(kspace * calibration_mask(mask))
        maps = self.unet(images.reshape(b * c, h, w)).reshape(b, c, h, w)
        rss = torch.sqrt((maps.abs() ** 2).sum(1, keepdim=True) + 1e-12)
        return maps / rss
