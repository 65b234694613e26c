"""Learned coil sensitivity estimation from the calibration (ACS) region, as in E2E-VarNet (Sriram et al. 2020).

The fully sampled centre of the masked k-space (:func:`~recon.solvers.learned.common.calibration_mask`) is
cut out (at most :data:`MAX_CALIB_ROWS` rows along the readout), each coil's low-resolution image plus a learned correction
(:class:`~recon.solvers.learned.unet.ComplexUNet`, coils as batch, so any coil count works; zero at
initialisation, so an untrained module gives the classical "ACS images / RSS" maps) on that small
grid, brought back to the full grid by zero-padding its k-space (band-limited interpolation: the maps are
smooth), and the maps are divided by their root sum of squares so that ``sum_c |S_c|^2 = 1``. Working on the
calibration grid makes the module cost almost nothing next to the cascades.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from recon.operators.fft import fft2c, ifft2c
from recon.solvers.learned.common import calibration_mask
from recon.solvers.learned.unet import ComplexUNet

#: the calibration k-space is cut to at most this many readout rows (the maps' resolution along H)
MAX_CALIB_ROWS = 48


def _box(cal: torch.Tensor) -> tuple[int, int, int, int]:
    """Smallest box ``(h0, h1, w0, w1)`` holding the calibration region of every example, at least 4 x 4."""
    rows = torch.nonzero(cal.amax(dim=(0, 1, 3)) > 0).flatten()
    cols = torch.nonzero(cal.amax(dim=(0, 1, 2)) > 0).flatten()
    h, w = cal.shape[-2:]

    def span(idx: torch.Tensor, n: int, limit: int) -> tuple[int, int]:
        if idx.numel() == 0:
            lo, hi = n // 2, n // 2 + 1
        else:
            lo, hi = int(idx.min()), int(idx.max()) + 1
        half = max(min(max(n // 2 - lo, hi - n // 2), limit // 2), 2)
        return max(n // 2 - half, 0), min(n // 2 + half, n)

    h0, h1 = span(rows, h, MAX_CALIB_ROWS)
    w0, w1 = span(cols, w, w)
    return h0, h1, w0, w1


class SensitivityNet(nn.Module):
    """``(B, C, H, W)`` masked k-space + ``(B|1, 1, H, W)`` mask -> ``(B, C, H, W)`` complex maps."""

    def __init__(self, chans: int = 8, num_pools: int = 3):
        super().__init__()
        self.unet = ComplexUNet(chans, num_pools, correction=True)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = kspace.shape
        cal = calibration_mask(mask)
        h0, h1, w0, w1 = _box(cal)
        small = (kspace * cal)[..., h0:h1, w0:w1]
        hs, ws = small.shape[-2:]
        images = ifft2c(small).reshape(b * c, hs, ws)
        maps_small = (images + self.unet(images)).reshape(b, c, hs, ws)  # classical estimate + correction
        k_small = fft2c(maps_small)
        # zero-pad back to (H, W) so that the centre (index n // 2) stays the centre
        pad = (w // 2 - ws // 2, (w - w // 2) - (ws - ws // 2), h // 2 - hs // 2, (h - h // 2) - (hs - hs // 2))
        k_full = torch.complex(F.pad(k_small.real, pad), F.pad(k_small.imag, pad))
        maps = ifft2c(k_full)
        rss = torch.sqrt((maps.abs() ** 2).sum(1, keepdim=True) + 1e-12)
        return maps / rss
