"""Diffusion-prior reconstruction (issue 7).

* :mod:`recon.solvers.diffusion.prior`: :class:`DenoiserPrior` (the noise-conditional MMSE denoiser,
  EDM-preconditioned), :func:`normalise_scale`, :func:`load_prior` (in :mod:`.loading`: bundled ``diffusion_sim.pt`` or a
  ``recon train --model diffusion`` file).
"""
from recon.solvers.diffusion.loading import load_prior
from recon.solvers.diffusion.prior import DenoiserPrior, normalise_scale

__all__ = ["DenoiserPrior", "load_prior", "normalise_scale"]
