"""Training of the learned solvers and the diffusion prior (``recon train``): the public slice ``Dataset``,
transforms, losses, one config, one loop, checkpoints.

* :class:`SliceDataset`: every slice of a folder of fastMRI-layout (or any ``recon``-readable) files, lazily.
* :class:`UndersampleTransform`: mask drawn per example (reproducibly), masked k-space + target.
* :class:`SelfSupervisedTransform`: SSDU examples (DC / loss splits of the acquired samples, no target).
* :class:`TrainConfig` (:mod:`.config`): what defines a run, for every model.
* :func:`train` (:mod:`.run`): :class:`Trainer` (:mod:`.trainer`, the one loop) with the model's step
  (:mod:`.supervised`: VarNet / MoDL supervised and SSDU; :mod:`.diffusion`: the diffusion prior);
  :func:`evaluate`, :func:`predict`; :func:`save_checkpoint`, :func:`export_weights`.
"""
from recon.training.checkpoint import export_weights, save_checkpoint
from recon.training.config import TrainConfig
from recon.training.dataset import Example, SliceDataset
from recon.training.losses import LOSSES, get_loss
from recon.training.run import step_for, train
from recon.training.supervised import evaluate, predict
from recon.training.trainer import ModelStep, Trainer
from recon.training.transforms import SelfSupervisedTransform, UndersampleTransform

__all__ = [
    "Example", "LOSSES", "ModelStep", "SelfSupervisedTransform", "SliceDataset", "TrainConfig", "Trainer",
    "UndersampleTransform", "evaluate", "export_weights", "get_loss", "predict", "save_checkpoint", "step_for",
    "train",
]
