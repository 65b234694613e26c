"""Deprecated (for one release): the training loop is :mod:`recon.training.trainer` (one :class:`Trainer`),
run by :func:`recon.training.train`; the VarNet / MoDL steps and their validation are in
:mod:`recon.training.supervised`, the one config in :mod:`recon.training.config`. The old names still import
from here, with a :class:`DeprecationWarning`."""
from __future__ import annotations

import warnings
from typing import Any

import recon.training.config
import recon.training.run
import recon.training.supervised

_MOVED = {
    "TrainConfig": "recon.training.config", "SSDU_MODELS": "recon.training.config",
    "train": "recon.training.run",
    **{name: "recon.training.supervised" for name in (
        "crop_to", "predict", "evaluate", "ssdu_predict", "evaluate_self_supervised", "describe_validation",
        "_epoch_order")},
}

_MODULES = {m.__name__: m for m in (recon.training.config, recon.training.run, recon.training.supervised)}


def __getattr__(name: str) -> Any:
    if name == "_jsonable":
        name, where = "jsonable", "recon.training.config"
    elif name in _MOVED:
        where = _MOVED[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"recon.training.loop.{name} is deprecated; use {where}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(_MODULES[where], name)
