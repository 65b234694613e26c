"""FISTA (Beck & Teboulle 2009) with adaptive restart for ``min_x 0.5 ||A x - y||^2 + lam R(x)``.

One normal-operator application per iteration: the iteration keeps ``A^H A x_k`` and gets ``A^H A z`` of the
extrapolated point ``z = x_k + beta (x_k - x_{k-1})`` by linearity, so the objective of every iterate is
available without extra operator calls and is recorded in ``history``.

Restart (O'Donoghue & Candes 2015). With ``monotone=True`` (default when the regulariser is fixed, i.e. no
random wavelet shifts) the momentum is reset when the objective goes up and that step is rejected, so the
next one is a plain proximal-gradient step from the better point, which cannot increase the objective for
``step <= 1 / L`` (it is accepted as it is): the recorded objective is then non-increasing up to rounding. With random wavelet shifts (the objective
changes from one iteration to the next) the gradient criterion is used instead: reset when
``Re <z - x_{k+1}, x_{k+1} - x_k> > 0``.
"""
from __future__ import annotations

import time

import torch

from recon.errors import UsageError
from recon.solvers.checks import check_iterations, check_lambda
from recon.solvers.problem import LeastSquares, real_dot
from recon.solvers.result import SolverResult


def _b(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape + (1, 1)).to(like.real.dtype)


def fista(
    problem: LeastSquares,
    reg,
    lam: float,
    *,
    x0: torch.Tensor | None = None,
    iterations: int = 40,
    step: float | None = None,
    restart: bool = True,
    monotone: bool | None = None,
    track_objective: bool | None = None,
) -> SolverResult:
    """Minimise ``0.5 ||A x - y||^2 + lam R(x)`` per batch element.

    Parameters
    ----------
    problem: the data term (:class:`LeastSquares`).
    reg: a regulariser with ``prox(x, t)`` and ``value(x)`` (:class:`recon.solvers.regularizers.L1Wavelet`).
    lam: regularisation weight ``>= 0``.
    x0: start ``(..., H, W)`` (default ``A^H y``).
    iterations: number of iterations.
    step: gradient step (default ``1 / L``).
    restart: adaptive restart of the momentum.
    monotone: reject objective increases (default: True unless ``reg.random_shift``).
    track_objective: evaluate the objective after every iteration (one extra wavelet transform each, about
        13 % of an iteration at 256 x 256 x 8 coils). Default: only where the iteration needs it (monotone
        restart); otherwise (random shifts, gradient restart) the iterates do not depend on it and it is
        evaluated at the start and the end only. The image is the same either way.

    Returns
    -------
    :class:`SolverResult`; ``history[k]`` is the objective (summed over the batch) after ``k`` iterations
    (with ``track_objective`` False: ``[start, end]``).
    """
    check_lambda(lam)
    check_iterations(iterations)
    start = time.perf_counter()
    shifting = bool(getattr(reg, "random_shift", False))
    monotone = (not shifting) if monotone is None else bool(monotone)
    track = (restart and monotone) if track_objective is None else bool(track_objective)
    if restart and monotone and not track:
        raise UsageError("monotone restart needs the objective: track_objective must not be False")
    t_step = (1.0 / problem.lipschitz) if step is None else float(step)
    with torch.no_grad():
        x = problem.aty.clone() if x0 is None else x0.clone()
        nx = problem.normal(x)
        f = problem.value(x, nx) + lam * reg.value(x)
        x_prev, nx_prev = x, nx
        t = torch.ones_like(f)
        history = [float(f.sum())]
        restarts = 0
        rejected = torch.zeros_like(f, dtype=torch.bool)
        for _ in range(int(iterations)):
            t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            beta = _b((t - 1) / t_new, x)
            z = x + beta * (x - x_prev)
            nz = nx + beta * (nx - nx_prev)
            x_new = reg.prox(z - t_step * (nz - problem.aty), t_step * lam)
            nx_new = problem.normal(x_new)
            f_new = problem.value(x_new, nx_new) + lam * reg.value(x_new) if track else f
            if restart:
                if monotone:  # function-value restart, and the worse step rejected, unless it is the plain
                    # proximal-gradient step right after a rejection (a descent step in exact arithmetic;
                    # accepting it keeps rounding noise in f from stalling the iteration)
                    worse = (f_new > f) & ~rejected
                else:  # gradient restart: the step points against the momentum
                    worse = real_dot(z - x_new, x_new - x) > 0
                rejected = worse if monotone else rejected
                if bool(worse.any()):
                    restarts += int(worse.sum())
                    # t = 1 makes the next extrapolation weight (t - 1) / t_new zero: no momentum
                    t_new = torch.where(worse, torch.ones_like(t_new), t_new)
                    if monotone:
                        keep = _b(worse, x).bool()
                        x_new = torch.where(keep, x, x_new)
                        nx_new = torch.where(keep, nx, nx_new)
                        f_new = torch.where(worse, f, f_new)
            x_prev, nx_prev = x, nx
            x, nx, f, t = x_new, nx_new, f_new, t_new
            if track:
                history.append(float(f.sum()))
        if not track and iterations > 0:
            f = problem.value(x, nx) + lam * reg.value(x)
            history.append(float(f.sum()))
    return SolverResult(
        image=x, iterations=int(iterations), history=history, seconds=time.perf_counter() - start,
        parameters={"solver": "fista", "lambda": float(lam), "step": t_step, "restart": restart,
                    "monotone": monotone, "regularizer": reg.name, **getattr(reg, "parameters", {})},
        restarts=restarts,
    )
