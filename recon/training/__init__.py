"""Training of the learned solvers (``recon train``): the public slice ``Dataset``, transforms, losses, loop,
checkpoints.

* :class:`SliceDataset`: every slice of a folder of fastMRI-layout (or any ``recon``-readable) files, lazily.
* :class:`UndersampleTransform`: mask drawn per example (reproducibly), masked k-space + target.
* :class:`SelfSupervisedTransform`: SSDU examples (DC / loss splits of the acquired samples, no target).
* :func:`train`, :class:`TrainConfig`, :func:`evaluate`: the loop; :func:`save_checkpoint`,
  :func:`export_weights`.
"""
from recon.training.checkpoint import export_weights, save_checkpoint
from recon.training.dataset import Example, SliceDataset
from recon.training.losses import LOSSES, get_loss
from recon.training.loop import TrainConfig, evaluate, predict, train
from recon.training.transforms import SelfSupervisedTransform, UndersampleTransform

__all__ = [
    "Example", "LOSSES", "SelfSupervisedTransform", "SliceDataset", "TrainConfig", "UndersampleTransform", "evaluate", "export_weights",
    "get_loss", "predict", "save_checkpoint", "train",
]
