"""Simulated receive-coil sensitivities, background phase and coil noise.

Coil sensitivities come from ``sigpy.mri.birdcage_maps``: ``num_coils`` loops evenly spaced on an ellipse
1.5 times the half field of view from its centre, each with a ``1/distance`` magnitude and a smoothly
varying phase. SigPy normalises the maps so that ``sum_c |S_c|^2 == 1`` at every pixel (to float32
precision), so the root sum of squares of noiseless coil images equals the magnitude of the object, and an
RSS reconstruction is directly comparable with the original image.
"""
from __future__ import annotations

import numpy as np

from recon.errors import UsageError

#: relative radius of the coil ring (SigPy's default): coils sit outside the field of view
COIL_RING_RADIUS = 1.5


def coil_sensitivities(num_coils: int, shape: tuple[int, int], *, radius: float = COIL_RING_RADIUS) -> np.ndarray:
    """Smooth complex coil sensitivity maps, deterministic for the same arguments.

    Parameters
    ----------
    num_coils: number of receive channels (>= 1).
    shape: ``(H, W)`` of the image grid the maps cover (the reconstructed field of view).
    radius: coil ring radius relative to the half field of view along each axis.

    Returns
    -------
    ``(num_coils, H, W)`` complex64, dimensionless, with ``sum_c |S_c|^2 == 1`` everywhere.
    """
    if int(num_coils) < 1:
        raise UsageError(f"num_coils must be >= 1, got {num_coils}")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise UsageError(f"coil map shape must be positive, got {shape}")
    # deferred: loads sigpy, which importing recon.simulate.coils does not
    from sigpy.mri import birdcage_maps  # sigpy's import is slow (numba); only simulation needs it

    return birdcage_maps((int(num_coils), h, w), r=float(radius)).astype(np.complex64)


def smooth_phase(shape: tuple[int, int], rng: np.random.Generator, order: int = 2) -> np.ndarray:
    """A smooth background phase: a random polynomial of total degree ``order`` in the pixel coordinates.

    Coordinates run over [-1, 1] along H and W; the constant term is uniform in [-pi, pi), every higher
    term's coefficient uniform in [-pi/2, pi/2), so the phase varies by about one to two pi across the image.

    Returns
    -------
    ``(H, W)`` float32 phase in radians.
    """
    h, w = int(shape[0]), int(shape[1])
    u = np.linspace(-1.0, 1.0, h)[:, None]
    v = np.linspace(-1.0, 1.0, w)[None, :]
    phase = np.full((h, w), rng.uniform(-np.pi, np.pi))
    for total in range(1, order + 1):
        for i in range(total + 1):
            phase = phase + rng.uniform(-np.pi / 2, np.pi / 2) * u ** i * v ** (total - i)
    return phase.astype(np.float32)


def noise_covariance(num_coils: int, std: float, correlation: float = 0.0) -> np.ndarray:
    """Coil noise covariance ``std^2 * rho^|i - j|`` (neighbouring channels correlate most).

    Parameters
    ----------
    num_coils: number of channels.
    std: per-channel complex noise standard deviation (``E|n|^2 = std^2``), on the k-space scale.
    correlation: ``rho`` in [0, 1); 0 gives independent channels. The matrix is positive definite for any
        such ``rho`` (a Kac-Murdock-Szego matrix).

    Returns
    -------
    ``(num_coils, num_coils)`` complex64 Hermitian covariance.
    """
    if not 0.0 <= float(correlation) < 1.0:
        raise UsageError(f"noise correlation must lie in [0, 1), got {correlation}")
    idx = np.arange(int(num_coils))
    corr = float(correlation) ** np.abs(idx[:, None] - idx[None, :])
    return (float(std) ** 2 * corr).astype(np.complex64)


def coil_noise(shape: tuple[int, ...], covariance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Complex Gaussian noise with the given coil covariance.

    Parameters
    ----------
    shape: ``(S, C, H, W)`` of the noise array.
    covariance: ``(C, C)`` Hermitian positive (semi-)definite covariance.

    Returns
    -------
    ``(S, C, H, W)`` complex64 with ``E[n n^H] = covariance`` over the coil axis, independent elsewhere.
    """
    white = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32))
    white *= np.float32(np.sqrt(0.5))
    cov = np.asarray(covariance, dtype=np.complex128)
    if not np.any(cov):
        return np.zeros(shape, np.complex64)
    chol = np.linalg.cholesky(cov + 1e-12 * np.trace(cov).real * np.eye(cov.shape[0])).astype(np.complex64)
    return np.einsum("cd,sdhw->schw", chol, white.astype(np.complex64), optimize=True).astype(np.complex64)
