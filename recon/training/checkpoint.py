"""Training checkpoints: model + optimizer + RNG states + epoch + history, written atomically.

A checkpoint is a dict saved with ``torch.save`` that :func:`recon.solvers.learned.registry.load_model` also
reads (it has ``config`` and ``state_dict``), so a checkpoint is directly usable as ``--weights``.
:func:`export_weights` strips the optimizer and RNG states for shipping.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from recon.io.atomic import atomic_path, check_output_path
from recon.errors import UsageError
from recon import __version__

FORMAT = "recon-checkpoint-1"

C = TypeVar("C")


def run_config(out: Path, config: C, *, resume: bool, overwrite: bool, lr: float | None,
               models: Iterable[str], tuple_keys: Iterable[str] = ()) -> tuple[C, dict[str, Any] | None]:
    """The training configuration of a run writing checkpoints to ``out``.

    Resuming an existing ``out``: its stored ``train_config`` (a dataclass of ``config``'s type) with
    ``epochs`` from ``config`` (train further), ``lr`` when given, and ``tuple_keys`` back to tuples (JSON
    stored them as lists); a checkpoint of another model is a :class:`UsageError`. Otherwise ``config``, after
    checking that ``out`` may be written (:func:`recon.io.atomic.check_output_path`).
    """
    # deferred: loads recon.solvers.learned, which importing recon.training.checkpoint does not
    from recon.solvers.learned.registry import read_weights_file

    if not (resume and out.exists()):
        check_output_path(out, overwrite or resume)
        return config, None
    blob = read_weights_file(out)
    stored = dict(blob.get("train_config") or {})
    allowed = tuple(models)
    if stored.get("model") not in allowed:
        raise UsageError(f"{out} is a {stored.get('model')!r} checkpoint, not a {' or '.join(allowed)} one")
    stored["epochs"] = config.epochs  # type: ignore[attr-defined]
    for key in tuple_keys:
        if key in stored:
            stored[key] = tuple(stored[key])
    resumed = type(config)(**stored)
    if lr is not None:
        resumed = dataclasses.replace(resumed, lr=float(lr))  # type: ignore[type-var]
    return resumed, blob


def resume_optimizer(blob: dict[str, Any], optimizer: torch.optim.Optimizer, lr: float
                     ) -> tuple[list[dict[str, Any]], int]:
    """Restore ``optimizer`` from a checkpoint ``blob`` with its learning rate set to ``lr`` (the run's
    configuration decides it); returns ``(history, epochs done)``. The model weights (and RNG states, where a
    loop draws from the global generators) are the caller's to restore."""
    optimizer.load_state_dict(blob["optimizer"])
    for group in optimizer.param_groups:
        group["lr"] = lr
    return list(blob.get("history") or []), int(blob["epoch"])


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when present) random states."""
    np_state = np.random.get_state()
    states = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` saved."""
    py = states["python"]
    random.setstate((py[-2], tuple(int(v) for v in py[:-2]), py[-1]))
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, *,
                    epoch: int, history: list[dict[str, Any]], train_config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (replacing an older one at ``path``). ``epoch`` = epochs completed."""
    blob = {
        "format": FORMAT,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "rng": rng_states(),
        "history": history,
        "train_config": train_config,
        "recon_version": __version__,
        **(extra or {}),
    }
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def export_weights(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False,
                   metadata: dict[str, Any] | None = None) -> Path:
    """Write only ``config``, ``state_dict``, ``history``, ``train_config`` (+ ``metadata``) of a checkpoint."""
    # deferred: loads recon.solvers.learned, which importing recon.training.checkpoint does not
    from recon.solvers.learned.registry import read_weights_file

    blob = read_weights_file(checkpoint)
    small = {k: blob[k] for k in ("format", "config", "state_dict", "history", "train_config", "epoch",
                                  "recon_version") if k in blob}
    small["metadata"] = metadata or {}
    with atomic_path(out, overwrite=overwrite) as tmp:
        torch.save(small, tmp)
    return Path(out)
