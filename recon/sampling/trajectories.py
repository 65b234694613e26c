"""Non-Cartesian k-space trajectories: radial (uniform or golden angle) and spiral.

Units
-----
Coordinates are in **radians per pixel**, each component in ``[-pi, pi)``: ``k = 2 pi * cycles / N`` for an
image of ``N`` pixels along that axis, so ``pi`` is the Nyquist frequency of the image grid whatever its size.
The alternative convention, **cycles per field of view** in ``[-N/2, N/2)`` (SigPy's ``coord``, BART's
``traj`` up to axis order), is :func:`to_cycles` / :func:`from_cycles`.

Axis order: ``traj[..., 0]`` is the frequency along image axis H (readout, ``x``), ``traj[..., 1]`` along
image axis W (phase encode, ``y``), matching our ``(H, W)`` images and SigPy's ``coord`` order for an
image of shape ``(H, W)``. A trajectory array has shape ``(spokes or interleaves, samples, 2)``.

The generators return every component in the half-open ``[-pi, pi)``; a component equal to ``+pi`` (same
frequency as ``-pi`` on the image grid) is written as ``-pi``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recon.errors import UsageError

GOLDEN_ANGLE_RAD: float = float(np.pi * (np.sqrt(5.0) - 1.0) / 2.0)
"""Golden angle for full spokes (diameters): ``180 deg / phi = 111.2461 deg`` (Winkelmann et al. 2007)."""
GOLDEN_ANGLE_DEG: float = float(np.degrees(GOLDEN_ANGLE_RAD))


def _positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _half_open(k: np.ndarray) -> np.ndarray:
    """Map components that round to ``+pi`` onto ``-pi`` (the same frequency), so all lie in ``[-pi, pi)``."""
    k = np.where(k >= np.pi, k - 2 * np.pi, k)
    return np.where(k < -np.pi, -np.pi, k)


def radial_angles(n_spokes: int, golden: bool = False) -> np.ndarray:
    """Spoke angles in radians, ``(n_spokes,)`` in ``[0, pi)``.

    Uniform: ``i * pi / n_spokes``. Golden angle: ``(i * GOLDEN_ANGLE_RAD) mod pi`` -- consecutive spokes are
    111.246 deg apart (modulo 180 deg, as a diameter at ``theta`` equals one at ``theta + pi``).
    """
    n = _positive_int(n_spokes, "n_spokes")
    i = np.arange(n, dtype=np.float64)
    if golden:
        return np.mod(i * GOLDEN_ANGLE_RAD, np.pi)
    return i * np.pi / n


def radial(
    n_spokes: int, base_resolution: int, oversampling: float = 1.0, golden: bool = False
) -> np.ndarray:
    """Radial trajectory of full spokes (diameters through the centre).

    Parameters
    ----------
    n_spokes: number of spokes.
    base_resolution: image size ``N`` the spokes are designed for (Nyquist spacing ``2 pi / N``).
    oversampling: readout oversampling; a spoke has ``round(N * oversampling)`` samples spaced
        ``2 pi / (N * oversampling)``, from ``-pi`` to just below ``pi``; sample ``n_samples // 2`` is ``k = 0``.
    golden: golden-angle ordering instead of uniform angles over ``[0, pi)``.

    Returns
    -------
    ``(n_spokes, n_samples, 2)`` float64, radians/pixel: ``(r cos theta, r sin theta)``.
    """
    n = _positive_int(base_resolution, "base_resolution", 2)
    if not (np.isfinite(oversampling) and oversampling >= 1):
        raise UsageError(f"oversampling must be >= 1, got {oversampling!r}")
    n_samples = int(round(n * oversampling))
    r = (np.arange(n_samples) - n_samples // 2) * (2 * np.pi / n_samples)
    theta = radial_angles(n_spokes, golden)
    traj = np.stack([np.cos(theta)[:, None] * r[None, :], np.sin(theta)[:, None] * r[None, :]], axis=-1)
    return _half_open(traj)


def spiral(
    n_interleaves: int,
    n_samples: int,
    base_resolution: int,
    alpha: float = 1.0,
    undersampling: float = 1.0,
    kmax: float = np.pi,
) -> np.ndarray:
    """Archimedean spiral interleaves, constant (``alpha = 1``) or variable density (``alpha > 1``).

    Each interleave is ``k(tau) = kmax * tau^alpha * exp(i (2 pi n_turns tau^alpha + 2 pi j / n_interleaves))``
    for ``tau`` from 0 to 1 in ``n_samples`` equal steps (no gradient or slew limits). ``n_turns`` is chosen
    so that at the edge the distance between neighbouring turns of the interleaves is ``undersampling`` times
    the Nyquist spacing ``2 pi / base_resolution``: ``n_turns = kmax N / (2 pi n_interleaves undersampling)``.
    With ``alpha > 1`` the samples crowd the centre (turns are denser there for the same sample count).

    Returns
    -------
    ``(n_interleaves, n_samples, 2)`` float64, radians/pixel, the last sample at radius ``kmax``.
    """
    n_int = _positive_int(n_interleaves, "n_interleaves")
    ns = _positive_int(n_samples, "n_samples", 2)
    n = _positive_int(base_resolution, "base_resolution", 2)
    if not (np.isfinite(alpha) and alpha >= 1):
        raise UsageError(f"alpha must be >= 1 (1 = constant density), got {alpha!r}")
    if not (np.isfinite(undersampling) and undersampling > 0):
        raise UsageError(f"undersampling must be > 0, got {undersampling!r}")
    if not (0 < kmax <= np.pi):
        raise UsageError(f"kmax must be in (0, pi] radians/pixel, got {kmax!r}")
    n_turns = kmax * n / (2 * np.pi * n_int * undersampling)
    tau = np.linspace(0.0, 1.0, ns) ** alpha
    phase = 2 * np.pi * n_turns * tau[None, :] + 2 * np.pi * np.arange(n_int)[:, None] / n_int
    r = kmax * tau[None, :]
    traj = np.stack([r * np.cos(phase), r * np.sin(phase)], axis=-1)
    return _half_open(traj)


def check_trajectory(traj: np.ndarray, name: str = "trajectory") -> np.ndarray:
    """Validate a trajectory: float array ``(..., 2)`` (or ``(..., 3)``), finite, components in ``[-pi, pi)``.

    Returns it as float64; raises :class:`UsageError` naming ``name`` otherwise.
    """
    k = np.asarray(traj)
    if k.ndim < 2 or k.shape[-1] not in (2, 3) or k.size == 0:
        raise UsageError(f"{name} must have shape (..., 2) or (..., 3), got {k.shape}")
    if not np.issubdtype(k.dtype, np.floating) and not np.issubdtype(k.dtype, np.integer):
        raise UsageError(f"{name} must be real, got dtype {k.dtype}")
    k = k.astype(np.float64)
    if not np.all(np.isfinite(k)):
        raise UsageError(f"{name} contains NaN or Inf")
    lo, hi = float(k.min()), float(k.max())
    if lo < -np.pi or hi >= np.pi:
        raise UsageError(
            f"{name} must lie in [-pi, pi) radians/pixel, got values in [{lo:.4g}, {hi:.4g}] "
            "(cycles? convert with from_cycles)"
        )
    return k


def to_cycles(traj: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Radians/pixel -> cycles per FOV (SigPy ``coord``): ``k * N / (2 pi)`` per axis, in ``[-N/2, N/2)``."""
    k = check_trajectory(traj)
    n = np.asarray(tuple(image_shape)[-k.shape[-1]:], dtype=np.float64)
    if n.shape[0] != k.shape[-1] or np.any(n < 1):
        raise UsageError(f"image_shape {tuple(image_shape)!r} does not match a {k.shape[-1]}D trajectory")
    return k * n / (2 * np.pi)


def from_cycles(coord: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Cycles per FOV ``[-N/2, N/2)`` -> radians/pixel ``[-pi, pi)``; checks the result's range."""
    c = np.asarray(coord, dtype=np.float64)
    n = np.asarray(tuple(image_shape)[-c.shape[-1]:], dtype=np.float64)
    if c.ndim < 2 or n.shape[0] != c.shape[-1] or np.any(n < 1):
        raise UsageError(f"image_shape {tuple(image_shape)!r} does not match coordinates of shape {c.shape}")
    return check_trajectory(c * (2 * np.pi) / n, "coord")
