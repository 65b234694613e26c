"""ADMM for ``min_x 0.5 ||A x - y||^2 + h(K x)`` (split ``z = K x``, scaled dual ``u``).

    x <- argmin 0.5 ||A x - y||^2 + rho/2 ||K x - z + u||^2     (a few warm-started CG steps on
                                                                 (A^H A + rho K^H K) x = A^H y + rho K^H (z - u))
    z <- prox_{h / rho}(K x + u)
    u <- u + K x - z

Generic: any data term (a :class:`~recon.solvers.problem.LeastSquares` or an operator ``A`` with ``y``), any
prox ``h`` and operator ``K`` (``transform``; default: the split of a :class:`~recon.solvers.prox.InTransform`
such as :class:`~recon.solvers.prox.TV`, or the identity), any number of leading batch dims. This is BART
``pics``' choice for TV. The objective of each iterate is recorded (one extra normal-operator application per
iteration). ``admm(problem, reg, lam)`` (a regulariser and its weight) is ``admm(problem, reg.as_prox(lam))``.
"""
from __future__ import annotations

import time

import torch

from recon.errors import UsageError
from recon.operators import Identity
from recon.solvers.cg import conjugate_gradient
from recon.solvers.checks import check_iterations
from recon.solvers.problem import as_problem
from recon.solvers.prox import describe, resolve
from recon.solvers.result import SolverResult


def split(g, transform=None):
    """``(K, h)`` of a term ``g(x) = h(K x)``: the given ``transform`` with ``g``, ``g.split()``, or ``(I, g)``."""
    if transform is not None:
        return transform, g
    if hasattr(g, "split"):
        return g.split()
    return Identity(), g


def admm(
    problem,
    prox,
    lam: float | None = None,
    *,
    transform=None,
    y: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    iterations: int = 30,
    rho: float | None = None,
    cg_iterations: int = 4,
) -> SolverResult:
    """Minimise ``0.5 ||A x - y||^2 + g(x)``, ``g(x) = h(K x)``.

    Parameters
    ----------
    prox: ``g`` (split into ``(K, h)``, see :func:`split`), or ``h`` with ``transform=K``, or a regulariser
        with ``as_prox`` and its weight ``lam``.
    rho: penalty parameter (default ``0.5 * L``, ``L`` the data term's Lipschitz bound: 0.5 with normalised
        maps, BART's default on scaled data).
    cg_iterations: inner CG iterations per x-update (warm started from the previous x).
    Other parameters as :func:`recon.solvers.fista.fista`.
    """
    g = resolve(prox, lam, "admm")
    check_iterations(iterations)
    problem = as_problem(problem, y)
    K, h = split(g, transform)
    rho = 0.5 * problem.lipschitz if rho is None else float(rho)
    if rho <= 0:
        raise UsageError(f"ADMM rho must be > 0, got {rho}")
    start = time.perf_counter()

    def system(v: torch.Tensor) -> torch.Tensor:
        return problem.normal(v) + rho * K.adjoint(K.forward(v))

    def objective(x: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
        return problem.value(x, problem.normal(x)) + h.value(kx)

    with torch.no_grad():
        x = problem.aty.clone() if x0 is None else x0.clone()
        kx = K.forward(x)
        z = h(kx, 1.0 / rho)
        u = kx - z
        history = [float(objective(x, kx).sum())]
        for _ in range(int(iterations)):
            rhs = problem.aty + rho * K.adjoint(z - u)
            x = conjugate_gradient(system, rhs, x, max_iter=cg_iterations, tol=0.0, ndim=problem.ndim).image
            kx = K.forward(x)
            z = h(kx + u, 1.0 / rho)
            u = u + kx - z
            history.append(float(objective(x, kx).sum()))
    return SolverResult(
        image=x, iterations=int(iterations), history=history, seconds=time.perf_counter() - start,
        parameters={"solver": "admm", **describe(g), "rho": rho, "cg_iterations": int(cg_iterations)},
    )
