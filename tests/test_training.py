"""Training: the public SliceDataset, masks drawn per example, losses, one step lowers the loss, checkpoints,
exact resume, seeded reproducibility, ``recon train`` on the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.errors import InputError, OutputError, UsageError
from recon.simulate import load_colin27, write_dataset
from recon.solvers.learned import load_model
from recon.training import SliceDataset, TrainConfig, UndersampleTransform, get_loss, predict, train

TINY = {"num_cascades": 2, "chans": 4, "num_pools": 2, "sens_chans": 2, "sens_pools": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny fastMRI-layout train/val folders: 4 + 2 Colin 27 slices cropped to 40 x 32, 4 coils."""
    root = tmp_path_factory.mktemp("data")
    vol = load_colin27([60, 62, 64, 66, 90, 92], shape=(40, 32))
    write_dataset(root / "train", vol[:4], slices_per_file=2, num_coils=4, snr=30, seed=0)
    write_dataset(root / "val", vol[4:], slices_per_file=2, num_coils=4, snr=30, seed=10)
    return root / "train", root / "val"


def config(**changes) -> TrainConfig:
    base = dict(model="varnet", model_options=dict(TINY), epochs=1, loss="ssim", lr=3e-3, seed=0,
                accelerations=(4, 8), center_fractions=(0.08, 0.04))
    base.update(changes)
    return TrainConfig(**base)


def test_slice_dataset_lists_every_slice_lazily(folders):
    train_dir, _ = folders
    ds = SliceDataset(train_dir)
    assert len(ds) == 4 and [e.slice for e in ds.examples] == [0, 1, 0, 1]
    raw = ds[3]
    assert raw.kspace.shape == (1, 4, 40, 32) and raw.reference.shape == (1, 40, 32)
    assert ds.examples[3].path.name == "sim_001.h5"
    with pytest.raises(InputError, match="does not exist"):
        SliceDataset(train_dir / "nope")
    with pytest.raises(InputError, match="no raw files"):
        SliceDataset(_empty(train_dir.parent))


def _empty(root: Path) -> Path:
    p = root / "empty"
    p.mkdir(exist_ok=True)
    return p


