"""2D Cartesian sampling masks ``(H, W)`` with a fully sampled calibration box at the k-space centre.

* :func:`poisson_disc_mask` -- variable-density Poisson disc. This is **SigPy's** implementation
  (``sigpy.mri.poisson``: Bridson's dart throwing with a radius growing as ``1 + s |r|`` and a bisection on
  ``s`` to reach the acceleration), wrapped to take our seeds, restore NumPy's global random state (SigPy
  reseeds it), guarantee the calibration box and the acceleration tolerance, and raise
  :class:`~recon.errors.UsageError` for impossible requests.
* :func:`gaussian_mask` -- variable-density random mask: exactly ``round(H W / R)`` samples, the calibration
  box plus points drawn without replacement with probability proportional to a centred Gaussian.

The k-space centre (DC) is at ``(H // 2, W // 2)``, as everywhere in ``recon``; the calibration box of
size ``(ch, cw)`` covers rows ``[H//2 - ch//2, H//2 - ch//2 + ch)`` and likewise for the columns. (SigPy
places an odd-sized box one line lower on an even grid, ``int(H/2 - ch/2)``; the Poisson mask is the union of
both, so it may hold one extra calibration line.)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recon.errors import UsageError
from recon.sampling.seeds import Seed, normalize_seed

MASK2D_TYPES: tuple[str, ...] = ("poisson", "gaussian")


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in tuple(shape)[-2:])
    except (TypeError, ValueError):
        raise UsageError(f"shape must be (H, W), got {shape!r}") from None
    if len(tuple(shape)) < 2 or h < 4 or w < 4:
        raise UsageError(f"shape must be at least (4, 4) for a 2D mask, got {tuple(shape)!r}")
    return h, w


def _check_accel_calib(
    h: int, w: int, acceleration: float, calib: tuple[int, int], strict_above_one: bool
) -> tuple[int, int]:
    try:
        r = float(acceleration)
    except (TypeError, ValueError):
        raise UsageError(f"acceleration must be a number, got {acceleration!r}") from None
    if not np.isfinite(r) or r < 1 or (strict_above_one and r <= 1):
        raise UsageError(f"acceleration must be {'>' if strict_above_one else '>='} 1, got {acceleration!r}")
    ch, cw = (int(v) for v in calib)
    if ch < 0 or cw < 0 or ch >= h or cw >= w:
        raise UsageError(f"calib {calib!r} must be non-negative and smaller than the shape ({h}, {w})")
    if ch * cw * r > h * w:
        raise UsageError(
            f"acceleration {r}x cannot be met: the {ch}x{cw} calibration box alone samples more than "
            f"1/{r} of the {h}x{w} grid"
        )
    return ch, cw


def calibration_box(shape: Sequence[int], calib: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)``: True on the ``calib = (ch, cw)`` box centred on ``(H // 2, W // 2)``."""
    h, w = int(shape[-2]), int(shape[-1])
    ch, cw = int(calib[0]), int(calib[1])
    out = np.zeros((h, w), dtype=bool)
    r0, c0 = h // 2 - ch // 2, w // 2 - cw // 2
    out[r0:r0 + ch, c0:c0 + cw] = True
    return out


def _int_seed(seed: Seed) -> int:
    norm = normalize_seed(seed)
    if norm is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    if isinstance(norm, int):
        return norm
    return int(np.random.RandomState(norm).randint(2**31))


def poisson_disc_mask(
    shape: Sequence[int],
    acceleration: float,
    calib: tuple[int, int] = (0, 0),
    seed: Seed = 0,
    crop_corner: bool = True,
    rel_tol: float = 0.03,
) -> np.ndarray:
    """Variable-density Poisson-disc mask (SigPy's ``sigpy.mri.poisson`` underneath).

    Parameters
    ----------
    shape: ``(H, W)`` (or any shape ending in them).
    acceleration: ``H * W / number of samples``, > 1.
    calib: ``(ch, cw)`` fully sampled box at the centre.
    seed: int, tuple or file name (reproducible); None draws one.
    crop_corner: leave out the corners outside the inscribed ellipse (SigPy's default).
    rel_tol: the achieved acceleration is within ``rel_tol * acceleration`` of the request.

    Returns
    -------
    bool ``(H, W)``.
    """
    # deferred: loads sigpy, which importing recon.sampling.masks2d does not
    import sigpy.mri

    h, w = _check_shape(shape)
    ch, cw = _check_accel_calib(h, w, acceleration, calib, strict_above_one=True)
    if not (0 < rel_tol < 0.5):
        raise UsageError(f"rel_tol must be in (0, 0.5), got {rel_tol}")
    seed_int = _int_seed(seed)
    state = np.random.get_state()  # sigpy reseeds the global generator
    try:
        mask = sigpy.mri.poisson(
            (h, w), float(acceleration), calib=(ch, cw), dtype=bool, crop_corner=crop_corner,
            seed=seed_int, tol=rel_tol * float(acceleration),
        )
    except ValueError as exc:
        raise UsageError(f"acceleration {acceleration}x cannot be reached on a {h}x{w} Poisson-disc mask ({exc})") from None
    finally:
        np.random.set_state(state)
    mask = np.asarray(mask, dtype=bool) | calibration_box((h, w), (ch, cw))
    return mask


