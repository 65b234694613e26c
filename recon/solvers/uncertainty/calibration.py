"""Calibration files of ``recon calibrate`` and their use by ``recon run|batch --calibration FILE`` (issue 14).

The heuristic spreads of one slice are symmetric: ``lo = hi = std + sigma_noise`` (the std of the posterior
sample magnitudes, or for varnet/modl of the k-space split ensemble's members,
:func:`recon.solvers.learned.method.learned_reconstruction`; plus the image-domain noise level so that no
interval has zero width where the K samples happen to agree). The calibrated interval is ``[mean - lam lo, mean + lam hi]`` with the scale ``lam`` that
:mod:`recon.metrics.conformal` fitted; the calibrated ``uncertainty`` is its half-width ``lam (std + noise)``.

A calibration holds only for what it was fitted on: the method and its options that set the spread's scale
(:data:`MATCHED_OPTIONS`: diffusion samples, steps, sampler, start noise; varnet/modl ensemble size, split
fraction and adaptation), the weights (SHA-256 of the file), and the
acceleration (the measured one, ``mask size / sampled``, of every calibration slice; a slice whose own lies
outside that range by more than :data:`ACCEL_TOLERANCE` is refused, as is a nominal ``--accel`` that the
calibration did not use). Everything else is a :class:`~recon.errors.UsageError` (exit 2) naming the file.

JSON layout (``format: recon-calibration``, ``version: 1``): ``method``, ``options``, ``weights``
(``{"name", "sha256"}``), ``undersampling`` (``{"mask_type", "accelerations", "center_fractions"}``),
``measured_acceleration`` (``{"min", "max"}``), ``guarantee``, ``alpha``, ``delta``, ``slices``, ``files``,
``scale``, ``calibration_risk``, ``ucb``, ``heuristic``, ``object_fraction``, ``seconds``, ``recon_version``.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import UsageError
from recon.weights import bundled_weights

FORMAT = "recon-calibration"
VERSION = 1
#: relative slack on the measured acceleration range of the calibration slices
ACCEL_TOLERANCE = 0.15
#: the spread heuristic (recorded in the file)
HEURISTIC = "std+noise"
#: per method, the options that set the spread's scale and so must match between calibration and use
#: (diffusion: the sampling; varnet/modl: the k-space split ensemble and any scan-specific adaptation)
_LEARNED_OPTIONS = ("ensemble", "ensemble_fraction", "adapt", "adapt_steps", "adapt_per", "adapt_lr")
MATCHED_OPTIONS: dict[str, tuple[str, ...]] = {
    "diffusion": ("samples", "steps", "sampler", "start_sigma"),
    "varnet": _LEARNED_OPTIONS,
    "modl": _LEARNED_OPTIONS,
}
#: the methods a calibration file can be made for (those that produce a spread)
CALIBRATABLE = tuple(MATCHED_OPTIONS)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_identity(method: str, weights: str | Path | None) -> dict[str, str]:
    """``{"name", "sha256"}`` of the weights file ``method`` uses (default: the bundled one)."""
    path = Path(weights) if weights is not None else bundled_weights(method)
    if not path.is_file():
        raise UsageError("weights file not found", path)
    return {"name": path.name, "sha256": _sha256(str(path.resolve()), path.stat().st_mtime)}


def resolved_options(method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options of ``method`` that a calibration depends on (:data:`MATCHED_OPTIONS`), as recorded: defaults
    filled in, so that ``--steps 12`` equals the default. ``options``: the method's keyword options as
    ``recon run`` passes them (others are ignored). Diffusion: ``samples``, ``steps``, ``sampler``,
    ``start_sigma``; varnet/modl: ``ensemble`` (0 = none), ``ensemble_fraction``, ``adapt`` and, when adapting,
    ``adapt_steps``/``adapt_per``/``adapt_lr``."""
    o = dict(options or {})
    if method == "diffusion":
        # deferred: loads recon.solvers.diffusion, recon.solvers.learned, torch, tqdm, which importing recon.solvers.uncertainty.calibration does not
        from recon.solvers.diffusion.defaults import DEFAULT_START_SIGMA, DEFAULT_STEPS

        sampler = o.get("sampler") or "dds"
        steps, start = o.get("steps"), o.get("start_sigma")
        return {"samples": int(o.get("samples") or 4),
                "steps": int(DEFAULT_STEPS[sampler] if steps is None else steps),
                "sampler": sampler, "start_sigma": DEFAULT_START_SIGMA if start is None else float(start)}
    if method in ("varnet", "modl"):
        # deferred: loads recon.solvers.learned, torch, tqdm, which importing recon.solvers.uncertainty.calibration does not
        from recon.solvers.learned import adapt as learned_adapt

        fraction = o.get("ensemble_fraction")
        out: dict[str, Any] = {
            "ensemble": int(o.get("ensemble") or 0),
            "ensemble_fraction": float(learned_adapt.VALIDATION_FRACTION if fraction is None else fraction),
            "adapt": bool(o.get("adapt", False))}
        if out["adapt"]:
            steps, lr = o.get("adapt_steps"), o.get("adapt_lr")
            out.update({"adapt_steps": int(learned_adapt.default_steps(method) if steps is None else steps),
                        "adapt_per": o.get("adapt_per") or "slice",
                        "adapt_lr": float(learned_adapt.DEFAULT_LR if lr is None else lr)})
        return out
    raise UsageError(f"no calibration for method {method!r}; calibratable: {', '.join(CALIBRATABLE)}")


