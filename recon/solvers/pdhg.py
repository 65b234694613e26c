"""Primal-dual hybrid gradient for ``min_x 0.5 ||A x - y||^2 + lam ||K x||_1``.

The Condat-Vu form of PDHG (Chambolle-Pock with the smooth data term taken by its gradient), so that each
iteration costs one application of the fast normal operator ``A^H A`` and one of ``K``/``K^H``:

    x_{n+1} = x_n - tau (A^H A x_n - A^H y + K^H q_n)
    q_{n+1} = proj_{|q| <= lam}(q_n + sigma K (2 x_{n+1} - x_n))

Convergence needs ``1/tau - sigma ||K||^2 > L / 2`` (``L = ||A^H A||``). Defaults: ``tau = 1 / L`` and
``sigma = 0.49 L / ||K||^2``.
"""
from __future__ import annotations

import time

import torch

from recon.errors import UsageError
from recon.solvers.checks import check_iterations, check_lambda
from recon.solvers.problem import LeastSquares
from recon.solvers.result import SolverResult


def pdhg(
    problem: LeastSquares,
    reg,
    lam: float,
    *,
    x0: torch.Tensor | None = None,
    iterations: int = 60,
    tau: float | None = None,
    sigma: float | None = None,
) -> SolverResult:
    """Minimise ``0.5 ||A x - y||^2 + lam R(x)``; ``reg`` gives ``forward``/``adjoint``/``project``/``value``
    and ``norm_sq = ||K||^2``. Other parameters as :func:`recon.solvers.fista.fista`."""
    check_lambda(lam)
    check_iterations(iterations)
    L = problem.lipschitz
    tau = 1.0 / L if tau is None else float(tau)
    sigma = 0.49 * L / reg.norm_sq if sigma is None else float(sigma)
    if not (1.0 / tau - sigma * reg.norm_sq > L / 2):
        raise UsageError(f"PDHG steps tau={tau:g}, sigma={sigma:g} violate 1/tau - sigma ||K||^2 > L/2 (L={L:g})")
    start = time.perf_counter()
    with torch.no_grad():
        x = problem.aty.clone() if x0 is None else x0.clone()
        nx = problem.normal(x)
        q = torch.zeros_like(reg.forward(x))
        f = problem.value(x, nx) + lam * reg.value(x)
        history = [float(f.sum())]
        for _ in range(int(iterations)):
            x_new = x - tau * (nx - problem.aty + reg.adjoint(q))
            q = reg.project(q + sigma * reg.forward(2 * x_new - x), lam)
            x = x_new
            nx = problem.normal(x)
            f = problem.value(x, nx) + lam * reg.value(x)
            history.append(float(f.sum()))
    return SolverResult(
        image=x, iterations=int(iterations), history=history, seconds=time.perf_counter() - start,
        parameters={"solver": "pdhg", "lambda": float(lam), "tau": tau, "sigma": sigma,
                    "regularizer": reg.name, **getattr(reg, "parameters", {})},
    )
