"""The least-squares data term ``f(x) = 0.5 ||A x - y||^2`` as the solvers use it.

Only ``A^H A`` (a fast normal operator: masked SENSE, NUFFT Toeplitz), ``A^H y`` and ``||y||^2`` are needed:
``f(x) = 0.5 Re<x, A^H A x> - Re<x, A^H y> + 0.5 ||y||^2`` and ``grad f(x) = A^H A x - A^H y``.
:func:`least_squares` builds it from any :class:`~recon.operators.LinearOperator` ``A`` and data ``y``;
leading dims of ``y`` beyond ``A``'s output shape are independent problems (batch dims).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from recon.errors import UsageError
from recon.operators import power_norm

ApplyFn = Callable[[torch.Tensor], torch.Tensor]


def real_dot(a: torch.Tensor, b: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """``Re <a, b>`` over the last ``ndim`` axes, summed in double precision: shape ``a.shape[:-ndim]``."""
    if a.is_complex() and b.is_complex():  # Re(conj(a) b) = a.re b.re + a.im b.im: no complex product
        prod = torch.view_as_real(a.resolve_conj()) * torch.view_as_real(b.resolve_conj())
        return prod.sum(dim=tuple(range(-ndim - 1, 0)), dtype=torch.float64)
    return (a.conj() * b).real.sum(dim=tuple(range(-ndim, 0)), dtype=torch.float64)


@dataclass
class LeastSquares:
    """``0.5 ||A x - y||^2`` per batch element.

    Attributes
    ----------
    normal: ``x (..., *image) -> A^H A x``.
    aty: ``A^H y`` ``(..., *image)``.
    y_norm_sq: ``||y||^2`` per batch element ``(...)`` float64.
    lipschitz: an upper bound of ``||A^H A||`` (the gradient's Lipschitz constant).
    ndim: number of trailing image axes (2 for ``(H, W)``); the rest of ``aty``'s axes are batch.
    """

    normal: ApplyFn
    aty: torch.Tensor
    y_norm_sq: torch.Tensor
    lipschitz: float
    ndim: int = 2

    def value(self, x: torch.Tensor, normal_x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` per batch element, given ``normal_x = A^H A x`` (no operator application)."""
        val = 0.5 * real_dot(x, normal_x, self.ndim) - real_dot(x, self.aty, self.ndim) + 0.5 * self.y_norm_sq
        return val.clamp_min(0.0)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x - A^H y``."""
        return self.normal(x) - self.aty


def least_squares(A, y: torch.Tensor, lipschitz: float | None = None, *, power_iterations: int = 20,
                  margin: float = 1.05) -> LeastSquares:
    """The data term ``0.5 ||A x - y||^2`` of an operator ``A`` (its fast normal form ``A.N``) and data ``y``.

    ``lipschitz``: a bound of ``||A^H A||``; None = ``margin * power_norm(A)^2`` (``power_iterations`` steps).
    The image axes are ``A.ishape``'s (which must be known); ``aty``'s other, leading axes are batch, and
    ``||y||^2`` sums over all of ``y``'s axes after those.
    """
    if A.ishape is None:
        raise UsageError(f"least_squares needs an operator with a known ishape, got {A!r}")
    aty = A.H(y)
    nbatch = aty.ndim - len(A.ishape)  # y's leading dims that are batch (the rest: coils, samples, ...)
    y_norm_sq = (y.real.square() + y.imag.square()).to(torch.float64).sum(dim=tuple(range(nbatch, y.ndim)))
    if lipschitz is None:
        lipschitz = margin * power_norm(A, aty.shape, iters=power_iterations, device=aty.device) ** 2
    return LeastSquares(A.normal(), aty, y_norm_sq, float(lipschitz), len(A.ishape))


def as_problem(problem, y: torch.Tensor | None = None) -> LeastSquares:
    """A :class:`LeastSquares` as it is, or ``least_squares(A, y)`` for an operator ``A``."""
    if isinstance(problem, LeastSquares):
        if y is not None:
            raise UsageError("give y with an operator, not with a LeastSquares problem")
        return problem
    if y is None:
        raise UsageError("an operator A needs its data y (solver(A, prox, y=y))")
    return least_squares(problem, y)
