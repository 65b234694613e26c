"""Diffusion-prior reconstruction (issue 7).

* :mod:`recon.solvers.diffusion.prior`: :class:`DenoiserPrior` (the noise-conditional MMSE denoiser,
  EDM-preconditioned), :func:`normalize_scale`, :func:`load_prior` (in :mod:`.loading`: bundled ``diffusion_sim.pt`` or a
  ``recon train --model diffusion`` file).

``normalise_scale`` (the old spelling) still imports, with a :class:`DeprecationWarning`, for one release.
"""
import warnings
from typing import Any

from recon.solvers.diffusion.loading import load_prior
from recon.solvers.diffusion.prior import DenoiserPrior, normalize_scale

__all__ = ["DenoiserPrior", "load_prior", "normalize_scale"]


def __getattr__(name: str) -> Any:
    if name == "normalise_scale":
        warnings.warn(f"{__name__}.normalise_scale is deprecated; use normalize_scale", DeprecationWarning,
                      stacklevel=2)
        return normalize_scale
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
