"""Self-supervised training (``recon train --loss ssdu``, SSDU): splits, no reference ever read, validation
without references, a few steps lower the held-back k-space loss, reproducibility, CLI contracts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recon.errors import UsageError
from recon.io import open_raw
from recon.io.fastmri import write_fastmri_kspace
from recon.io.types import RawData
from recon.sampling import apply_mask, mask_from_options
from recon.simulate import load_colin27, write_dataset
from recon.solvers.learned.adapt import calibration_region, kspace_loss, sample_grid
from recon.training import SelfSupervisedTransform, SliceDataset, TrainConfig, train
from recon.training.supervised import evaluate_self_supervised, ssdu_predict

TINY = {"num_cascades": 2, "chans": 4, "num_pools": 2, "sens_chans": 2, "sens_pools": 2}


def _test_layout(src: Path, dst: Path, accel: int = 4) -> Path:
    """Copy every fully sampled file of ``src`` to ``dst`` in fastMRI's test layout: masked ``kspace`` +
    ``mask`` (one random column mask per file, seeded by its name), no reference."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.h5")):
        with open_raw(path) as f:
            raw = f.read_slices(slice(None))
        mask, _ = mask_from_options("random", raw.kspace.shape[-2:], [accel], [0.08], path.name)
        kspace, used = apply_mask(raw.kspace, mask, raw.header)
        write_fastmri_kspace(dst / path.name, RawData(kspace, raw.header, mask=used), reference=None)
    return dst


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny folders (Colin 27 slices 40 x 32, 4 coils): fully sampled ``train_full``/``val_full`` and their
    test-layout copies ``train``/``val`` (undersampled 4x, no reference)."""
    root = tmp_path_factory.mktemp("ssdu")
    vol = load_colin27([60, 62, 64, 66, 90, 92], shape=(40, 32))
    write_dataset(root / "train_full", vol[:4], slices_per_file=2, num_coils=4, snr=30, seed=0)
    write_dataset(root / "val_full", vol[4:], slices_per_file=2, num_coils=4, snr=30, seed=10)
    return {"train_full": root / "train_full", "val_full": root / "val_full",
            "train": _test_layout(root / "train_full", root / "train"),
            "val": _test_layout(root / "val_full", root / "val")}


def config(**changes) -> TrainConfig:
    base = dict(model="varnet", model_options=dict(TINY), epochs=1, loss="ssdu", lr=3e-3, seed=0,
                accelerations=(4,), center_fractions=(0.08,))
    base.update(changes)
    return TrainConfig(**base)


def test_train_splits_are_disjoint_cover_the_acquired_samples_and_keep_the_calibration_region(folders):
    ds = SliceDataset(folders["train"], SelfSupervisedTransform(seed=3, mode="train"))
    with h5py.File(sorted(folders["train"].glob("*.h5"))[0]) as f:
        file_mask = f["mask"][()]
    item = ds[0]
    acquired, dc, loss = (item[k][0].numpy() > 0 for k in ("mask", "dc", "loss"))
    np.testing.assert_array_equal(acquired[0], file_mask)  # the file's own acquisition
    assert not (dc & loss).any() and ((dc | loss) == acquired).all()
    calib = calibration_region(sample_grid(file_mask)) & acquired
    assert calib.sum() >= 2 and (dc & calib).sum() == calib.sum() and not (loss & calib).any()
    outside = int((acquired & ~calib).sum())
    assert int(loss.sum()) == round(0.4 * outside)
    assert item["target"] is None and item["maxval"] is None
    # k-space holds the acquired samples only
    k = item["kspace"].numpy()
    assert np.abs(k[..., ~acquired[0]]).max() == 0 and np.abs(k[..., acquired[0]]).min() > 0
    # re-drawn per epoch, reproducible per (seed, epoch, index)
    drawn = set()
    for epoch in range(1, 7):
        ds.set_epoch(epoch)
        again = ds[0]
        assert torch.equal(again["mask"], item["mask"])
        drawn.add(tuple(again["loss"].flatten().tolist()))
    assert len(drawn) > 1
    ds.set_epoch(0)
    assert torch.equal(ds[0]["loss"], item["loss"]) and torch.equal(ds[0]["dc"], item["dc"])


def test_fully_sampled_files_are_undersampled_once_per_example_and_the_reference_is_not_read(folders):
    ds = SliceDataset(folders["train_full"], SelfSupervisedTransform(accelerations=(4,), center_fractions=(0.08,),
                                                                     seed=0, mode="train"))
    first = ds[1]
    drawn = set()
    for epoch in range(1, 7):
        ds.set_epoch(epoch)
        later = ds[1]
        assert torch.equal(first["mask"], later["mask"])  # one acquisition per slice, as a real dataset
        drawn.add(tuple(later["loss"].flatten().tolist()))
    assert len(drawn) > 1
    assert first["target"] is None  # training items never carry the reference
    assert 3.0 < first["mask"].numel() / first["mask"].sum() < 5.0


def test_validation_split_is_fixed_and_held_out(folders):
    ds = SliceDataset(folders["val"], SelfSupervisedTransform(seed=0, mode="val"))
    a = ds[0]
    ds.set_epoch(3)
    b = ds[0]
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["dc"], b["dc"])
    acquired, dc, held = (a[k][0].numpy() > 0 for k in ("mask", "dc", "loss"))
    assert not (dc & held).any() and ((dc | held) == acquired).all()
    calib = calibration_region(acquired) & acquired
    assert round(0.2 * int((acquired & ~calib).sum())) == int(held.sum()) and not (held & calib).any()
    # the same validation split whatever the training seed (every model is compared on the same samples)
    other = SliceDataset(folders["val"], SelfSupervisedTransform(seed=9, mode="val"))[0]
    assert torch.equal(other["loss"], a["loss"])


def test_ssdu_training_without_references_lowers_the_held_back_loss_and_repeats(folders, tmp_path):
    history = train(tmp_path / "a.pt", folders["train"], folders["val"], config(epochs=2), progress=False,
                    log=lambda _: None)
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert h["val_psnr"] is None and h["val_ssim"] is None and h["val_nmse"] is None
        assert 0 < h["val_kspace_loss"] < 2 and np.isfinite(h["train_loss"])
    again = train(tmp_path / "b.pt", folders["train"], folders["val"], config(epochs=2), progress=False,
                  log=lambda _: None)
    assert [h["train_loss"] for h in again] == [h["train_loss"] for h in history]
    assert [h["val_kspace_loss"] for h in again] == [h["val_kspace_loss"] for h in history]


def test_a_few_ssdu_steps_lower_the_loss_on_a_fixed_example(folders):
    from recon.solvers.learned.registry import build_model

    torch.manual_seed(0)
    model = build_model({"model": "varnet", **TINY})
    item = SliceDataset(folders["train"], SelfSupervisedTransform(seed=0))[0]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    target = item["kspace"][None]
    losses = []
    for _ in range(8):
        opt.zero_grad()
        _, k = ssdu_predict(model, item, "cpu", "dc")
        loss = kspace_loss(k, target, item["loss"][None])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0]


def test_validation_metrics_only_where_references_exist(folders, tmp_path):
    history = train(tmp_path / "m.pt", folders["train"], folders["val_full"], config(model="modl",
                    model_options={"num_iterations": 2, "chans": 4, "num_pools": 2, "sens_chans": 2,
                                   "sens_pools": 2, "cg_iterations": 2}),
                    progress=False, log=lambda _: None)
    h = history[-1]
    assert 10 < h["val_psnr"] < 60 and 0 < h["val_ssim"] <= 1 and h["val_kspace_loss"] > 0
    # the metric is the network given all acquired samples, against the file's reference
    from recon.solvers.learned import load_model

    model = load_model(tmp_path / "m.pt")
    ds = SliceDataset(folders["val_full"], SelfSupervisedTransform(accelerations=(4,), center_fractions=(0.08,),
                                                                   mode="val"))
    again = evaluate_self_supervised(model, ds)
    assert again["files_with_reference"] == 1 and again["psnr"] == pytest.approx(h["val_psnr"], abs=1e-4)


def test_training_never_reads_the_training_reference(folders, tmp_path):
    """The same k-space with garbage references trains to exactly the same weights."""
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for path in sorted(folders["train_full"].glob("*.h5")):
        target = garbage / path.name
        target.write_bytes(path.read_bytes())
        with h5py.File(target, "r+") as f:
            f["reconstruction_rss"][...] = np.random.default_rng(0).random(f["reconstruction_rss"].shape)
    cfg = config()
    a = train(tmp_path / "a.pt", folders["train_full"], folders["val"], cfg, progress=False, log=lambda _: None)
    b = train(tmp_path / "b.pt", garbage, folders["val"], cfg, progress=False, log=lambda _: None)
    assert a[0]["train_loss"] == b[0]["train_loss"] and a[0]["val_kspace_loss"] == b[0]["val_kspace_loss"]
    wa, wb = torch.load(tmp_path / "a.pt")["state_dict"], torch.load(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_ssdu_is_refused_for_models_without_kspace_output():
    with pytest.raises(UsageError, match="ssdu"):
        config(model="fastmri-varnet", model_options={}).check()


def test_recon_train_loss_ssdu_cli(folders, tmp_path):
    out = tmp_path / "cli.pt"
    cmd = [sys.executable, "-m", "recon", "train", str(out), "--model", "varnet", "--loss", "ssdu",
           "--train", str(folders["train"]), "--val", str(folders["val"]), "--epochs", "1",
           "--cascades", "2", "--chans", "4", "--pools", "2", "--sens-chans", "2", "--accelerations", "4",
           "--center-fractions", "0.08", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    history = json.loads(r.stdout)
    assert history[0]["val_kspace_loss"] > 0 and history[0]["val_psnr"] is None
    assert "no validation references" in r.stderr and out.is_file()
    bad = subprocess.run([*cmd[:6], "diffusion", *cmd[7:]], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "ssdu" in bad.stderr and bad.stderr.count("\n") <= 2
