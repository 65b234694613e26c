"""The least-squares data term ``f(x) = 0.5 ||A x - y||^2`` as the CS solvers use it.

Only ``A^H A`` (a fast normal operator: masked SENSE, NUFFT Toeplitz), ``A^H y`` and ``||y||^2`` are needed:
``f(x) = 0.5 Re<x, A^H A x> - Re<x, A^H y> + 0.5 ||y||^2`` and ``grad f(x) = A^H A x - A^H y``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ApplyFn = Callable[[torch.Tensor], torch.Tensor]


def real_dot(a: torch.Tensor, b: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """``Re <a, b>`` over the last ``ndim`` axes, double precision: shape ``a.shape[:-ndim]``."""
    return (a.conj() * b).real.to(torch.float64).sum(dim=tuple(range(-ndim, 0)))


@dataclass
class LeastSquares:
    """``0.5 ||A x - y||^2`` per batch element.

    Attributes
    ----------
    normal: ``x (..., H, W) -> A^H A x``.
    aty: ``A^H y`` ``(..., H, W)``.
    y_norm_sq: ``||y||^2`` per batch element ``(...)`` float64.
    lipschitz: an upper bound of ``||A^H A||`` (the gradient's Lipschitz constant).
    """

    normal: ApplyFn
    aty: torch.Tensor
    y_norm_sq: torch.Tensor
    lipschitz: float

    def value(self, x: torch.Tensor, normal_x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` per batch element, given ``normal_x = A^H A x`` (no operator application)."""
        val = 0.5 * real_dot(x, normal_x) - real_dot(x, self.aty) + 0.5 * self.y_norm_sq
        return val.clamp_min(0.0)
