"""MoDL (Aggarwal, Mani & Jacob, IEEE TMI 2019): a shared CNN denoiser alternating with conjugate-gradient
data consistency, weights tied across iterations::

    x_0     = A^H y
    z_t     = x_t - D(x_t)                                   (D: complex U-Net, shared by all iterations)
    x_{t+1} = argmin_x ||A x - y||^2 + lam ||x - z_t||^2  =  (A^H A + lam I)^{-1} (A^H y + lam z_t)

``A = M F S`` is the masked SENSE operator (:class:`~recon.operators.Sense`), the solve is ``cg_iterations``
steps of conjugate gradient (:func:`recon.solvers.cg.conjugate_gradient` with ``differentiable=True``,
differentiated through), ``lam > 0`` is learned. Sensitivity maps come from a learned ACS module as in
E2E-VarNet (:class:`~recon.solvers.learned.sens_net.SensitivityNet`) or are given (ESPIRiT). The output is
``|x|`` on the data's scale (maps normalised to ``sum_c |S_c|^2 = 1``, so comparable with an RSS image).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from recon.operators.sense import Sense
from recon.solvers.cg import conjugate_gradient
from recon.solvers.learned.common import scaled_inputs
from recon.solvers.learned.sens_net import SensitivityNet
from recon.solvers.learned.unet import ComplexUNet


class MoDL(nn.Module):
    """MoDL: ``forward(kspace, mask, maps=None) -> (B, H, W)`` magnitude on the data's scale.

    Parameters
    ----------
    num_iterations: unrolled (denoise, CG) iterations, all with the same weights.
    chans, num_pools: the shared denoiser U-Net.
    cg_iterations: CG steps per data-consistency solve.
    lam: initial regularisation weight (learned; kept positive by a softplus).
    sens_chans, sens_pools: U-Net of the sensitivity module.
    """

    def __init__(self, num_iterations: int = 6, chans: int = 12, num_pools: int = 3, cg_iterations: int = 6,
                 lam: float = 0.5, sens_chans: int = 4, sens_pools: int = 3):
        super().__init__()
        self.config: dict[str, Any] = {
            "model": "modl", "num_iterations": int(num_iterations), "chans": int(chans),
            "num_pools": int(num_pools), "cg_iterations": int(cg_iterations), "lam": float(lam),
            "sens_chans": int(sens_chans), "sens_pools": int(sens_pools),
        }
        self.sens_net = SensitivityNet(sens_chans, sens_pools)
        self.denoiser = ComplexUNet(chans, num_pools, correction=True)
        self.lam_raw = nn.Parameter(torch.tensor([float(lam)]).expm1().log())  # softplus^-1(lam)
        self.num_iterations = int(num_iterations)
        self.cg_iterations = int(cg_iterations)

    @property
    def lam(self) -> torch.Tensor:
        return F.softplus(self.lam_raw)

    def forward(self, kspace: torch.Tensor, mask: Any = None, maps: torch.Tensor | None = None,
                return_kspace: bool = False, calibration: tuple[torch.Tensor, Any] | None = None):
        """``return_kspace=True``: ``(image, kspace)`` with the ``(B, C, H, W)`` k-space ``F S x`` of the final
        image on the data's scale (as :class:`~recon.solvers.learned.varnet.VarNet`; used by scan-specific
        adaptation, :mod:`recon.solvers.learned.adapt`)."""
        y, m, scale, maps = scaled_inputs(kspace, mask, maps, self.sens_net, calibration)
        A = Sense(maps, m)
        lam = self.lam
        aty = A.H(y)
        x = aty
        for _ in range(self.num_iterations):
            z = x - self.denoiser(x)
            x = conjugate_gradient(A.N, aty + lam * z, x, lam=lam, max_iter=self.cg_iterations,
                                   differentiable=True).image
        image = x.abs() * scale[:, 0]
        if return_kspace:
            return image, Sense(maps)(x) * scale
        return image
