"""Fidelity-tier metrics: fastMRI's NMSE, PSNR and SSIM (torch, differentiable), folder evaluation and the
data-consistency residual.

* :func:`nmse`, :func:`psnr`, :func:`ssim`, :func:`volume_metrics`: floats, numpy or torch inputs;
  ``*_tensor`` variants and :class:`SSIMLoss` for autograd (training losses).
* :func:`evaluate_folders` -> :class:`EvalResult`: fastMRI's ``evaluate.py`` over two folders (``recon eval``).
* :func:`dc_residual`: ``||M (F S x) - y||`` per coil and phase-encode line.
* :func:`reference_slice`, :func:`reference_metrics`: metrics of ``recon run`` against the input's reference.
* :func:`task_metrics`: the task tier (tissue-class Dice, edge F1); :func:`volume_tier_metrics`,
  :func:`parse_tiers`, :func:`tier_metric_names`, :func:`higher_is_better`: the ``--tiers`` registry.

Names are imported on first use (PEP 562), so ``recon eval`` checks its inputs before torch is loaded.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "recon.metrics._common": ("K1", "K2", "METRIC_NAMES", "WIN_SIZE", "fastmri_crop_size"),
    "recon.metrics.fidelity": ("SSIMLoss", "nmse", "nmse_tensor", "psnr", "psnr_tensor", "ssim", "ssim_tensor",
                               "volume_metrics"),
    "recon.metrics.evaluation": ("EvalResult", "evaluate_folders"),
    "recon.metrics.consistency": ("dc_residual",),
    "recon.metrics.reference": ("reference_metrics", "reference_slice"),
    "recon.metrics.feature": ("FEATURE_METRICS", "HIGHER_IS_BETTER", "feature_metrics", "gmsd", "haarpsi", "hfen",
                              "vif"),
    "recon.metrics.task": ("TASK_METRICS", "task_metrics"),
    "recon.metrics.tiers": ("TIER_NAMES", "higher_is_better", "parse_tiers", "tier_metric_names",
                            "volume_tier_metrics"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'recon.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
