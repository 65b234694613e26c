"""One training config and one loop for every model: kind defaults, what a checkpoint stores, which step a
config gets, and the old names (deprecated for one release)."""
from __future__ import annotations

import pytest

from recon.training import ModelStep, TrainConfig, Trainer, step_for
from recon.training.config import jsonable
from recon.training.diffusion import DiffusionStep
from recon.training.supervised import SelfSupervisedStep, SupervisedStep

#: the train_config keys checkpoints held before the loops were merged (VarNet / MoDL, diffusion)
OLD_SUPERVISED_KEYS = ["model", "model_options", "mask_type", "accelerations", "center_fractions", "epochs", "loss",
                       "batch_size", "lr", "seed", "max_train_slices", "max_val_slices"]
OLD_DIFFUSION_KEYS = ["model", "model_options", "epochs", "steps_per_epoch", "batch_size", "patch", "lr", "seed",
                      "p_mean", "p_std", "ema_decay", "val_sigmas", "max_train_slices", "max_val_slices"]


def test_defaults_follow_the_model_kind():
    sup, diff = TrainConfig(), TrainConfig(model="diffusion")
    assert (sup.kind, sup.batch_size, sup.lr) == ("supervised", 1, 1e-3)
    assert (diff.kind, diff.batch_size, diff.lr) == ("diffusion", 8, 5e-4)
    assert TrainConfig(model="diffusion", batch_size=2, lr=1e-3).batch_size == 2


def test_checkpoints_store_the_same_train_config_as_before():
    d = jsonable(TrainConfig(model="modl", accelerations=(4,), center_fractions=(0.08,)))
    assert list(d) == OLD_SUPERVISED_KEYS and d["accelerations"] == [4.0] and d["center_fractions"] == [0.08]
    d = jsonable(TrainConfig(model="diffusion", val_sigmas=(0.1, 0.5)))
    assert list(d) == OLD_DIFFUSION_KEYS and d["val_sigmas"] == [0.1, 0.5]
    assert d["batch_size"] == 8 and d["lr"] == 5e-4


@pytest.mark.parametrize("config, step", [
    (TrainConfig(model="varnet"), SupervisedStep), (TrainConfig(model="fastmri-varnet", loss="l1"), SupervisedStep),
    (TrainConfig(model="modl", loss="ssdu"), SelfSupervisedStep), (TrainConfig(model="diffusion", loss="ssdu"), DiffusionStep),
])
def test_each_config_gets_its_models_step(tmp_path, config, step):
    got = step_for(config, tmp_path / "x.pt", "cpu", progress=False, log=print)
    assert type(got) is step and isinstance(got, ModelStep)


def test_checks_are_the_models_own(tmp_path):
    from recon.errors import UsageError

    with pytest.raises(UsageError, match="--patch-size must be >= 8"):
        Trainer(tmp_path / "d.pt", TrainConfig(model="diffusion", patch=4), step_for)
    with pytest.raises(UsageError, match="--loss ssdu trains varnet and modl"):
        Trainer(tmp_path / "f.pt", TrainConfig(model="fastmri-varnet", loss="ssdu"), step_for)
    TrainConfig(model="diffusion", loss="ssdu", accelerations=(4,)).check()  # fields it does not read


def test_old_names_still_import_with_a_warning():
    with pytest.warns(DeprecationWarning, match="TrainConfig"):
        from recon.training.diffusion import DiffusionTrainConfig

        old = DiffusionTrainConfig(epochs=2, patch=16)
    assert old == TrainConfig(model="diffusion", epochs=2, patch=16)
    with pytest.warns(DeprecationWarning, match="recon.training.config.TrainConfig"):
        from recon.training.loop import TrainConfig as loop_config
    assert loop_config is TrainConfig
    with pytest.warns(DeprecationWarning, match="recon.training.supervised.describe_validation"):
        from recon.training.loop import describe_validation  # noqa: F401
    with pytest.warns(DeprecationWarning):
        from recon.training.loop import _jsonable
    assert _jsonable is jsonable
