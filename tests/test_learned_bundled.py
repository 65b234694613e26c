"""The bundled weights: they load with no network, reconstruct the bundled sample (held-out Colin 27 slices)
above the PSNR/SSIM measured when they were made (asserted a little below), and ``recon run/batch --method
varnet|modl`` work end to end (every input format: tests/test_learned_formats.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from recon.data import sample_path
from recon.io import read_raw
from recon.metrics import volume_metrics
from recon.sampling import apply_mask, mask_from_options
from recon.solvers.learned import load_model
from recon.solvers.zero_filled import rss_reconstruction
from recon.weights import BUNDLED, bundled_weights

#: (model, acceleration) -> (PSNR dB, SSIM) floors; measured values are in MODEL_CARD.md
FLOORS = {("varnet", 4): (27.2, 0.85), ("varnet", 8): (22.7, 0.72),
          ("modl", 4): (26.2, 0.81)}


@pytest.fixture(scope="module")
def sample():
    return read_raw(sample_path())


def undersample(raw, accel: int):
    cf = {4: 0.08, 8: 0.04}[accel]
    mask, _ = mask_from_options("random", raw.kspace.shape, [accel], [cf], sample_path().name)
    return apply_mask(raw.kspace, mask, raw.header)


@pytest.mark.parametrize("name,accel", sorted(FLOORS))
def test_bundled_weights_reconstruct_the_sample(sample, name, accel):
    path = bundled_weights(name)
    assert path.stat().st_size < 8_000_000  # "a few MB"
    model = load_model(path, expect=name)
    kspace, used = undersample(sample, accel)
    with torch.no_grad():
        rec = np.concatenate([model(torch.from_numpy(kspace[s:s + 1]), torch.from_numpy(used)).numpy()
                              for s in range(kspace.shape[0])])
    maxval = float(sample.header.attrs["max"])
    m = volume_metrics(sample.reference, rec, maxval=maxval)
    zf = volume_metrics(sample.reference, rss_reconstruction(kspace, used), maxval=maxval)
    psnr_floor, ssim_floor = FLOORS[(name, accel)]
    assert m["psnr"] > psnr_floor and m["ssim"] > ssim_floor, m
    assert m["psnr"] > zf["psnr"] + 3


def test_bundled_varnet_with_espirit_maps(sample):
    """Given ESPIRiT maps (their phase relative to a reference coil) reconstruct as well as the learned ones:
    26.6 vs 26.9 dB on slice 1 at 4x (15.4 dB before given maps were phase-aligned)."""
    from recon.solvers.reconstruct import estimate_maps

    model = load_model(bundled_weights("varnet"), expect="varnet")
    kspace, used = undersample(sample, 4)
    k = torch.from_numpy(kspace[1:2])
    maps = estimate_maps(k, used)
    with torch.no_grad():
        own = model(k, torch.from_numpy(used)).numpy()
        given = model(k, torch.from_numpy(used), maps=maps).numpy()
    maxval = float(sample.header.attrs["max"])
    psnr_own = volume_metrics(sample.reference[1:2], own, maxval=maxval)["psnr"]
    psnr_given = volume_metrics(sample.reference[1:2], given, maxval=maxval)["psnr"]
    assert psnr_given > psnr_own - 1.0 and psnr_given > 25.0, (psnr_given, psnr_own)


def test_every_bundled_model_has_a_card():
    from importlib import resources

    card = resources.files("recon.weights").joinpath("MODEL_CARD.md").read_text()
    for name, fname in BUNDLED.items():
        assert fname in card
        blob = torch.load(bundled_weights(name), weights_only=True)
        assert blob["config"]["model"] == name and "optimizer" not in blob


@pytest.mark.parametrize("method", ["varnet", "modl"])
def test_recon_run_method_learned(tmp_path, method):
    out = tmp_path / f"{method}.h5"
    r = subprocess.run([sys.executable, "-m", "recon", "run", str(sample_path()), str(out), "--method", method,
                        "--accel", "4", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["method"] == method and summary["shape"] == [3, 224, 192]
    with h5py.File(out) as f:
        rec = f["reconstruction"][()]
        assert f.attrs["method"] == method
    ref = read_raw(sample_path()).reference
    assert volume_metrics(ref, rec)["psnr"] > FLOORS[("varnet", 4)][0] - 6


def test_recon_run_weights_option(tmp_path):
    torch.manual_seed(0)
    from recon.solvers.learned import VarNet

    model = VarNet(num_cascades=1, chans=4, num_pools=2, sens_chans=2, sens_pools=2)
    weights = tmp_path / "mine.pt"
    torch.save({"config": model.config, "state_dict": model.state_dict()}, weights)
    out = tmp_path / "mine.h5"
    base = [sys.executable, "-m", "recon", "run", str(sample_path())]
    r = subprocess.run(base + [str(out), "--method", "varnet", "--accel", "8", "--weights", str(weights)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(h5py.File(out).attrs["parameters"])["weights"] == str(weights)
    r = subprocess.run(base + [str(tmp_path / "x.h5"), "--method", "modl", "--weights", str(weights)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "weights are for model 'varnet', not 'modl'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.h5").exists()
    r = subprocess.run(base + [str(tmp_path / "y.h5"), "--method", "varnet", "--weights", str(tmp_path / "no.pt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "weights file does not exist" in r.stderr


# recon run --method varnet|modl on every input format and recon batch --method varnet over one file of each:
# tests/test_learned_formats.py
