"""ADMM for ``min_x 0.5 ||A x - y||^2 + lam ||K x||_1`` (split ``z = K x``, scaled dual ``u``).

    x <- argmin 0.5 ||A x - y||^2 + rho/2 ||K x - z + u||^2     (a few warm-started CG steps on
                                                                 (A^H A + rho K^H K) x = A^H y + rho K^H (z - u))
    z <- shrink(K x + u, lam / rho)
    u <- u + K x - z

This is BART ``pics``' choice for TV. The objective of each iterate is recorded (one extra normal-operator
application per iteration).
"""
from __future__ import annotations

import time

import torch

from recon.errors import UsageError
from recon.solvers.checks import check_iterations, check_lambda
from recon.solvers.cg import conjugate_gradient
from recon.solvers.problem import LeastSquares
from recon.solvers.result import SolverResult


def admm(
    problem: LeastSquares,
    reg,
    lam: float,
    *,
    x0: torch.Tensor | None = None,
    iterations: int = 30,
    rho: float | None = None,
    cg_iterations: int = 4,
) -> SolverResult:
    """Minimise ``0.5 ||A x - y||^2 + lam R(x)``, ``R(x) = ||K x||_1`` (``reg``: forward/adjoint/shrink/value).

    Parameters
    ----------
    rho: penalty parameter (default ``0.5 * L``, ``L`` the data term's Lipschitz bound: 0.5 with normalised
        maps, BART's default on scaled data).
    cg_iterations: inner CG iterations per x-update (warm started from the previous x).
    Other parameters as :func:`recon.solvers.fista.fista`.
    """
    check_lambda(lam)
    check_iterations(iterations)
    rho = 0.5 * problem.lipschitz if rho is None else float(rho)
    if rho <= 0:
        raise UsageError(f"ADMM rho must be > 0, got {rho}")
    start = time.perf_counter()

    def system(v: torch.Tensor) -> torch.Tensor:
        return problem.normal(v) + rho * reg.adjoint(reg.forward(v))

    with torch.no_grad():
        x = problem.aty.clone() if x0 is None else x0.clone()
        kx = reg.forward(x)
        z = reg.shrink(kx, lam / rho)
        u = kx - z
        f = problem.value(x, problem.normal(x)) + lam * reg.value(x)
        history = [float(f.sum())]
        for _ in range(int(iterations)):
            rhs = problem.aty + rho * reg.adjoint(z - u)
            x = conjugate_gradient(system, rhs, x, max_iter=cg_iterations, tol=0.0, ndim=2).image
            kx = reg.forward(x)
            z = reg.shrink(kx + u, lam / rho)
            u = u + kx - z
            f = problem.value(x, problem.normal(x)) + lam * reg.value(x)
            history.append(float(f.sum()))
    return SolverResult(
        image=x, iterations=int(iterations), history=history, seconds=time.perf_counter() - start,
        parameters={"solver": "admm", "lambda": float(lam), "rho": rho, "cg_iterations": int(cg_iterations),
                    "regularizer": reg.name, **getattr(reg, "parameters", {})},
    )
