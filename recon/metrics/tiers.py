"""The evaluation tiers (``--tiers pixel,feature,task``) and their metrics, in one registry.

* ``pixel``: fidelity, fastMRI's NMSE, PSNR, SSIM (:mod:`recon.metrics.fidelity`);
* ``feature``: perceptual/structural realism, HaarPSI, VIF, GMSD, HFEN (:mod:`recon.metrics.feature`);
* ``task``: offline task proxies, tissue-class Dice and edge F1 (:mod:`recon.metrics.task`).

:func:`volume_tier_metrics` scores one target/prediction pair of magnitude volumes on the chosen tiers after
one common crop (fastMRI's by default), so every tier sees the same pixels as ``recon eval``'s pixel tier.
Tier modules are imported on first use (this module loads neither torch nor scikit-image).
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Union

import numpy as np

from recon.arrays import center_crop
from recon.errors import UsageError
from recon.metrics._common import METRIC_NAMES, fastmri_crop_size

__all__ = ["TIER_NAMES", "Crop", "higher_is_better", "parse_tiers", "tier_metric_names", "volume_tier_metrics"]

#: the tiers, in their canonical order
TIER_NAMES = ("pixel", "feature", "task")
#: ``None`` (no crop), ``(h, w)`` (centre crop of both volumes), or ``"fastmri"`` (:func:`fastmri_crop_size`)
Crop = Union[None, str, tuple[int, int]]

#: where each tier's metric names (``*_METRICS``) and direction table (``HIGHER_IS_BETTER``) live
_TIER_MODULES = {"feature": ("recon.metrics.feature", "FEATURE_METRICS"),
                 "task": ("recon.metrics.task", "TASK_METRICS")}
#: direction of the pixel tier's metrics (NMSE is an error)
_PIXEL_HIGHER = {"nmse": False, "psnr": True, "ssim": True}


def parse_tiers(value: str | Sequence[str]) -> list[str]:
    """The tiers named by ``value`` (``"pixel,task"`` or a sequence of names), in the given order, without
    repeats. :class:`UsageError` (CLI exit code 2) when it names none or an unknown tier."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for part in parts:
        name = str(part).strip().lower()
        if not name:
            continue
        if name not in TIER_NAMES:
            raise UsageError(f"unknown tier {str(part).strip()!r} in --tiers; tiers: {', '.join(TIER_NAMES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise UsageError(f"--tiers names no tier; tiers: {', '.join(TIER_NAMES)}")
    return names


def _tier_module(tier: str):
    module, _ = _TIER_MODULES[tier]
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # a missing optional library (scikit-image) or a module not built here
        raise UsageError(f"the {tier} tier is not available: {exc}") from None


def tier_metric_names(tiers: str | Sequence[str]) -> list[str]:
    """The metric names of ``tiers`` (parsed as :func:`parse_tiers`), tier by tier, in report order."""
    names: list[str] = []
    for tier in parse_tiers(tiers):
        if tier == "pixel":
            names.extend(METRIC_NAMES)
        else:
            names.extend(getattr(_tier_module(tier), _TIER_MODULES[tier][1]))
    return names


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` (of any tier) is better. :class:`UsageError` if unknown."""
    if name in _PIXEL_HIGHER:
        return _PIXEL_HIGHER[name]
    for tier in _TIER_MODULES:
        try:
            table = _tier_module(tier).HIGHER_IS_BETTER
        except UsageError:
            continue
        if name in table:
            return bool(table[name])
    raise UsageError(f"unknown metric {name!r}")


def _magnitude(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise UsageError(f"metrics need numeric arrays, got dtype {arr.dtype} for the {name}")
    return np.abs(arr).astype(np.float64) if np.iscomplexobj(arr) else arr.astype(np.float64)


def volume_tier_metrics(target: np.ndarray, prediction: np.ndarray, tiers: str | Sequence[str] = ("pixel",),
                        *, crop: Crop = "fastmri") -> dict[str, float]:
    """All metrics of ``tiers`` for one prediction volume: ``{name: value}`` in :func:`tier_metric_names` order.

    Parameters
    ----------
    target, prediction: magnitude volumes ``(S, H, W)`` (complex: their magnitude), on the same scale.
    tiers: ``"pixel,feature,task"`` or a sequence of tier names.
    crop: applied to both volumes first, as fastMRI's evaluation does: ``"fastmri"`` (``(W, W)`` of the target,
        :func:`fastmri_crop_size`), ``(h, w)``, or None.
    """
    names = parse_tiers(tiers)
    t = _magnitude(target, "target")
    p = _magnitude(prediction, "prediction")
    if t.ndim != 3:
        raise UsageError(f"volume metrics need (slices, H, W) volumes, got target shape {t.shape}")
    if crop is not None:
        if isinstance(crop, str):
            if crop != "fastmri":
                raise UsageError(f"crop must be None, (h, w) or 'fastmri', got {crop!r}")
            size = fastmri_crop_size(t.shape)
        else:
            size = (int(crop[0]), int(crop[1]))
        t, p = center_crop(t, size, "target"), center_crop(p, size, "prediction")
    if t.shape != p.shape:
        raise UsageError(f"target and prediction shapes differ: {t.shape} vs {p.shape}")
    out: dict[str, float] = {}
    for tier in names:
        if tier == "pixel":
            # deferred: loads torch, tqdm, which importing recon.metrics.tiers does not
            from recon.metrics.fidelity import volume_metrics  # loads torch

            values = volume_metrics(t, p)
        elif tier == "feature":
            values = _tier_module("feature").feature_metrics(t, p)
        else:
            values = _tier_module("task").task_metrics(t, p)
        out.update({k: float(v) for k, v in values.items()})
    return out
