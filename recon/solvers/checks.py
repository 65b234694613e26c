"""The argument checks every solver shares: a regularisation weight and an iteration count.

One place, so that every solver refuses the same values with the same message (a NaN weight included: the
``lam < 0`` tests they had let NaN through).
"""
from __future__ import annotations

from typing import Any

import torch

from recon.errors import UsageError


def check_lambda(lam: Any, name: str = "lambda") -> None:
    """:class:`UsageError` unless ``lam`` is None or a weight >= 0 (a number, or a tensor of per-slice
    weights, every entry); NaN is refused."""
    if lam is None:
        return
    if isinstance(lam, torch.Tensor):
        ok = bool(torch.all(lam >= 0))
    else:
        try:
            ok = float(lam) >= 0
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise UsageError(f"{name} must be >= 0, got {lam}")


def check_iterations(iterations: Any, name: str = "iterations") -> None:
    """:class:`UsageError` unless ``iterations`` is None or an integer >= 0."""
    if iterations is not None and int(iterations) < 0:
        raise UsageError(f"{name} must be >= 0, got {iterations}")
