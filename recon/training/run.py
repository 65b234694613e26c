"""``train``: one entry point for every model ``recon train`` trains; which :class:`ModelStep` a config gets.

* VarNet / MoDL / fastMRI's VarNet with an image loss: :class:`~recon.training.supervised.SupervisedStep`;
  with ``loss="ssdu"``: :class:`~recon.training.supervised.SelfSupervisedStep`.
* the diffusion prior: :class:`~recon.training.diffusion.DiffusionStep`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from recon.training.config import TrainConfig
from recon.training.diffusion import DiffusionStep
from recon.training.supervised import SelfSupervisedStep, SupervisedStep
from recon.training.trainer import ModelStep, Trainer


def step_for(config: TrainConfig, *args: Any, **kwargs: Any) -> ModelStep:
    """The training step of ``config``'s model and loss (arguments as :class:`ModelStep`)."""
    if config.kind == "diffusion":
        return DiffusionStep(config, *args, **kwargs)
    if config.loss == "ssdu":
        return SelfSupervisedStep(config, *args, **kwargs)
    return SupervisedStep(config, *args, **kwargs)


def train(out: str | Path, train_dir: str | Path | list, val_dir: str | Path | list, config: TrainConfig, *,
          resume: bool = False, overwrite: bool = False, device: str | torch.device = "cpu",
          progress: bool = True, log: Callable[[str], None] | None = None,
          on_step: Callable[[int, int, float], None] | None = None,
          lr: float | None = None, cache: bool = True) -> list[dict[str, Any]]:
    """Train ``config.model`` on ``train_dir``, validating on ``val_dir`` after every epoch.

    Parameters
    ----------
    out: checkpoint path, written after every epoch (atomically).
    resume: continue from ``out`` if it exists (its stored :class:`TrainConfig` is used, except ``epochs``).
    lr: on resume, a new learning rate from the next epoch on (a manual step schedule: train at a high rate,
        then resume at a lower one); it is stored in the checkpoint, so a later resume keeps it.
    overwrite: start afresh even if ``out`` exists (otherwise an existing ``out`` without ``resume`` is an
        :class:`~recon.errors.OutputError` before any work).
    on_step: called as ``on_step(epoch, step, loss)`` after each optimizer step (tests, logging).
    cache: the diffusion prior keeps its combined images in ``OUT.pt.images.pt`` / ``OUT.pt.val-images.pt``.

    Returns the history: one dict per epoch. VarNet / MoDL: ``epoch``, ``lr``, ``train_loss``, ``val_nmse``,
    ``val_psnr``, ``val_ssim``, ``seconds`` (SSDU: and ``val_kspace_loss``). The diffusion prior: ``epoch``,
    ``lr``, ``train_loss``, ``val_loss``, ``psnr_{sigma}``, ``psnr_noisy_{sigma}``, ``seconds``.
    """
    trainer = Trainer(out, config, step_for, resume=resume, overwrite=overwrite, device=device,
                      progress=progress, log=log, lr=lr, cache=cache)
    return trainer.fit(train_dir, val_dir, on_step)
