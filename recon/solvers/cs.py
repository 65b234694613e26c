"""Compressed sensing: L1-wavelet and TV reconstructions with automatic data scaling.

``min_x 0.5 ||A x - y / s||^2 + lam R(x)`` with ``s`` the robust signal level of the adjoint image
(:func:`recon.solvers.scaling.bart_scale`, BART's rule), then ``x * s``: one default lambda fits any data
scale, and the output is on the data's scale (``recon(c y) = c recon(y)``).

Defaults (chosen on the bundled sample at 4x, ``tests/test_solvers_sample.py``):

=============  ========  ==========  =======================================================
regulariser    solver    iterations  lambda (on scaled data)
=============  ========  ==========  =======================================================
l1-wavelet     fista     40          0.005; 0.0025 for 2D masks (db2, random shifts as BART)
tv             admm      30          0.005
=============  ========  ==========  =======================================================

L1-wavelet's lambda depends on the mask (:func:`default_lambda`): a 2D mask (one that varies along the
readout too, e.g. Poisson disc) leaves incoherent, noise-like aliasing that needs half the weight a 1D
column mask's coherent folding does. Measured with ``benchmarks/classical.py`` (PSNR dB, lambda 0.005 ->
0.0025 on the Poisson rows; the 1D rows are best at 0.005: tubes 1D 4x 22.88 at 0.005, 22.28 at 0.003):
sample P4x 31.91 -> 31.92, P8x 31.00 -> 31.36; Shepp-Logan P4x 43.21 -> 44.75, P8x 40.10 -> 41.66;
tubes P4x 38.24 -> 39.25, P8x 34.86 -> 36.31. More iterations do not help (100 instead of 40 at 0.005:
0.4-0.6 dB lower on every Poisson phantom row); the random wavelet shifts (cycle spinning) do (without them
1.2-1.9 dB lower).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from recon.errors import UsageError
from recon.solvers.admm import admm
from recon.solvers.checks import check_iterations, check_lambda
from recon.solvers.fista import fista
from recon.solvers.pdhg import pdhg
from recon.solvers.problem import LeastSquares
from recon.solvers.regularizers import make_regularizer
from recon.solvers.result import SolverResult
from recon.solvers.scaling import bart_scale, safe_scale
from recon.sampling import SamplingMask
from recon.solvers.sense import as_complex, cartesian_problem
from recon.solvers.cg import conjugate_gradient

SOLVERS = {"fista": fista, "admm": admm, "pdhg": pdhg}
#: the step options each solver takes through :func:`solve_scaled` (checked there, before any work)
SOLVER_OPTIONS: dict[str, tuple[str, ...]] = {
    "fista": ("step", "restart", "monotone", "track_objective"),
    "admm": ("rho", "cg_iterations"),
    "pdhg": ("tau", "sigma", "norm_sq"),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "l1-wavelet": {"solver": "fista", "iterations": 40, "lam": 0.005},
    "tv": {"solver": "admm", "iterations": 30, "lam": 0.005},
}
#: L1-wavelet lambda for masks that vary along the readout (2D masks: Poisson disc, Gaussian density)
L1_LAMBDA_2D = 0.0025


def is_2d_mask(mask: Any) -> bool:
    """Deprecated: ``SamplingMask(mask).is_2d`` (False for None)."""
    warnings.warn("recon.solvers.cs.is_2d_mask is deprecated and will be removed in the next release; use "
                  "recon.sampling.SamplingMask(mask).is_2d", DeprecationWarning, stacklevel=2)
    return mask is not None and SamplingMask(mask).is_2d


def default_lambda(regularizer: str, mask: Any = None) -> float:
    """The default lambda of ``regularizer`` for data sampled with ``mask`` (see the module docstring)."""
    if regularizer == "l1-wavelet" and mask is not None and SamplingMask(mask).is_2d:
        return L1_LAMBDA_2D
    return float(DEFAULTS[regularizer]["lam"]) if regularizer in DEFAULTS else float(DEFAULTS["l1-wavelet"]["lam"])


def solve_scaled(
    problem: LeastSquares,
    regularizer: str = "l1-wavelet",
    *,
    lam: float | None = None,
    iterations: int | None = None,
    solver: str | None = None,
    scale: bool | float | torch.Tensor = True,
    x0: torch.Tensor | None = None,
    random_shift: bool | None = None,
    wavelet: str = "db2",
    levels: int | None = None,
    seed: int = 0,
    **solver_options: Any,
) -> SolverResult:
    """Run a CS solver on ``problem`` after dividing the data by its scale; the image comes back unscaled.

    The composition: the prox of ``lam R`` (:func:`make_prox`), the data term scaled (:func:`scaled_problem`)
    and the generic solver (:data:`SOLVERS`).

    Parameters
    ----------
    problem: the unscaled data term (``aty = A^H y``).
    regularizer: ``l1-wavelet`` or ``tv``.
    lam, iterations, solver: None = the defaults in :data:`DEFAULTS`.
    scale: True = per-slice BART scaling; a number = that scale for all, or one per batch element
        (shape ``aty.shape[:-2]``); False = none.
    x0: start on the data's scale (default ``A^H y``).
    random_shift: wavelet cycle spinning (default: on for FISTA, off otherwise).
    wavelet, levels, seed: wavelet choice and the random shifts' seed.
    solver_options: passed to the solver (``step``, ``rho``, ``cg_iterations``, ``tau``, ``sigma``, ...).
    """
    if regularizer not in DEFAULTS:
        raise UsageError(f"unknown regulariser {regularizer!r}; use 'l1-wavelet' or 'tv'")
    d = DEFAULTS[regularizer]
    lam = d["lam"] if lam is None else float(lam)
    check_lambda(lam)
    iterations = d["iterations"] if iterations is None else int(iterations)
    check_iterations(iterations)
    solver = d["solver"] if solver is None else solver
    if solver not in SOLVERS:
        raise UsageError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if regularizer == "tv" and solver == "fista":
        raise UsageError("TV has no closed-form proximal map; use solver 'admm' or 'pdhg'")
    unknown = sorted(set(solver_options) - set(SOLVER_OPTIONS[solver]))
    if unknown:
        raise UsageError(f"{regularizer} with {solver} does not take option(s): {', '.join(unknown)} "
                         f"({solver} takes {', '.join(SOLVER_OPTIONS[solver])})")
    shift = (solver == "fista") if random_shift is None else bool(random_shift)
    g = make_prox(regularizer, tuple(problem.aty.shape[-2:]), lam, wavelet=wavelet, levels=levels,
                  random_shift=shift, seed=seed)
    scaled, s_img, s = scaled_problem(problem, scale)
    start = None if x0 is None else x0 / s_img
    result = SOLVERS[solver](scaled, g, x0=start, iterations=iterations, **solver_options)
    result.image = result.image * s_img
    result.parameters["scale"] = [float(v) for v in s.reshape(-1)]
    result.parameters["iterations"] = iterations
    return result


def make_prox(regularizer: str, shape: tuple[int, ...], lam: float, *, wavelet: str = "db2",
              levels: int | None = None, random_shift: bool = False, seed: int = 0):
    """The term ``lam R`` of ``regularizer`` (``l1-wavelet``: L1 in a wavelet, :class:`~recon.solvers.prox.L1InTransform`;
    ``tv``: :class:`~recon.solvers.prox.TV`) for ``(H, W)`` images."""
    if regularizer == "l1-wavelet":
        reg = make_regularizer(regularizer, shape, wavelet=wavelet, levels=levels, random_shift=random_shift,
                               seed=seed)
    else:
        reg = make_regularizer(regularizer, shape)
    return reg.as_prox(lam)


def scaled_problem(problem: LeastSquares, scale: bool | float | torch.Tensor = True
                   ) -> tuple[LeastSquares, torch.Tensor, torch.Tensor]:
    """``problem`` with its data divided by the scale ``s`` (as :func:`solve_scaled`'s ``scale``): returns the
    scaled problem, ``s`` shaped to multiply images and ``s`` per batch element."""
    batch = problem.aty.shape[:-2]
    if scale is True:
        s = safe_scale(bart_scale(problem.aty))
    elif scale is False or scale is None:
        s = torch.ones(batch, device=problem.aty.device)
    else:  # one scale for all, or one per batch element (e.g. measured on another field of view)
        s = torch.as_tensor(scale, dtype=torch.float32).to(problem.aty.device)
        if not bool((s > 0).all()):
            raise UsageError(f"scale must be > 0, got {scale}")
        s = s.expand(batch).contiguous() if s.ndim == 0 else s.reshape(batch)
    s_img = s.reshape(s.shape + (1, 1)).to(problem.aty.real.dtype)
    scaled = LeastSquares(problem.normal, problem.aty / s_img,
                          problem.y_norm_sq / s.to(torch.float64).square(), problem.lipschitz, problem.ndim)
    return scaled, s_img, s


def solve_method(problem: LeastSquares, method: str, *, lam: float | None = None, iterations: int | None = None,
                 sense_iterations: int = 10, **opts: Any) -> tuple[SolverResult, np.ndarray | None]:
    """Solve the data term ``problem`` (any operator: Cartesian SENSE, NUFFT) with ``method``: ``sense``
    (CG on the normal equations, Tikhonov ``lam``, option ``tol``) or ``l1-wavelet``/``tv``
    (:func:`solve_scaled`, ``opts`` its options). Returns the result and the data scale (None for sense)."""
    if method == "sense":
        tol = float(opts.pop("tol", 1e-6))
        if opts:
            raise UsageError(f"sense does not take option(s): {', '.join(sorted(opts))}")
        result = conjugate_gradient(problem.normal, problem.aty, lam=0.0 if lam is None else float(lam),
                                    max_iter=sense_iterations if iterations is None else int(iterations), tol=tol,
                                    ndim=problem.ndim)
        return result, None
    result = solve_scaled(problem, method, lam=lam, iterations=iterations, **opts)
    return result, np.asarray(result.parameters.get("scale"), dtype=np.float32)


def compressed_sensing(
    kspace: Any,
    maps: Any,
    mask: Any = None,
    *,
    regularizer: str = "l1-wavelet",
    device: Any = None,
    **options: Any,
) -> SolverResult:
    """L1-wavelet or TV reconstruction of Cartesian k-space ``(S, C, H, W)`` with maps ``(S, C, H, W)``.

    ``mask`` as :func:`recon.solvers.sense.cg_sense`; ``options`` as :func:`solve_scaled`. Returns the
    :class:`SolverResult` with ``image`` ``(S, H, W)`` complex64 on the data's scale.
    """
    k = as_complex(kspace, device, "kspace")
    s = as_complex(maps, k.device, "maps")
    if s.ndim == 3:
        s = s.unsqueeze(0).expand(k.shape[0], -1, -1, -1)
    problem, _ = cartesian_problem(k, s, None if mask is None else SamplingMask(mask).real_weight(k.device))
    if options.get("lam") is None:
        options["lam"] = default_lambda(regularizer, mask)
    return solve_scaled(problem, regularizer, **options)


def l1_wavelet(kspace: Any, maps: Any, mask: Any = None, **options: Any) -> SolverResult:
    """L1-wavelet CS (default FISTA, 40 iterations, lambda 0.005 on scaled data, 0.0025 for 2D masks); see
    :func:`compressed_sensing`."""
    return compressed_sensing(kspace, maps, mask, regularizer="l1-wavelet", **options)


def total_variation(kspace: Any, maps: Any, mask: Any = None, **options: Any) -> SolverResult:
    """TV CS (default ADMM, 30 iterations, lambda 0.005 on scaled data); see :func:`compressed_sensing`."""
    return compressed_sensing(kspace, maps, mask, regularizer="tv", **options)
