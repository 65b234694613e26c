"""FISTA (Beck & Teboulle 2009) with adaptive restart for ``min_x 0.5 ||A x - y||^2 + g(x)``.

Generic: any data term (a :class:`~recon.solvers.problem.LeastSquares`, or an operator ``A`` with data ``y``)
and any prox object ``g`` (:mod:`recon.solvers.prox`: L1 in a wavelet, box, non-negativity, ...), with any
number of leading batch dims (independent problems: per-element momentum, restarts and objective). The
earlier form ``fista(problem, reg, lam)`` (a regulariser and its weight) is the same as
``fista(problem, reg.as_prox(lam))``.

One normal-operator application per iteration: the iteration keeps ``A^H A x_k`` and gets ``A^H A z`` of the
extrapolated point ``z = x_k + beta (x_k - x_{k-1})`` by linearity, so the objective of every iterate is
available without extra operator calls and is recorded in ``history``.

Restart (O'Donoghue & Candes 2015). With ``monotone=True`` (default when the prox is fixed, i.e. no
random wavelet shifts) the momentum is reset when the objective goes up and that step is rejected, so the
next one is a plain proximal-gradient step from the better point, which cannot increase the objective for
``step <= 1 / L`` (it is accepted as it is): the recorded objective is then non-increasing up to rounding. With random wavelet shifts (the objective
changes from one iteration to the next) the gradient criterion is used instead: reset when
``Re <z - x_{k+1}, x_{k+1} - x_k> > 0``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from recon.errors import UsageError
from recon.solvers.checks import check_iterations
from recon.solvers.problem import LeastSquares, as_problem, real_dot
from recon.solvers.prox import describe, resolve
from recon.solvers.result import SolverResult


def _b(v: torch.Tensor, like: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * ndim).to(like.real.dtype)


def _always_select(device: torch.device) -> bool:
    """Whether a restart step applies its selects without first asking the host whether any element restarted:
    on a GPU (the question would synchronise every iteration), not on the CPU (it is free and skips them)."""
    return device.type != "cpu"


@dataclass
class _Iterate:
    """One FISTA state: ``x``, ``A^H A x``, the objective ``f`` and momentum ``t`` per batch element."""

    x: torch.Tensor
    nx: torch.Tensor
    f: torch.Tensor
    t: torch.Tensor


def fista(
    problem,
    prox,
    lam: float | None = None,
    *,
    y: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    iterations: int = 40,
    step: float | None = None,
    restart: bool = True,
    monotone: bool | None = None,
    track_objective: bool | None = None,
) -> SolverResult:
    """Minimise ``0.5 ||A x - y||^2 + g(x)`` per batch element.

    Parameters
    ----------
    problem: the data term (:class:`LeastSquares`), or an operator ``A`` (then ``y`` is its data).
    prox: the prox object ``g`` (:mod:`recon.solvers.prox`), or a regulariser with ``as_prox`` (then ``lam``).
    lam: with a regulariser: its weight ``>= 0``.
    x0: start ``(..., *image)`` (default ``A^H y``).
    iterations: number of iterations.
    step: gradient step (default ``1 / L``).
    restart: adaptive restart of the momentum.
    monotone: reject objective increases (default: True unless ``prox.random_shift``).
    track_objective: evaluate the objective after every iteration (one extra wavelet transform each, about
        13 % of an iteration at 256 x 256 x 8 coils). Default: only where the iteration needs it (monotone
        restart); otherwise (random shifts, gradient restart) the iterates do not depend on it and it is
        evaluated at the start and the end only. The image is the same either way.

    Returns
    -------
    :class:`SolverResult`; ``history[k]`` is the objective (summed over the batch) after ``k`` iterations
    (with ``track_objective`` False: ``[start, end]``).
    """
    g = resolve(prox, lam, "fista")
    check_iterations(iterations)
    problem = as_problem(problem, y)
    start = time.perf_counter()
    monotone = (not bool(getattr(g, "random_shift", False))) if monotone is None else bool(monotone)
    track = (restart and monotone) if track_objective is None else bool(track_objective)
    if restart and monotone and not track:
        raise UsageError("monotone restart needs the objective: track_objective must not be False")
    t_step = (1.0 / problem.lipschitz) if step is None else float(step)
    with torch.no_grad():
        cur = _first(problem, g, x0)
        prev = cur
        # objective values and the restart count stay tensors until the loop ends: no host synchronisation
        # inside the loop on a GPU
        history = [cur.f.sum()]
        restarts = torch.zeros((), dtype=torch.int64, device=cur.f.device)
        rejected = torch.zeros_like(cur.f, dtype=torch.bool)
        for _ in range(int(iterations)):
            new, worse = _step(problem, g, cur, prev, t_step, track, restart, monotone, rejected)
            if worse is not None:
                rejected = worse if monotone else rejected
                restarts += worse.sum()
            prev, cur = cur, new
            if track:
                history.append(cur.f.sum())
        if not track and iterations > 0:
            history.append((problem.value(cur.x, cur.nx) + g.value(cur.x)).sum())
    return SolverResult(
        image=cur.x, iterations=int(iterations), history=torch.stack(history).tolist(),
        seconds=time.perf_counter() - start,
        parameters={"solver": "fista", **describe(g), "step": t_step, "restart": restart,
                    "monotone": monotone},
        restarts=int(restarts),
    )


def _first(problem: LeastSquares, g, x0: torch.Tensor | None) -> _Iterate:
    x = problem.aty.clone() if x0 is None else x0.clone()
    nx = problem.normal(x)
    f = problem.value(x, nx) + g.value(x)
    return _Iterate(x, nx, f, torch.ones_like(f))


def _step(problem: LeastSquares, g, cur: _Iterate, prev: _Iterate, t_step: float, track: bool,
          restart: bool, monotone: bool, rejected: torch.Tensor) -> tuple[_Iterate, torch.Tensor | None]:
    """One accelerated proximal-gradient step from ``cur`` (momentum from ``prev``), restart applied.

    Returns the new iterate and, with ``restart``, the batch elements that restarted."""
    nd = problem.ndim
    x, nx, f, t = cur.x, cur.nx, cur.f, cur.t
    t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
    # z = x + beta (x - x_prev), beta = (t - 1) / t_new: one lerp towards x_prev with weight -beta
    w = _b((1 - t) / t_new, x, nd).to(x.dtype)
    z = torch.lerp(x, prev.x, w)
    nz = torch.lerp(nx, prev.nx, w)
    x_new = g(torch.add(z, torch.sub(nz, problem.aty), alpha=-t_step), t_step)
    nx_new = problem.normal(x_new)
    f_new = problem.value(x_new, nx_new) + g.value(x_new) if track else f
    if not restart:
        return _Iterate(x_new, nx_new, f_new, t_new), None
    if monotone:  # function-value restart, and the worse step rejected, unless it is the plain
        # proximal-gradient step right after a rejection (a descent step in exact arithmetic;
        # accepting it keeps rounding noise in f from stalling the iteration)
        worse = (f_new > f) & ~rejected
    else:  # gradient restart: the step points against the momentum
        worse = real_dot(z - x_new, x_new - x, nd) > 0
    # on the CPU the check is free and saves the selects below when nothing restarts; on a GPU it would
    # synchronise with the host every iteration, so the selects always run there (same values)
    if _always_select(x.device) or bool(worse.any()):
        # t = 1 makes the next extrapolation weight (t - 1) / t_new zero: no momentum
        t_new = torch.where(worse, torch.ones_like(t_new), t_new)
        if monotone:
            keep = _b(worse, x, nd).bool()
            x_new = torch.where(keep, x, x_new)
            nx_new = torch.where(keep, nx, nx_new)
            f_new = torch.where(worse, f, f_new)
    return _Iterate(x_new, nx_new, f_new, t_new), worse
