"""The one configuration of a training run (``recon train``), for every model: :class:`TrainConfig`.

A field that only one kind of model reads says so; :meth:`TrainConfig.check` validates the fields that
model reads, once, before any work. What a checkpoint stores (``train_config``) is :func:`jsonable` of the
config: the fields of its model kind only, in their documented order, tuples as lists.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from recon.errors import UsageError
from recon.training.losses import LOSSES

#: models ``--loss ssdu`` trains (they return their k-space: ``model(k, mask, return_kspace=True)``)
SSDU_MODELS = ("varnet", "modl")
#: models trained on undersampled slices against a reference (or SSDU): the supervised step
SUPERVISED_MODELS = ("varnet", "modl", "fastmri-varnet")
#: models trained as a denoiser of patches: the diffusion step
DIFFUSION_MODELS = ("diffusion",)
#: sigmas (normalised images, per real component) of the diffusion prior's per-epoch validation
VAL_SIGMAS = (0.05, 0.1, 0.2, 0.5)

#: per model kind: the fields a checkpoint stores, in order; the fields stored as lists that are tuples
SUPERVISED_KEYS = ("model", "model_options", "mask_type", "accelerations", "center_fractions", "epochs", "loss",
                   "batch_size", "lr", "seed", "max_train_slices", "max_val_slices")
DIFFUSION_KEYS = ("model", "model_options", "epochs", "steps_per_epoch", "batch_size", "patch", "lr", "seed",
                  "p_mean", "p_std", "ema_decay", "val_sigmas", "max_train_slices", "max_val_slices")
TUPLE_KEYS = {"supervised": ("accelerations", "center_fractions"), "diffusion": ("val_sigmas",)}
#: defaults that depend on the model kind (``None`` in the dataclass resolves to these)
KIND_DEFAULTS = {"supervised": {"batch_size": 1, "lr": 1e-3}, "diffusion": {"batch_size": 8, "lr": 5e-4}}


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint; a resumed run reuses it).

    Every model: ``model``, ``model_options``, ``epochs``, ``batch_size`` (slices per optimizer step, default
    1; diffusion: patches per step, default 8), ``lr`` (Adam; default 1e-3, diffusion 5e-4), ``seed``,
    ``max_train_slices``, ``max_val_slices``. VarNet / MoDL (supervised or SSDU): ``mask_type``,
    ``accelerations``, ``center_fractions``, ``loss``. The diffusion prior: ``steps_per_epoch``, ``patch``,
    ``p_mean``, ``p_std`` (log-normal sigma), ``ema_decay``, ``val_sigmas``.
    """

    model: str = "varnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    mask_type: str = "random"
    accelerations: tuple[float, ...] = (4, 8)
    center_fractions: tuple[float, ...] = (0.08, 0.04)
    epochs: int = 10
    loss: str = "ssim"
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    max_train_slices: int | None = None
    max_val_slices: int | None = None
    steps_per_epoch: int = 200
    patch: int = 64
    p_mean: float = -1.2
    p_std: float = 1.2
    ema_decay: float = 0.999
    val_sigmas: tuple[float, ...] = VAL_SIGMAS

    def __post_init__(self) -> None:
        for name, value in KIND_DEFAULTS[self.kind].items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def kind(self) -> str:
        """``"diffusion"`` for the diffusion prior, else ``"supervised"`` (VarNet / MoDL, SSDU included)."""
        return "diffusion" if self.model in DIFFUSION_MODELS else "supervised"

    def check(self) -> None:
        """A :class:`UsageError` for the first invalid field the run's model reads."""
        if self.kind == "diffusion":
            self._check_diffusion()
        else:
            self._check_supervised()

    def _check_supervised(self) -> None:
        if self.loss not in LOSSES:
            raise UsageError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:  # type: ignore[operator]
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.loss == "ssdu" and self.model not in SSDU_MODELS:
            raise UsageError(f"--loss ssdu trains {' and '.join(SSDU_MODELS)} (k-space output), not {self.model}")
        if len(self.accelerations) != len(self.center_fractions):
            raise UsageError("--accelerations and --center-fractions need the same number of values")

    def _check_diffusion(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if int(self.patch) < 8:
            raise UsageError(f"--patch-size must be >= 8, got {self.patch}")
        if not self.lr > 0:  # type: ignore[operator]
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def jsonable(config: TrainConfig) -> dict[str, Any]:
    """The ``train_config`` a checkpoint stores: the fields of the config's model kind, tuples as float lists."""
    d = asdict(config)
    keys = DIFFUSION_KEYS if config.kind == "diffusion" else SUPERVISED_KEYS
    out = {k: d[k] for k in keys}
    for key in TUPLE_KEYS[config.kind]:
        out[key] = [float(v) for v in out[key]]
    return out
