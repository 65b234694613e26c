"""Primal-dual hybrid gradient for ``min_x 0.5 ||A x - y||^2 + h(K x)``.

The Condat-Vu form of PDHG (Chambolle-Pock with the smooth data term taken by its gradient), so that each
iteration costs one application of the fast normal operator ``A^H A`` and one of ``K``/``K^H``:

    x_{n+1} = x_n - tau (A^H A x_n - A^H y + K^H q_n)
    q_{n+1} = prox_{sigma h*}(q_n + sigma K (2 x_{n+1} - x_n))      (for h = lam ||.||_1: the projection
                                                                     onto {|q| <= lam})

Convergence needs ``1/tau - sigma ||K||^2 > L / 2`` (``L = ||A^H A||``). Defaults: ``tau = 1 / L`` and
``sigma = 0.49 L / ||K||^2``. Generic as :func:`recon.solvers.admm.admm`: any data term, any prox ``h`` with
operator ``K`` (``transform``, or the split of the prox object), any leading batch dims.
"""
from __future__ import annotations

import time

import torch

from recon.errors import UsageError
from recon.operators import power_norm
from recon.solvers.admm import split
from recon.solvers.checks import check_iterations
from recon.solvers.problem import as_problem
from recon.solvers.prox import describe, resolve
from recon.solvers.result import SolverResult


def pdhg(
    problem,
    prox,
    lam: float | None = None,
    *,
    transform=None,
    norm_sq: float | None = None,
    y: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    iterations: int = 60,
    tau: float | None = None,
    sigma: float | None = None,
) -> SolverResult:
    """Minimise ``0.5 ||A x - y||^2 + g(x)``, ``g(x) = h(K x)`` (``prox``, ``lam``, ``transform`` as
    :func:`recon.solvers.admm.admm`). ``norm_sq``: ``||K||^2`` (default: the prox object's ``norm_sq``,
    1 for the identity, else a power-iteration estimate). Other parameters as :func:`recon.solvers.fista.fista`."""
    g = resolve(prox, lam, "pdhg")
    check_iterations(iterations)
    problem = as_problem(problem, y)
    K, h = split(g, transform)
    L = problem.lipschitz
    k_norm_sq = _norm_sq(g, K, transform, norm_sq, problem.aty)
    tau = 1.0 / L if tau is None else float(tau)
    sigma = 0.49 * L / k_norm_sq if sigma is None else float(sigma)
    if not (1.0 / tau - sigma * k_norm_sq > L / 2):
        raise UsageError(f"PDHG steps tau={tau:g}, sigma={sigma:g} violate 1/tau - sigma ||K||^2 > L/2 (L={L:g})")
    start = time.perf_counter()
    with torch.no_grad():
        x = problem.aty.clone() if x0 is None else x0.clone()
        nx = problem.normal(x)
        kx = K.forward(x)
        q = _zeros_like(kx)
        history = [float((problem.value(x, nx) + h.value(kx)).sum())]
        for _ in range(int(iterations)):
            x_new = x - tau * (nx - problem.aty + K.adjoint(q))
            q = h.conjugate(_axpy(q, sigma, K.forward(2 * x_new - x)), sigma)
            x = x_new
            nx = problem.normal(x)
            history.append(float((problem.value(x, nx) + h.value(K.forward(x))).sum()))
    return SolverResult(
        image=x, iterations=int(iterations), history=history, seconds=time.perf_counter() - start,
        parameters={"solver": "pdhg", **describe(g), "tau": tau, "sigma": sigma},
    )


def _zeros_like(v):
    """Zeros shaped as ``K x``: a tensor, or a tuple of them (a stacked ``K``)."""
    return tuple(torch.zeros_like(p) for p in v) if isinstance(v, tuple) else torch.zeros_like(v)


def _axpy(q, a: float, v):
    """``q + a v`` for tensors or tuples of tensors."""
    return tuple(p + a * w for p, w in zip(q, v)) if isinstance(q, tuple) else q + a * v


def _norm_sq(g, K, transform, norm_sq: float | None, like: torch.Tensor) -> float:
    """``||K||^2``: given, the prox object's (when ``K`` is its own split), 1 for the identity, or estimated."""
    if norm_sq is not None:
        return float(norm_sq)
    if transform is None and hasattr(g, "norm_sq"):
        return float(g.norm_sq)
    if transform is None and not hasattr(g, "split"):
        return 1.0
    return 1.01 * power_norm(K, like.shape, iters=30, dtype=like.dtype, device=like.device) ** 2
