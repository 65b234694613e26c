"""E2E-VarNet (Sriram et al., MICCAI 2020): unrolled k-space cascades with learned sensitivity maps.

Each cascade ``t`` refines the current multi-coil k-space ``k`` in image space and then enforces data
consistency with a learned weight ``eta_t``::

    k'      = k - F S U_t( sum_c conj(S_c) F^-1 k_c )        (U_t: complex U-Net, refinement)
    k_{t+1} = k' - eta_t * M (k' - y)                         (soft data consistency)

``F`` is the centred orthonormal FFT, ``S`` the sensitivity maps (:class:`~recon.operators.Sense` without a
mask gives ``F S`` and its adjoint), ``M`` the mask and ``y`` the measured k-space. With ``eta_t = 1`` the
last cascade returns the measured samples exactly (hard data consistency). The paper applies the refinement
and the data-consistency term in parallel; applying them in sequence, as here, makes ``eta = 1`` the hard
constraint. The output is the root sum of squares of the final coil images, as fastMRI's ``reconstruction_rss``.

Scale: k-space is divided by a robust scale of the zero-filled RSS image (:func:`robust_scale`) on the way in
and multiplied back on the way out, so the result is on the data's scale.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from recon.operators.fft import ifft2c
from recon.operators.sense import ModulatedSense, Sense
from recon.solvers.learned.common import scaled_inputs
from recon.solvers.learned.sens_net import SensitivityNet
from recon.solvers.learned.unet import ComplexUNet


class VarNetCascade(nn.Module):
    """One cascade: refinement by a complex U-Net then soft data consistency (weight ``dc_weight``, init 1)."""

    def __init__(self, chans: int, num_pools: int):
        super().__init__()
        self.unet = ComplexUNet(chans, num_pools, correction=True)
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(self, k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sense: Sense | ModulatedSense
                ) -> torch.Tensor:
        k = k - sense(self.unet(sense.H(k)))
        return k - self.dc_weight * mask * (k - y)


class VarNet(nn.Module):
    """E2E-VarNet: ``forward(kspace, mask, maps=None) -> (B, H, W)`` magnitude on the data's scale.

    Parameters
    ----------
    num_cascades: unrolled cascades (each with its own U-Net and DC weight).
    chans, num_pools: U-Net width and depth of each cascade.
    sens_chans, sens_pools: U-Net of the sensitivity module.

    ``forward`` arguments: ``kspace`` ``(B, C, H, W)`` complex (unsampled points may hold anything: they are
    masked), ``mask`` as :meth:`~recon.sampling.SamplingMask.for_network` accepts (column ``(W,)``, 2D ``(H, W)``,
    per-example ``(B, H, W)``...), ``maps`` ``(B|1, C, H, W)`` given sensitivity maps (e.g. ESPIRiT) instead of
    the learned ones. ``return_kspace=True`` returns ``(image, kspace)`` with the final ``(B, C, H, W)``
    k-space on the data's scale.
    """

    def __init__(self, num_cascades: int = 6, chans: int = 8, num_pools: int = 3, sens_chans: int = 4,
                 sens_pools: int = 3):
        super().__init__()
        self.config: dict[str, Any] = {
            "model": "varnet", "num_cascades": int(num_cascades), "chans": int(chans),
            "num_pools": int(num_pools), "sens_chans": int(sens_chans), "sens_pools": int(sens_pools),
        }
        self.sens_net = SensitivityNet(sens_chans, sens_pools)
        self.cascades = nn.ModuleList(VarNetCascade(chans, num_pools) for _ in range(int(num_cascades)))

    def forward(self, kspace: torch.Tensor, mask: Any = None, maps: torch.Tensor | None = None,
                return_kspace: bool = False, calibration: tuple[torch.Tensor, Any] | None = None):
        y, m, scale, maps = scaled_inputs(kspace, mask, maps, self.sens_net, calibration)
        k = self._cascades(y, m, maps) * scale
        image = torch.sqrt((ifft2c(k).abs() ** 2).sum(1))
        return (image, k) if return_kspace else image

    def _cascades(self, y: torch.Tensor, m: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The cascades from the scaled ``y`` ``(B, C, H, W)``: the final k-space (scaled). While autograd
        records (training, adaptation) and H, W are even, they run in :class:`ModulatedSense`'s domain (the
        same values bit for bit, fewer coil-sized passes forward and backward); otherwise with :class:`Sense`,
        whose no-autograd path already avoids the modulations."""
        even = y.shape[-2] % 2 == 0 and y.shape[-1] % 2 == 0
        modulated = even and torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        sense = ModulatedSense(maps) if modulated else Sense(maps)
        if modulated:
            y = y * sense.p
        k = y
        for cascade in self.cascades:
            k = cascade(k, y, m, sense)
        return k * sense.p if modulated else k
