"""Stage: solvers (torch, batched over slices, CPU or GPU).

* ``recon.reconstruct`` (:mod:`recon.solvers.reconstruct`): one entry point, Cartesian data, every method.
* :func:`reconstruct_noncartesian`: the same solvers through the NUFFT (radial, spiral).
* Building blocks: :func:`cg_sense`, :func:`l1_wavelet`, :func:`total_variation`, :func:`conjugate_gradient`,
  :func:`bart_scale`, and the modules :mod:`~recon.solvers.grappa`, :mod:`~recon.solvers.fista`,
  :mod:`~recon.solvers.admm`, :mod:`~recon.solvers.pdhg`, :mod:`~recon.solvers.cg` (each holding the function
  of its name: generic algorithms that take any operator or data term and any prox object).
* Compositions: :func:`least_squares` (the data term of any operator ``A`` and data ``y``) and the prox
  objects of :mod:`recon.solvers.prox` (L1 in a transform, TV, box / non-negativity, L2); an L1-wavelet
  reconstruction is ``fista(least_squares(Sense(maps, mask), y), L1InTransform(Wavelet2D(shape), w, lam))``.

Names are imported lazily, so ``import recon.solvers`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReconResult": "recon.solvers.result",
    "SolverResult": "recon.solvers.result",
    "reconstruct_noncartesian": "recon.solvers.noncartesian",
    "cg_sense": "recon.solvers.sense",
    "l1_wavelet": "recon.solvers.cs",
    "total_variation": "recon.solvers.cs",
    "compressed_sensing": "recon.solvers.cs",
    "conjugate_gradient": "recon.solvers.cg",
    "bart_scale": "recon.solvers.scaling",
    "rss_reconstruction": "recon.solvers.zero_filled",
    "least_squares": "recon.solvers.problem",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recon.solvers' has no attribute {name!r}")
