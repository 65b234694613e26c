"""Calibration files of ``recon calibrate`` and their use by ``recon run|batch --calibration FILE`` (issue 14).

The heuristic spreads of one slice are symmetric: ``lo = hi = std + sigma_noise`` (the std of the posterior
sample magnitudes, plus the image-domain noise level so that no interval has zero width where the K samples
happen to agree). The calibrated interval is ``[mean - lam lo, mean + lam hi]`` with the scale ``lam`` that
:mod:`recon.metrics.conformal` fitted; the calibrated ``uncertainty`` is its half-width ``lam (std + noise)``.

A calibration holds only for what it was fitted on: the method and its sampling options (samples, steps,
sampler, start noise: the spread's scale depends on them), the weights (SHA-256 of the file), and the
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

FORMAT = "recon-calibration"
VERSION = 1
#: relative slack on the measured acceleration range of the calibration slices
ACCEL_TOLERANCE = 0.15
#: the spread heuristic (recorded in the file)
HEURISTIC = "std+noise"
#: sampling options that must match between calibration and use
MATCHED_OPTIONS = ("samples", "steps", "sampler", "start_sigma")


@functools.lru_cache(maxsize=16)
def _sha256(path: str, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_identity(method: str, weights: str | Path | None) -> dict[str, str]:
    """``{"name", "sha256"}`` of the weights file ``method`` uses (default: the bundled one)."""
    from recon.weights import bundled_weights

    path = Path(weights) if weights is not None else bundled_weights(method)
    if not path.is_file():
        raise UsageError("weights file not found", path)
    return {"name": path.name, "sha256": _sha256(str(path.resolve()), path.stat().st_mtime)}


def resolved_options(samples: int = 4, steps: int | None = None, sampler: str = "dds",
                     start_sigma: float | None = None) -> dict[str, Any]:
    """The sampling options as recorded (defaults filled in, so that ``--steps 12`` equals the default)."""
    from recon.solvers.diffusion.method import DEFAULT_START_SIGMA, DEFAULT_STEPS

    return {"samples": int(samples), "steps": int(DEFAULT_STEPS[sampler] if steps is None else steps),
            "sampler": sampler, "start_sigma": DEFAULT_START_SIGMA if start_sigma is None else float(start_sigma)}


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
    :class:`recon.pipeline.Undersampling` of a retrospective run)."""
    if cal.get("method") != method:
        raise UsageError(f"calibration was made for method {cal.get('method')!r}, not {method!r}", path)
    ident = weights_identity(method, weights)
    if cal.get("weights", {}).get("sha256") != ident["sha256"]:
        raise UsageError(f"calibration was made for other weights ({cal.get('weights', {}).get('name')}, sha256 "
                         f"{str(cal.get('weights', {}).get('sha256'))[:12]}...), not {ident['name']} "
                         f"({ident['sha256'][:12]}...)", path)
    if options is not None:
        want = cal.get("options", {})
        for key in MATCHED_OPTIONS:
            if key in want and key in options and want[key] != options[key]:
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
