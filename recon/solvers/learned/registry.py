"""Build a learned model from its config, and load one (with its weights) from a ``.pt`` file.

A weights file (a training checkpoint, or a bundled ``recon/weights/*.pt``) is a dict saved with
``torch.save`` holding at least ``config`` (the model's constructor arguments plus ``"model"``) and
``state_dict``; it loads with ``weights_only=True`` (no code is unpickled).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recon.errors import CorruptFileError, DataError, InputError, UsageError
from recon.solvers.learned.fastmri_varnet import FastMRIVarNet
from recon.solvers.learned.modl import MoDL
from recon.solvers.learned.varnet import VarNet


def model_classes() -> dict[str, type[nn.Module]]:
    # deferred: loads recon.solvers.diffusion, which importing recon.solvers.learned.registry does not
    from recon.solvers.diffusion.prior import DenoiserPrior

    return {"varnet": VarNet, "modl": MoDL, "diffusion": DenoiserPrior, "fastmri-varnet": FastMRIVarNet}


def build_model(config: dict[str, Any]) -> nn.Module:
    """A fresh model from ``config`` (``{"model": "varnet"|"modl", **constructor arguments}``)."""
    config = dict(config)
    name = config.pop("model", None)
    classes = model_classes()
    if name not in classes:
        raise UsageError(f"unknown model {name!r}; available: {', '.join(sorted(classes))}")
    try:  # the options against the constructor's signature only: a TypeError inside it is a bug, not bad options
        inspect.signature(classes[name]).bind(**config)
    except TypeError as exc:
        raise UsageError(f"bad options for model {name!r}: {exc}") from None
    return classes[name](**config)


def read_weights_file(path: str | Path) -> dict[str, Any]:
    """The dict stored in a weights/checkpoint file; :class:`InputError` subclasses for unusable files."""
    p = Path(path)
    if not p.is_file():
        raise InputError("weights file does not exist", p)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for garbage files
        raise CorruptFileError(f"not a readable PyTorch weights file ({type(exc).__name__})", p) from None
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise DataError("not a recon weights file (no 'config'/'state_dict')", p)
    return blob


def load_model(path: str | Path, device: str | torch.device = "cpu", expect: str | None = None) -> nn.Module:
    """The model stored in ``path``, in eval mode on ``device``.

    ``expect``: the model name the caller needs (``varnet``/``modl``); a file holding another model is a
    :class:`DataError`.
    """
    blob = read_weights_file(path)
    name = blob["config"].get("model")
    if expect is not None and name != expect:
        raise DataError(f"weights are for model {name!r}, not {expect!r}", path)
    model = build_model(blob["config"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"weights do not fit the model config: {str(exc).splitlines()[0]}", path) from None
    return model.to(device).eval()