def test_masks_drawn_per_example_reproducibly(folders):
    train_dir, val_dir = folders
    ds = SliceDataset(train_dir, UndersampleTransform(seed=5))
    a, b = ds[0], ds[1]
    assert a["kspace"].shape == (4, 40, 32) and a["mask"].shape == (1, 1, 32) and a["target"].shape == (40, 32)
    assert not torch.equal(a["mask"], b["mask"])  # another example, another mask
    again = SliceDataset(train_dir, UndersampleTransform(seed=5))[0]
    assert torch.equal(a["mask"], again["mask"]) and torch.equal(a["kspace"], again["kspace"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["mask"], a["mask"])  # a new mask every epoch
    # unsampled columns are zero; the acceleration drawn is 4 or 8
    cols = a["mask"].flatten() > 0
    assert float(a["kspace"][..., ~cols].abs().max()) == 0 and a["acceleration"] in (4.0, 8.0)
    val = SliceDataset(val_dir, UndersampleTransform(seed=5, mode="val"))
    val.set_epoch(3)
    assert torch.equal(val[0]["mask"], val[1]["mask"])  # same file, same mask (seeded by the file name)
    assert a["maxval"] == pytest.approx(float(SliceDataset(train_dir).read(0).header.attrs["max"]))


def test_losses():
    t = torch.rand(2, 16, 16) + 0.5
    ssim, l1 = get_loss("ssim"), get_loss("l1")
    m = torch.tensor([1.5, 1.5])
    assert float(ssim(t, t, m)) == pytest.approx(0.0, abs=1e-6)
    assert float(l1(t + 0.15, t, m)) == pytest.approx(0.1, rel=1e-5)
    assert float(ssim(t + 0.2 * torch.rand(2, 16, 16), t, m)) > 0.01
    with pytest.raises(UsageError, match="unknown loss 'l2'"):
        get_loss("l2")


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(folders):
    from recon.solvers.learned import build_model

    train_dir, _ = folders
    ds = SliceDataset(train_dir, UndersampleTransform(seed=0))
    items = [ds[i] for i in range(2)]
    torch.manual_seed(0)
    model = build_model({"model": "varnet", **TINY})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = get_loss("ssim")

    def batch_loss() -> torch.Tensor:
        return sum(loss_fn(predict(model, it, "cpu"), it["target"][None], torch.tensor([it["maxval"]]))
                   for it in items) / len(items)

    before = batch_loss()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = batch_loss()
    assert float(after) < float(before.detach()) - 1e-4


def test_checkpoint_resume_reproduces_the_next_step_loss(folders, tmp_path):
    train_dir, val_dir = folders
    full: list[tuple[int, int, float]] = []
    hist = train(tmp_path / "full.pt", train_dir, val_dir, config(epochs=2), progress=False, log=lambda m: None,
                 on_step=lambda e, s, loss: full.append((e, s, loss)))
    assert [h["epoch"] for h in hist] == [1, 2] and all(np.isfinite(h["val_psnr"]) for h in hist)
    train(tmp_path / "part.pt", train_dir, val_dir, config(epochs=1), progress=False, log=lambda m: None)
    ckpt = torch.load(tmp_path / "part.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and {"optimizer", "rng", "state_dict", "config", "history"} <= set(ckpt)
    resumed: list[tuple[int, int, float]] = []
    hist2 = train(tmp_path / "part.pt", train_dir, val_dir, config(epochs=2), resume=True, progress=False,
                  log=lambda m: None, on_step=lambda e, s, loss: resumed.append((e, s, loss)))
    assert resumed[0][:2] == (1, 0)
    assert resumed == [r for r in full if r[0] == 1]  # every step of epoch 2 identical, the first included
    assert hist2[-1]["val_psnr"] == pytest.approx(hist[-1]["val_psnr"], abs=1e-9)
    # a fixed seed reproduces the run; another seed does not
    again: list[tuple[int, int, float]] = []
    train(tmp_path / "again.pt", train_dir, val_dir, config(epochs=1), progress=False, log=lambda m: None,
          on_step=lambda e, s, loss: again.append((e, s, loss)))
    assert again == [r for r in full if r[0] == 0]
    other: list[tuple[int, int, float]] = []
    train(tmp_path / "other.pt", train_dir, val_dir, config(epochs=1, seed=1), progress=False,
          log=lambda m: None, on_step=lambda e, s, loss: other.append((e, s, loss)))
    assert other[0][2] != full[0][2]
    # the checkpoint is a weights file for recon run --weights
    assert load_model(tmp_path / "full.pt", expect="varnet").config["num_cascades"] == 2
    with pytest.raises(OutputError, match="exists"):
        train(tmp_path / "full.pt", train_dir, val_dir, config(), progress=False, log=lambda m: None)
    # resuming from a checkpoint of another kind of model is refused, naming both
    with pytest.raises(UsageError, match="'varnet' checkpoint, not a diffusion one"):
        train(tmp_path / "full.pt", train_dir, val_dir, TrainConfig(model="diffusion", epochs=2), resume=True,
              progress=False, log=lambda m: None)


def test_modl_trains_with_l1(folders, tmp_path):
    train_dir, val_dir = folders
    cfg = config(model="modl", loss="l1", model_options={"num_iterations": 2, "chans": 4, "num_pools": 2,
                                                          "cg_iterations": 2, "sens_chans": 2, "sens_pools": 2})
    hist = train(tmp_path / "m.pt", train_dir, val_dir, cfg, progress=False, log=lambda m: None)
    assert hist[0]["train_loss"] < 0.5 and 0 < hist[0]["val_ssim"] <= 1


def test_recon_train_cli(folders, tmp_path):
    train_dir, val_dir = folders
    out = tmp_path / "cli.pt"
    args = [sys.executable, "-m", "recon", "train", str(out), "--model", "varnet", "--train", str(train_dir),
            "--val", str(val_dir), "--epochs", "1", "--cascades", "1", "--chans", "4", "--pools", "2",
            "--sens-chans", "2", "--accelerations", "4", "--center-fractions", "0.08"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "val PSNR" in r.stdout and "epoch 1/1" in r.stderr and out.is_file()
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)  # exists, no --resume
    assert r.returncode == 2 and "exists" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(args[:8] + [str(tmp_path / "missing")] + args[9:] + ["--overwrite"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(args + ["--resume", "--epochs", "2", "--lr", "1e-4", "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    history = json.loads(r.stdout)
    assert "resuming" in r.stderr and [h["epoch"] for h in history] == [1, 2]
    assert [h["lr"] for h in history] == [1e-3, 1e-4]  # a lower rate from the resumed epoch on
