"""The fastMRI E2E-VarNet (Sriram et al. 2020; ``fastmri.models.VarNet``, fastmri 0.3.0) on recon's operators.

Same module tree, parameter names and shapes as fastMRI's, so that ``torch.save(fastmri_varnet.state_dict())``
loads here with ``strict=True`` and the forward pass gives fastMRI's numbers (float32, to ~1e-6 relative):

* sensitivity module: keep only the ``num_low_frequencies`` centre phase-encode columns (given, or measured
  from the mask's first row as fastMRI does: twice the shorter run of sampled lines either side of the
  centre, at least 1), centred inverse FFT, a :class:`NormUnet` per coil, divide by the coils' RSS;
* ``num_cascades`` blocks, each ``k - dc_weight * M (k - k0) - F S NormUnet(S^H F^H k)`` (refinement in
  parallel with a soft data consistency, one learned ``dc_weight`` per block);
* output: RSS over coils of ``|F^H k|``, ``(B, H, W)``.

recon's version takes complex64 ``(B, C, H, W)`` k-space (H = readout, W = phase encode) and a bool/float
mask broadcastable to ``(B, 1, H, W)`` instead of fastMRI's trailing real/imaginary axis.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from recon.solvers.learned.fastmri_unet import NormUnet
from recon.sampling import SamplingMask

AXES = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT by explicit shifts (copies). :func:`recon.operators.fft.fft2c` computes the
    same transform with modulations instead; on odd sizes those round differently, and 12 cascades of random
    weights amplify a 1e-7 difference to 1e-4, so the fastMRI models use the shift form fastMRI uses."""
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(image, dim=AXES), dim=AXES, norm="ortho"), dim=AXES)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT by explicit shifts (see :func:`fft2c`)."""
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(kspace, dim=AXES), dim=AXES, norm="ortho"),
                              dim=AXES)


def _as_bool_mask(mask: Any, kspace: torch.Tensor) -> torch.Tensor:
    return SamplingMask.for_network(mask, kspace) > 0


def centre_run(mask_row: torch.Tensor) -> int:
    """fastMRI's low-frequency count of one ``(W,)`` 0/1 row: twice the shorter run of ones left of and right
    from ``W // 2`` (a run that reaches the edge counts as 0, as ``argmin`` does), at least 1."""
    row = mask_row.to(torch.int8)
    cent = row.shape[0] // 2
    left = int(torch.argmin(row[:cent].flip(0))) if cent > 0 else 0
    right = int(torch.argmin(row[cent:]))
    return max(2 * min(left, right), 1)


class SensitivityModel(nn.Module):
    """Coil maps ``(B, C, H, W)`` complex from masked k-space (fastMRI's ``SensitivityModel``)."""

    def __init__(self, chans: int, num_pools: int, in_chans: int = 2, out_chans: int = 2, drop_prob: float = 0.0,
                 mask_center: bool = True):
        super().__init__()
        self.mask_center = mask_center
        self.norm_unet = NormUnet(chans, num_pools, in_chans=in_chans, out_chans=out_chans, drop_prob=drop_prob)

    @staticmethod
    def low_frequency_columns(mask: torch.Tensor, num_low_frequencies: Any = None) -> list[tuple[int, int]]:
        """Per example, the kept ``[start, stop)`` phase-encode columns; ``mask`` bool ``(B|1, 1, H, W)``."""
        w = mask.shape[-1]
        if num_low_frequencies is None or (torch.as_tensor(num_low_frequencies) == 0).all():
            counts = [centre_run(mask[i, 0, 0]) for i in range(mask.shape[0])]
        else:
            n = torch.as_tensor(num_low_frequencies).reshape(-1)
            counts = [int(v) for v in n]
        out = []
        for n in counts:
            start = (w - n + 1) // 2
            out.append((start, start + n))
        return out

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies: Any = None
                ) -> torch.Tensor:
        b, c, h, w = masked_kspace.shape
        k = masked_kspace
        if self.mask_center:
            cols = self.low_frequency_columns(mask, num_low_frequencies)
            if len(cols) == 1:
                cols = cols * b
            centre = torch.zeros_like(k)
            for i, (start, stop) in enumerate(cols):
                centre[i, :, :, start:stop] = k[i, :, :, start:stop]
            k = centre
        images = ifft2c(k).reshape(b * c, 1, h, w)
        maps = self.norm_unet(images).reshape(b, c, h, w)
        rss = maps.abs().square().sum(dim=1, keepdim=True).sqrt()
        return maps / rss


class VarNetBlock(nn.Module):
    """One cascade: ``k - dc_weight * where(mask, k - k0, 0) - F S model(S^H F^H k)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(self, current: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor
                ) -> torch.Tensor:
        soft_dc = torch.where(mask, current - ref, torch.zeros((), dtype=current.dtype)) * self.dc_weight
        image = (ifft2c(current) * maps.conj()).sum(dim=1, keepdim=True)
        model_term = fft2c(self.model(image) * maps)
        return current - soft_dc - model_term


class FastMRIVarNet(nn.Module):
    """fastMRI's E2E-VarNet: masked k-space ``(B, C, H, W)`` complex64 + mask -> RSS image ``(B, H, W)``.

    Defaults are the fastMRI leaderboard configuration (12 cascades, 18 channels, 4 pools; sensitivity U-Net
    8 channels, 4 pools).
    """

    def __init__(self, num_cascades: int = 12, sens_chans: int = 8, sens_pools: int = 4, chans: int = 18,
                 pools: int = 4, mask_center: bool = True):
        super().__init__()
        self.num_cascades, self.sens_chans, self.sens_pools = num_cascades, sens_chans, sens_pools
        self.chans, self.pools, self.mask_center_flag = chans, pools, mask_center
        self.sens_net = SensitivityModel(chans=sens_chans, num_pools=sens_pools, mask_center=mask_center)
        self.cascades = nn.ModuleList([VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades)])

    def forward(self, masked_kspace: torch.Tensor, mask: Any = None, num_low_frequencies: Any = None
                ) -> torch.Tensor:
        m = _as_bool_mask(mask, masked_kspace)
        maps = self.sens_net(masked_kspace, m, num_low_frequencies)
        k = masked_kspace.clone()
        for cascade in self.cascades:
            k = cascade(k, masked_kspace, m, maps)
        return ifft2c(k).abs().square().sum(dim=1).sqrt()

    @property
    def config(self) -> dict:
        """The constructor arguments (a recon weights file's ``config``, with ``model="fastmri-varnet"``)."""
        return {"model": "fastmri-varnet", "num_cascades": self.num_cascades, "sens_chans": self.sens_chans,
                "sens_pools": self.sens_pools, "chans": self.chans, "pools": self.pools,
                "mask_center": self.mask_center_flag}
