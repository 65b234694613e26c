"""The one training loop behind ``recon train``: :class:`Trainer` runs a :class:`ModelStep` (what one model
trains on and how: VarNet / MoDL supervised or SSDU in :mod:`recon.training.supervised`, the diffusion prior's
denoising in :mod:`recon.training.diffusion`).

The loop is the same for every model: resolve the run's :class:`~recon.training.config.TrainConfig` (a
resumed run reuses the checkpoint's, with ``epochs`` and optionally ``lr`` from the new one) and check it;
the step loads its data; ``torch.manual_seed(seed)`` then the model is built and Adam made; a resumed run
restores weights, optimizer (and what the step keeps); then per epoch the optimizer steps over the step's
batches (``on_step(epoch, step, loss)`` after each), the step validates and writes the history record, and
the checkpoint (model, optimizer, RNG states, epoch, history, ``train_config``) is written atomically.

Reproducibility: everything random is seeded by ``seed`` and the epoch (the step's batches) or drawn after
``torch.manual_seed(seed)`` (the initial weights), so a run with the same seed and data repeats bit for bit,
and a run resumed from the checkpoint of epoch ``e`` continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.training.checkpoint import resume_optimizer, run_config, save_checkpoint
from recon.training.config import DIFFUSION_MODELS, SUPERVISED_MODELS, TUPLE_KEYS, TrainConfig, jsonable
from tqdm import tqdm

Log = Callable[[str], None]


class ModelStep:
    """What one kind of model trains on and how; :class:`Trainer` calls, in this order, :meth:`prepare`,
    :meth:`attach` (after the model is built), :meth:`load` (on resume), :meth:`describe`, then per epoch
    :meth:`epoch` (its batches), :meth:`loss` and :meth:`after_update` per batch, :meth:`epoch_record`,
    :meth:`saved_model` / :meth:`checkpoint_extra` and :meth:`epoch_line`."""

    #: the running mean of the last ``smoothing`` losses is shown on the progress bar
    smoothing = 20

    def __init__(self, config: TrainConfig, out: Path, device: torch.device, *, progress: bool, log: Log,
                 cache: bool = True):
        self.config, self.out, self.device, self.progress, self.log, self.cache = (
            config, out, device, progress, log, cache)

    def prepare(self, train_dir: Any, val_dir: Any) -> None:
        """Open or load the training and validation data (before the model's seed is set)."""
        raise NotImplementedError

    def attach(self, model: torch.nn.Module) -> None:
        """Called once the model is built (and before it is restored on resume)."""

    def load(self, model: torch.nn.Module, blob: dict[str, Any]) -> None:
        """Restore the model (and what the step keeps) from a checkpoint ``blob``; the optimizer is the loop's."""
        raise NotImplementedError

    def describe(self, model: torch.nn.Module) -> str:
        """The log line before the first epoch (parameters, data, device)."""
        raise NotImplementedError

    def epoch(self, epoch: int) -> tuple[int, Iterator[tuple[Any, int]]]:
        """``(examples in the epoch, iterator of (batch, examples in it))``, for the progress bar."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Any) -> float:
        """Back-propagate the loss of ``batch`` (gradients accumulate) and return its value."""
        raise NotImplementedError

    def after_update(self, model: torch.nn.Module, epoch: int, step: int) -> None:
        """Called after each optimizer step."""

    def epoch_record(self, model: torch.nn.Module, epoch: int, train_loss: float, t0: float) -> dict[str, Any]:
        """Validate and return the history record of ``epoch`` (0-based; ``seconds`` since ``t0``)."""
        raise NotImplementedError

    def saved_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module whose weights the checkpoint's ``state_dict`` holds."""
        return model

    def checkpoint_extra(self, model: torch.nn.Module) -> dict[str, Any] | None:
        """Further entries of the checkpoint."""
        return None

    def epoch_line(self, record: dict[str, Any]) -> str:
        """The log line after an epoch."""
        raise NotImplementedError


class Trainer:
    """Train ``config.model``, checkpointing to ``out`` after every epoch; ``make_step(config, out, device,
    progress=, log=, cache=)`` gives the model's :class:`ModelStep` for the run's (resolved) config.

    ``resume``: continue from ``out`` if it exists (its stored config is used, except ``epochs``); ``lr``: on
    resume, a new learning rate from the next epoch on (stored, so a later resume keeps it); ``overwrite``:
    start afresh even if ``out`` exists (otherwise an existing ``out`` without ``resume`` is an
    :class:`~recon.errors.OutputError` before any work); ``cache``: let the step cache prepared data next to
    ``out`` (the diffusion prior's combined images).
    """

    def __init__(self, out: str | Path, config: TrainConfig, make_step: Callable[..., ModelStep], *,
                 resume: bool = False, overwrite: bool = False, device: str | torch.device = "cpu",
                 progress: bool = True, log: Log | None = None, lr: float | None = None, cache: bool = True):
        self.out = Path(out)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        models = DIFFUSION_MODELS if config.kind == "diffusion" else SUPERVISED_MODELS
        self.config, self.blob = run_config(self.out, config, resume=resume, overwrite=overwrite, lr=lr,
                                            models=models, tuple_keys=TUPLE_KEYS[config.kind])
        self.config.check()
        self.device = torch.device(device)
        self.progress = progress
        self.step = make_step(self.config, self.out, self.device, progress=progress, log=self.log, cache=cache)

    def fit(self, train_dir: Any, val_dir: Any,
            on_step: Callable[[int, int, float], None] | None = None) -> list[dict[str, Any]]:
        """Run the remaining epochs; returns the history (one record per epoch, earlier epochs included)."""
        # deferred: loads recon.solvers.learned, which importing recon.training.trainer does not
        from recon.solvers.learned.registry import build_model

        config, step = self.config, self.step
        step.prepare(train_dir, val_dir)
        torch.manual_seed(config.seed)
        model = build_model({"model": config.model, **config.model_options}).to(self.device)
        step.attach(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        history: list[dict[str, Any]] = []
        start_epoch = 0
        if self.blob is not None:
            step.load(model, self.blob)
            history, start_epoch = resume_optimizer(self.blob, optimizer, config.lr)
            self.log(f"resuming {self.out} after epoch {start_epoch}")
        self.log(step.describe(model))
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            losses = self._epoch(model, optimizer, epoch, on_step)
            record = step.epoch_record(model, epoch, float(np.mean(losses)), t0)
            history.append(record)
            save_checkpoint(self.out, step.saved_model(model), optimizer, epoch=epoch + 1, history=history,
                            train_config=jsonable(config), extra=step.checkpoint_extra(model))
            self.log(step.epoch_line(record))
        return history

    def _epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
               on_step: Callable[[int, int, float], None] | None) -> list[float]:
        """One epoch of optimizer steps over the step's batches; the loss of each step."""
        model.train()
        total, batches = self.step.epoch(epoch)
        losses: list[float] = []
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{self.config.epochs}", disable=not self.progress,
                   file=sys.stderr, leave=False)
        for i, (batch, size) in enumerate(batches):
            optimizer.zero_grad(set_to_none=True)
            loss = self.step.loss(model, batch)
            optimizer.step()
            self.step.after_update(model, epoch, i)
            losses.append(loss)
            if on_step is not None:
                on_step(epoch, i, loss)
            bar.update(size)
            bar.set_postfix(loss=f"{np.mean(losses[-self.step.smoothing:]):.4f}")
        bar.close()
        return losses
