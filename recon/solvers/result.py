"""What a solver returns: the image plus a record of what happened (:class:`SolverResult`), and what
:func:`recon.reconstruct` returns for a whole volume (:class:`ReconResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recon.arrays import center_crop_or_pad


@dataclass
class SolverResult:
    """One solver run.

    Attributes
    ----------
    image: ``(..., H, W)`` complex64 solution (batch dims = slices), on the scale the solver saw.
    iterations: iterations run.
    history: per iteration, the objective (FISTA, ADMM, PDHG: ``0.5 ||A x - y||^2 + lam R(x)`` summed over
        the batch) or the relative residual ``||b - (A^H A + lam I) x|| / ||b||`` (CG).
    seconds: wall time of the iterations.
    parameters: the solver's settings (step sizes, lambda, ...), JSON-serialisable.
    converged: CG: whether the tolerance was met; None for fixed-iteration solvers.
    restarts: FISTA: number of momentum restarts.
    extras: solver-specific tensors (GRAPPA: the filled ``kspace``).
    """

    image: torch.Tensor
    iterations: int
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    converged: bool | None = None
    restarts: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable record (no image)."""
        return {
            "iterations": self.iterations,
            "final": self.history[-1] if self.history else None,
            "seconds": round(self.seconds, 4),
            "converged": self.converged,
            "restarts": self.restarts,
            "parameters": self.parameters,
        }


@dataclass
class ReconResult:
    """The result of :func:`recon.reconstruct`.

    Attributes
    ----------
    image: ``(S, H, W)`` float32 magnitude on the data's scale (RSS-comparable), on the full k-space grid.
    complex_image: ``(S, H, W)`` complex64 SENSE image (maps-weighted methods), else None.
    maps: ``(S, C, H, W)`` complex64 sensitivity maps used (None for zero-filled and GRAPPA).
    method: the method name.
    scale: ``(S,)`` data scale the solver divided by (1 where no scaling applies).
    seconds: wall time, maps included.
    parameters: the settings used (lambda, iterations, solver, ...).
    solver: the solver record (iterations, history, ...), None for direct methods.
    recon_size: ``(h, w)`` of the header's recon matrix, when known (see :meth:`cropped`).
    """

    image: np.ndarray
    method: str
    complex_image: np.ndarray | None = None
    maps: np.ndarray | None = None
    scale: np.ndarray | None = None
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    solver: SolverResult | None = None
    recon_size: tuple[int, int] | None = None

    def cropped(self) -> np.ndarray:
        """``image`` centre-cropped to the recon size (as ``recon run`` writes it); unchanged if unknown."""
        if self.recon_size is None:
            return self.image
        return np.ascontiguousarray(center_crop_or_pad(self.image, self.recon_size))

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable record (no arrays)."""
        return {
            "method": self.method,
            "shape": list(self.image.shape),
            "seconds": round(self.seconds, 4),
            "parameters": self.parameters,
            "scale": None if self.scale is None else [float(v) for v in np.ravel(self.scale)],
            "solver": None if self.solver is None else self.solver.summary(),
        }
