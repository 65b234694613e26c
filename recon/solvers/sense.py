"""Cartesian SENSE problems and CG-SENSE (Pruessmann et al. 2001) on the fused SENSE normal operator.

``A = M F S`` (:class:`recon.operators.Sense`): image ``(S, H, W)`` -> masked k-space ``(S, C, H, W)``.
CG-SENSE solves ``(A^H A + lam I) x = A^H y``. With maps normalised to ``sum_c |S_c|^2 = 1`` (ESPIRiT's
are, where not cropped) and fully sampled noiseless data, ``x`` is the coil-combined image and ``|x|``
equals the RSS image wherever the maps are nonzero.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from recon.errors import UsageError
from recon.solvers.checks import check_lambda
from recon.operators import Sense
from recon.sampling import SamplingMask
from recon.solvers.cg import conjugate_gradient
from recon.solvers.problem import LeastSquares, least_squares
from recon.solvers.result import SolverResult
from recon.operators.device import to_device


def as_complex(x: Any, device: Any = None, name: str = "array") -> torch.Tensor:
    """numpy/torch -> complex64 tensor on ``device`` (default: the input's, CPU for numpy)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if not (t.is_complex() or t.is_floating_point()):
        raise UsageError(f"{name} must be a complex array, got dtype {t.dtype}")
    t = t.to(torch.complex64) if t.dtype != torch.complex64 else t
    return to_device(t, device)


def as_mask(mask: Any, device: Any = None) -> torch.Tensor | None:
    """Deprecated: ``SamplingMask(mask).real_weight(device)`` (None stays None)."""
    warnings.warn("recon.solvers.sense.as_mask is deprecated and will be removed in the next release; use "
                  "recon.sampling.SamplingMask(mask).real_weight(device)", DeprecationWarning, stacklevel=2)
    return None if mask is None else SamplingMask(mask).real_weight(device)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Maps ``(..., C, H, W)`` scaled to ``sum_c |S_c|^2 = 1`` per pixel (zero where they are all zero)."""
    power = (maps.real.square() + maps.imag.square()).sum(dim=-3, keepdim=True)
    inv = torch.where(power > 0, power.clamp_min(1e-30).rsqrt(), torch.zeros_like(power))
    return maps * inv


def cartesian_problem(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None) -> tuple[LeastSquares, Sense]:
    """The data term ``0.5 ||M F S x - M y||^2`` of k-space ``(S, C, H, W)``, maps ``(S, C, H, W)``.

    The Lipschitz bound is ``max|M|^2 * max_x sum_c |S_c(x)|^2`` (exact upper bound, no power iteration).
    """
    if kspace.ndim != 4 or maps.shape[-3:] != kspace.shape[-3:]:
        raise UsageError(f"maps of shape {tuple(maps.shape)} do not fit k-space of shape {tuple(kspace.shape)}")
    op = Sense(maps, mask)
    y = kspace if mask is None else kspace * mask.to(kspace.real.dtype)
    power = float((maps.real.square() + maps.imag.square()).sum(dim=-3).max())
    mmax = 1.0 if mask is None else float(mask.abs().max()) ** 2
    return least_squares(op, y, max(power * mmax, 1e-12)), op


def cg_sense(
    kspace: Any,
    maps: Any,
    mask: Any = None,
    *,
    lam: float = 0.0,
    iterations: int = 30,
    tol: float = 1e-6,
    x0: torch.Tensor | None = None,
    device: Any = None,
) -> SolverResult:
    """CG-SENSE: solve ``(A^H A + lam I) x = A^H y`` for each slice.

    Parameters
    ----------
    kspace: ``(S, C, H, W)`` complex k-space (numpy or torch); unsampled points are masked out.
    maps: ``(S, C, H, W)`` (or ``(C, H, W)``, shared) coil sensitivities.
    mask: sampling mask (``(W,)``, ``(H, W)``, ``(S, H, W)``, or broadcastable to the k-space); None = all.
    lam: Tikhonov weight ``>= 0`` (on the data's scale: the system is linear, so no data scaling).
    iterations, tol: CG limits (relative residual of the normal equations).
    device: torch device (default: the k-space's).

    Returns
    -------
    :class:`SolverResult`: ``image`` ``(S, H, W)`` complex64, ``history`` the relative residuals.
    """
    check_lambda(lam)
    k = as_complex(kspace, device, "kspace")
    s = as_complex(maps, k.device, "maps")
    if s.ndim == 3:
        s = s.unsqueeze(0).expand(k.shape[0], -1, -1, -1)
    problem, _ = cartesian_problem(k, s, None if mask is None else SamplingMask(mask).real_weight(k.device))
    result = conjugate_gradient(problem.normal, problem.aty, x0, lam=lam, max_iter=iterations, tol=tol)
    result.parameters["solver"] = "cg-sense"
    return result