def gaussian_mask(
    shape: Sequence[int],
    acceleration: float,
    calib: tuple[int, int] = (0, 0),
    seed: Seed = 0,
    sigma: float = 0.35,
) -> np.ndarray:
    """Gaussian variable-density random mask with exactly ``round(H W / R)`` samples.

    Parameters
    ----------
    shape: ``(H, W)``.
    acceleration: ``R >= 1``.
    calib: ``(ch, cw)`` fully sampled centre box (counted in the samples).
    seed: int, tuple or file name; None draws one.
    sigma: standard deviation of the sampling density, as a fraction of the k-space extent along each axis
        (the density is ``exp(-(u^2 + v^2) / (2 sigma^2))`` with ``u, v`` in ``[-0.5, 0.5)``).

    Returns
    -------
    bool ``(H, W)``.
    """
    h, w = _check_shape(shape)
    ch, cw = _check_accel_calib(h, w, acceleration, calib, strict_above_one=False)
    if not (sigma > 0):
        raise UsageError(f"sigma must be > 0, got {sigma}")
    norm = normalize_seed(seed)
    rng = np.random.default_rng(norm)
    box = calibration_box((h, w), (ch, cw))
    n_total = max(int(round(h * w / float(acceleration))), int(box.sum()))
    u = (np.arange(h) - h // 2) / h
    v = (np.arange(w) - w // 2) / w
    density = np.exp(-(u[:, None] ** 2 + v[None, :] ** 2) / (2 * sigma**2))
    free = np.flatnonzero(~box.ravel())
    p = density.ravel()[free]
    n_draw = n_total - int(box.sum())
    picked = rng.choice(free, size=n_draw, replace=False, p=p / p.sum()) if n_draw > 0 else free[:0]
    mask = box.ravel().copy()
    mask[picked] = True
    return mask.reshape(h, w)


def radial_density_profile(mask: np.ndarray, n_bins: int = 8) -> np.ndarray:
    """Sampled fraction of a 2D mask in ``n_bins`` rings of normalised radius (0 = centre, 1 = edge midpoint)."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape[-2:]
    u = (np.arange(h) - h // 2) / (h / 2)
    v = (np.arange(w) - w // 2) / (w / 2)
    r = np.sqrt(u[:, None] ** 2 + v[None, :] ** 2)
    edges = np.linspace(0, 1, n_bins + 1)
    out = np.empty(n_bins)
    for i in range(n_bins):
        sel = (r >= edges[i]) & (r < edges[i + 1])
        out[i] = m[sel].mean() if sel.any() else np.nan
    return out


def mask2d_from_options(
    mask_type: str,
    shape: Sequence[int] | int,
    accelerations: float | Sequence[float],
    center_fractions: float | Sequence[float],
    seed: Seed,
) -> tuple[np.ndarray, dict[str, Any]]:
    """2D counterpart of :func:`recon.sampling.mask_from_options` (``poisson`` or ``gaussian``).

    The calibration box is ``(round(H * cf), round(W * cf))``; with lists, one (cf, R) pair is drawn from the
    seed, as fastMRI draws them.
    """
    if mask_type not in MASK2D_TYPES:
        raise UsageError(f"mask_type must be one of {', '.join(MASK2D_TYPES)}, got {mask_type!r}")
    if isinstance(shape, (int, np.integer)):
        raise UsageError(f"shape: a {mask_type} mask needs the k-space shape (..., H, W), not only a width")
    h, w = _check_shape(shape)
    accs = [accelerations] if np.isscalar(accelerations) else list(accelerations)  # type: ignore[arg-type]
    cfs = [center_fractions] if np.isscalar(center_fractions) else list(center_fractions)  # type: ignore[arg-type]
    if len(accs) != len(cfs) or not accs:
        raise UsageError(
            f"center_fractions ({len(cfs)} values) and accelerations ({len(accs)} values) must have the same length"
        )
    for cf in cfs:
        if not isinstance(cf, (int, float, np.integer, np.floating)) or not (0 < float(cf) <= 1):
            raise UsageError(f"center_fractions must be in (0, 1], got {cf!r}")
    norm = normalize_seed(seed)
    i = int(np.random.RandomState(norm).randint(len(accs))) if len(accs) > 1 else 0
    cf, r = float(cfs[i]), accs[i]
    calib = (int(round(h * cf)), int(round(w * cf)))
    if mask_type == "poisson":
        mask = poisson_disc_mask((h, w), r, calib, seed=norm)
    else:
        mask = gaussian_mask((h, w), r, calib, seed=norm)
    info = {
        "mask_type": mask_type,
        "shape": [h, w],
        "center_fraction": cf,
        "acceleration": float(r),
        "calibration": list(calib),
        "num_samples": int(mask.sum()),
        "achieved_acceleration": h * w / float(mask.sum()),
    }
    return mask, info
