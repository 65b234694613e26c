"""Non-Cartesian reconstruction (radial, spiral): the same solvers through the NUFFT operator.

Model: ``y_c = F (S_c x)`` with ``F`` the orthonormal NUFFT (:class:`recon.operators.NUFFT`, trajectory in
radians/pixel). With ``weighted=True`` (default) the data term is density weighted,
``0.5 ||W^(1/2) (F S x - y)||^2``, which equalises the k-space and makes CG/FISTA converge in far fewer
iterations; its normal operator is the NUFFT's Toeplitz form (two FFTs on a 2x grid per coil).

ESPIRiT maps come from the gridded centre: the density-compensated adjoint ``F^H (w y)`` of each coil,
Fourier transformed onto the Cartesian grid, of which the central ``calib_size`` square (fully covered by
any centre-dense trajectory) is the calibration region.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from recon.errors import UsageError
from recon.solvers.result import ReconResult
from recon.solvers.reconstruct import _check_common, estimate_maps, resolve_device, SENSE_ITERATIONS
from recon.solvers.autolambda import is_auto
from recon.sampling import check_trajectory, pipe_menon_dcf
from recon.operators import fft2c, NUFFT, SensitivityExpand
from recon.solvers.sense import normalize_maps
from recon.coils.calibration import region_start
from recon.solvers.problem import least_squares
from recon.solvers.cs import solve_method

METHODS = ("zero-filled", "sense", "l1-wavelet", "tv")


def reconstruct_noncartesian(
    kspace: Any,
    traj: Any,
    shape: tuple[int, int],
    dcf: Any = None,
    *,
    method: str = "l1-wavelet",
    maps: Any = None,
    lam: float | None = None,
    iterations: int | None = None,
    calib_size: int = 24,
    weighted: bool = True,
    device: Any = None,
    **opts: Any,
) -> ReconResult:
    """Reconstruct non-Cartesian multi-coil k-space.

    Parameters
    ----------
    kspace: ``(S, C, K)`` or ``(C, K)`` complex samples.
    traj: ``(K, 2)`` (or ``(..., K, 2)``, flattened) radians/pixel in ``[-pi, pi)``; component 0 along H.
    shape: image size ``(H, W)``.
    dcf: density-compensation weights ``(K,)`` (radians^2, e.g. :func:`recon.sampling.radial_ramp_dcf`);
        None = Pipe-Menon (:func:`recon.sampling.pipe_menon_dcf`).
    method: ``zero-filled`` (gridding + RSS), ``sense``, ``l1-wavelet`` (default) or ``tv``.
    maps: ``(S, C, H, W)`` / ``(C, H, W)`` coil maps; None = ESPIRiT from the gridded centre.
    lam, iterations: as :func:`recon.reconstruct` (sense default 10 iterations).
    calib_size: side of the gridded calibration square.
    weighted: density-weighted data term (see module doc).
    opts: solver options as :func:`recon.solvers.cs.solve_scaled`.

    Returns
    -------
    :class:`ReconResult` with ``image`` ``(S, H, W)`` float32 magnitude; the scale of the images is that of
    the orthonormal NUFFT model (``||F x|| ~ ||x||`` for a Nyquist-sampled trajectory).
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise UsageError(f"unknown non-Cartesian method {method!r}; available: {', '.join(METHODS)}")
    _check_common(lam, iterations)

    if is_auto(lam):  # the hold-out split works on Cartesian lines and samples
        raise UsageError("lambda 'auto' (cross-validated) is for Cartesian data; give a number for "
                         "non-Cartesian reconstruction")
    dev = resolve_device(device)
    k, t, d = _inputs(kspace, traj, shape, dcf, dev)
    h, w = int(shape[0]), int(shape[1])
    traj_t = torch.from_numpy(t.astype(np.float32))
    dcf_t = torch.from_numpy(d.astype(np.float32)).to(dev)
    coil_images = _gridded_coil_images(k, traj_t, dcf_t, (h, w))  # (S, C, H, W)
    params: dict[str, Any] = {"method": method, "weighted": bool(weighted), "trajectory_points": int(t.shape[0])}
    if method == "zero-filled":
        image = (coil_images.real.square() + coil_images.imag.square()).sum(1).sqrt()
        return ReconResult(image=image.cpu().numpy().astype(np.float32), method=method,
                           seconds=time.perf_counter() - start, parameters=params)
    s_maps = _noncartesian_maps(coil_images, maps, calib_size, k.shape[0], dev)
    problem = nufft_problem(k, traj_t, dcf_t, s_maps, weighted)
    result = _solve(problem, method, lam, iterations, opts)
    scale = result.parameters.pop("scale", None)
    scale = None if scale is None else np.asarray(scale, dtype=np.float32)
    params.update(result.parameters)
    return ReconResult(
        image=result.image.abs().cpu().numpy().astype(np.float32), method=method,
        complex_image=result.image.cpu().numpy(), maps=s_maps.cpu().numpy(), scale=scale,
        seconds=time.perf_counter() - start, parameters=params, solver=result,
    )


