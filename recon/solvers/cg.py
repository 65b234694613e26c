"""Conjugate gradient for Hermitian positive (semi-)definite systems ``(N + lam I) x = b``, batched.

Batch dims (slices) are independent systems: step lengths are per batch element, and each element stops
updating once its relative residual is below ``tol`` (the loop ends when all have).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from recon.errors import UsageError
from recon.solvers.result import SolverResult

ApplyFn = Callable[[torch.Tensor], torch.Tensor]


def _dot(a: torch.Tensor, b: torch.Tensor, ndim: int) -> torch.Tensor:
    """``Re <a, b>`` over the last ``ndim`` axes, in double precision: shape ``a.shape[:-ndim]``."""
    dims = tuple(range(-ndim, 0))
    return (a.conj() * b).real.to(torch.float64).sum(dim=dims)


def _bcast(v: torch.Tensor, ndim: int, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * ndim).to(like.real.dtype)


def conjugate_gradient(
    normal: ApplyFn,
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    lam: float = 0.0,
    max_iter: int = 30,
    tol: float = 1e-6,
    ndim: int = 2,
) -> SolverResult:
    """Solve ``(N + lam I) x = b`` for each batch element.

    Parameters
    ----------
    normal: ``x -> N x`` for ``x`` of ``b``'s shape (Hermitian, positive semi-definite), e.g. a SENSE normal
        operator.
    b: right-hand side ``(..., *image)``, e.g. ``A^H y`` ``(S, H, W)``.
    x0: start (default zeros).
    lam: Tikhonov weight ``>= 0``.
    max_iter: iteration limit.
    tol: stop when ``||b - (N + lam) x|| <= tol ||b||`` for every batch element.
    ndim: number of trailing image axes (the rest are batch).

    Returns
    -------
    :class:`SolverResult` with ``history`` = the largest relative residual over the batch per iteration
    (the first entry is the start's), ``converged`` whether ``tol`` was met.
    """
    if lam < 0:
        raise UsageError(f"lambda must be >= 0, got {lam}")
    if max_iter < 0:
        raise UsageError(f"iterations must be >= 0, got {max_iter}")
    start = time.perf_counter()

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = normal(v)
        return out + lam * v if lam else out

    with torch.no_grad():
        x = torch.zeros_like(b) if x0 is None else x0.clone()
        r = b - apply(x) if x0 is not None else b.clone()
        b_norm = _dot(b, b, ndim).sqrt().clamp_min(1e-300)
        rr = _dot(r, r, ndim)
        p = r.clone()
        history = [float((rr.sqrt() / b_norm).max())]
        active = rr.sqrt() > tol * b_norm
        it = 0
        while it < max_iter and bool(active.any()):
            ap = apply(p)
            pap = _dot(p, ap, ndim)
            alpha = torch.where(active & (pap > 0), rr / pap.clamp_min(1e-300), torch.zeros_like(rr))
            x = x + _bcast(alpha, ndim, x) * p
            r = r - _bcast(alpha, ndim, r) * ap
            rr_new = _dot(r, r, ndim)
            beta = torch.where(active, rr_new / rr.clamp_min(1e-300), torch.zeros_like(rr))
            p = r + _bcast(beta, ndim, p) * p
            rr = torch.where(active, rr_new, rr)
            active = active & (rr.sqrt() > tol * b_norm)
            it += 1
            history.append(float((rr.sqrt() / b_norm).max()))
    return SolverResult(
        image=x, iterations=it, history=history, seconds=time.perf_counter() - start,
        parameters={"solver": "cg", "lambda": float(lam), "max_iter": int(max_iter), "tol": float(tol)},
        converged=not bool(active.any()),
    )
