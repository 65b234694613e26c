"""Learned unrolled solvers: E2E-VarNet and MoDL (complex images as 2 channels, any size and coil count).

* :class:`VarNet`, :class:`MoDL`: ``model(kspace (B, C, H, W), mask, maps=None) -> (B, H, W)`` magnitude.
* :func:`load_model`, :func:`build_model`: models from weights files (bundled: :mod:`recon.weights`).
* ``recon run --method varnet|modl``: :func:`recon.solvers.learned.method.varnet_method` / ``modl_method``.
"""
from recon.solvers.learned.modl import MoDL
from recon.solvers.learned.registry import build_model, load_model
from recon.solvers.learned.sens_net import SensitivityNet
from recon.solvers.learned.unet import ComplexUNet, UNet
from recon.solvers.learned.varnet import VarNet

__all__ = ["ComplexUNet", "MoDL", "SensitivityNet", "UNet", "VarNet", "build_model", "load_model"]