def measured_acceleration(mask: np.ndarray) -> float:
    """``mask.size / mask.sum()`` of a ``(W,)`` or ``(H, W)`` sampling mask (inf when nothing is sampled)."""
    m = np.asarray(mask, dtype=bool)
    return float(m.size / m.sum()) if m.any() else float("inf")


def heuristic_spread(std: np.ndarray, noise: float) -> np.ndarray:
    """``lo = hi`` = ``std + noise`` (float32, same shape)."""
    return (np.asarray(std, np.float32) + np.float32(noise)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> dict[str, Any]:
    try:
        cal = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the calibration file: {exc}", path) from None
    if not isinstance(cal, dict) or cal.get("format") != FORMAT:
        raise UsageError("not a recon calibration file (made by 'recon calibrate')", path)
    if cal.get("version") != VERSION or not isinstance(cal.get("scale"), (int, float)):
        raise UsageError(f"unsupported calibration file version {cal.get('version')!r}", path)
    return cal


def load_calibration(path: str | Path) -> dict[str, Any]:
    """The parsed calibration file (cached per path and modification time); UsageError if unusable."""
    p = Path(path)
    if not p.is_file():
        raise UsageError("calibration file not found", p)
    return _load(str(p), p.stat().st_mtime)


def check_calibration(cal: dict[str, Any], path: str | Path, *, method: str, weights: str | Path | None = None,
                      options: dict[str, Any] | None = None, acceleration: float | None = None,
                      undersampling: Any = None) -> None:
    """Refuse (UsageError) a calibration made for another method, other weights or sampling options, or
    another acceleration (``acceleration``: a slice's measured one; ``undersampling``: the nominal
    :class:`recon.app.pipeline.Undersampling` of a retrospective run)."""
    if cal.get("method") != method:
        raise UsageError(f"calibration was made for method {cal.get('method')!r}, not {method!r}", path)
    ident = weights_identity(method, weights)
    if cal.get("weights", {}).get("sha256") != ident["sha256"]:
        raise UsageError(f"calibration was made for other weights ({cal.get('weights', {}).get('name')}, sha256 "
                         f"{str(cal.get('weights', {}).get('sha256'))[:12]}...), not {ident['name']} "
                         f"({ident['sha256'][:12]}...)", path)
    if options is not None:
        want = cal.get("options", {})
        for key in MATCHED_OPTIONS.get(method, ()):
            if (key in want or key in options) and want.get(key) != options.get(key):
                raise UsageError(f"calibration was made with {key} {want[key]!r}, not {options[key]!r}", path)
    if undersampling is not None:
        nominal = cal.get("undersampling") or {}
        accels = {float(a) for a in nominal.get("accelerations", [])}
        asked = {float(a) for a in undersampling.accelerations}
        if accels and not asked <= accels:
            raise UsageError(f"calibration was made for acceleration(s) {sorted(accels)}, not {sorted(asked)}", path)
        if nominal.get("mask_type") and nominal["mask_type"] != undersampling.mask_type:
            raise UsageError(f"calibration was made for mask type {nominal['mask_type']!r}, not "
                             f"{undersampling.mask_type!r}", path)
    if acceleration is not None:
        rng = cal.get("measured_acceleration") or {}
        lo, hi = rng.get("min"), rng.get("max")
        if lo is not None and hi is not None and not (
                lo * (1 - ACCEL_TOLERANCE) <= acceleration <= hi * (1 + ACCEL_TOLERANCE)):
            raise UsageError(f"calibration was made for accelerations {lo:.2f}-{hi:.2f} (measured), this slice "
                             f"is sampled at {acceleration:.2f}x", path)


def calibrated_outputs(mean: np.ndarray, std: np.ndarray, noise: float, scale: float) -> dict[str, np.ndarray]:
    """``lower``, ``upper`` and ``uncertainty`` (half-width) of one slice ``(..., H, W)`` float32, with
    ``lower <= mean <= upper`` exactly (in float32)."""
    m = np.asarray(mean, np.float32)
    half = (np.float32(scale) * heuristic_spread(std, noise)).astype(np.float32)
    lower = np.minimum(m - half, m)
    upper = np.maximum(m + half, m)
    return {"lower": lower, "upper": upper, "uncertainty": half}
