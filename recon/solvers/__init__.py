"""Stage: solvers (torch, batched over slices, CPU or GPU).

* ``recon.reconstruct`` (:mod:`recon.solvers.reconstruct`): one entry point, Cartesian data, every method.
* :func:`reconstruct_noncartesian`: the same solvers through the NUFFT (radial, spiral).
* Building blocks: :func:`cg_sense`, :func:`l1_wavelet`, :func:`total_variation`, :func:`conjugate_gradient`,
  :func:`bart_scale`, and the modules :mod:`~recon.solvers.grappa`, :mod:`~recon.solvers.fista`,
  :mod:`~recon.solvers.admm`, :mod:`~recon.solvers.pdhg` (each holding the function of its name).

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recon.solvers' has no attribute {name!r}")
