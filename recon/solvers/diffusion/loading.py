"""Loading the diffusion prior from a weights file: the learned solvers' one loader, with the prior's default.

:func:`load_prior` returns a fresh model each call (to train or modify); the pipeline method uses the cached
:func:`recon.solvers.diffusion.method.get_prior`. Both go through :func:`recon.solvers.learned.registry.load_model`,
so there is one code path from a ``.pt`` file to a model (kept out of :mod:`.prior`, which the registry imports).
"""
from __future__ import annotations

from pathlib import Path

import torch

from recon.solvers.diffusion.prior import DenoiserPrior
from recon.solvers.learned.registry import load_model
from recon.weights import bundled_weights


def load_prior(weights: str | Path | None = None, device: str | torch.device = "cpu") -> DenoiserPrior:
    """The bundled prior (``recon/weights/diffusion_sim.pt``) or a ``recon train --model diffusion`` file,
    in eval mode on ``device``; no network. Errors: :class:`~recon.errors.InputError` subclasses."""
    path = Path(weights) if weights is not None else bundled_weights("diffusion")
    model = load_model(path, device, expect="diffusion")
    assert isinstance(model, DenoiserPrior)
    return model