def _inputs(kspace: Any, traj: Any, shape: tuple[int, int], dcf: Any, dev: torch.device
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The k-space ``(S, C, K)`` complex64 on ``dev``, the trajectory ``(K, 2)`` and the weights ``(K,)``
    (Pipe-Menon when ``dcf`` is None), checked."""
    k = torch.as_tensor(np.asarray(kspace) if not isinstance(kspace, torch.Tensor) else kspace)
    k = k.to(device=dev, dtype=torch.complex64)
    if k.ndim == 2:
        k = k.unsqueeze(0)
    t = check_trajectory(np.asarray(traj.cpu() if isinstance(traj, torch.Tensor) else traj), "traj")
    if t.shape[-1] != 2:
        raise UsageError(f"traj must be 2D (..., K, 2), got shape {t.shape}")
    t = t.reshape(-1, 2)
    if k.ndim != 3 or k.shape[-1] != t.shape[0]:
        raise UsageError(f"k-space of shape {tuple(k.shape)} does not fit {t.shape[0]} trajectory points")
    h, w = int(shape[0]), int(shape[1])
    d = pipe_menon_dcf(t, (h, w)) if dcf is None else np.asarray(dcf, dtype=np.float64).reshape(-1)
    if d.shape[0] != t.shape[0] or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise UsageError(f"dcf must be {t.shape[0]} finite non-negative weights, got shape {d.shape}")
    return k, t, d


def _gridded_coil_images(k: torch.Tensor, traj_t: torch.Tensor, dcf_t: torch.Tensor,
                         shape: tuple[int, int]) -> torch.Tensor:
    """The density-compensated adjoint ``F^H (w y)`` per coil, on the image scale: ``(S, C, H, W)``."""
    h, w = shape
    plain = NUFFT(traj_t, (h, w))
    # F^H W F ~ (4 pi^2 / (H W)) I for weights that are k-space areas: rescale the gridding to image scale
    grid_gain = h * w / (4 * math.pi ** 2)
    return plain.adjoint(k * dcf_t) * grid_gain


def _noncartesian_maps(coil_images: torch.Tensor, maps: Any, calib_size: int, slices: int,
                       dev: torch.device) -> torch.Tensor:
    """Coil maps ``(S, C, H, W)``: the given ones normalised, or ESPIRiT of the gridded centre."""
    if maps is None:
        h, w = coil_images.shape[-2:]
        cart = fft2c(coil_images)
        ch, cw = min(calib_size, h), min(calib_size, w)
        a, b = region_start(h, ch), region_start(w, cw)
        centre = torch.zeros_like(cart)
        centre[..., a:a + ch, b:b + cw] = cart[..., a:a + ch, b:b + cw]
        return estimate_maps(centre, None, calib_size=(ch, cw))
    s_maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
    s_maps = normalize_maps(s_maps.to(device=dev, dtype=torch.complex64))
    if s_maps.ndim == 3:
        s_maps = s_maps.unsqueeze(0).expand(slices, -1, -1, -1)
    return s_maps


def nufft_problem(k: torch.Tensor, traj_t: torch.Tensor, dcf_t: torch.Tensor, s_maps: torch.Tensor,
                  weighted: bool = True):
    """The data term ``0.5 ||W^(1/2) (F S x - y)||^2`` (``weighted``) or ``0.5 ||F S x - y||^2``:
    ``A = NUFFT @ SensitivityExpand(maps)`` and :func:`recon.solvers.problem.least_squares` (Toeplitz normal,
    Lipschitz bound by power iteration)."""
    nufft = NUFFT(traj_t, tuple(s_maps.shape[-2:]), weights=dcf_t.cpu() if weighted else None)
    op = nufft @ SensitivityExpand(s_maps)
    y = k * dcf_t.sqrt() if weighted else k
    return least_squares(op, y)


def _solve(problem, method: str, lam: float | None, iterations: int | None, opts: dict[str, Any]):
    """``sense`` or ``l1-wavelet``/``tv`` on the NUFFT data term: :func:`recon.solvers.cs.solve_method`, the
    code the Cartesian methods use."""
    result, _ = solve_method(problem, method, lam=lam, iterations=iterations, sense_iterations=SENSE_ITERATIONS,
                             **opts)
    return result
