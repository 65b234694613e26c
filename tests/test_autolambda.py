"""``--lambda auto`` (issue 12 item 3): k-space cross-validation of the L1-wavelet / TV weight."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import recon
from recon.io.fastmri import write_fastmri_kspace
from recon.io.types import RawData
from recon.sampling import SamplingMask, apply_mask, mask_from_options
from recon.simulate import load_colin27, simulate_multicoil
from recon.solvers.autolambda import GRID, MIN_GAIN, anchored_search, holdout_split, ladder, sampled_points

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TWIX = Path(__file__).parent / "data" / "twix" / "gre.dat"


@pytest.fixture(scope="module")
def undersampled() -> RawData:
    images = load_colin27([90], shape=(128, 112))
    full = simulate_multicoil(images, num_coils=4, snr=30.0, seed=5).raw
    mask, _ = mask_from_options("random", full.kspace.shape, [4], [0.08], 7)
    kspace, used = apply_mask(full.kspace, mask, full.header)
    return RawData(kspace, full.header, used, full.reference)


def test_holdout_is_disjoint_covers_the_samples_and_spares_the_calibration_region(undersampled):
    k = torch.from_numpy(undersampled.kspace)
    sampled = sampled_points(k, SamplingMask.of_raw(undersampled).array)
    fit, held = holdout_split(sampled, fraction=0.2, seed=3)
    assert not (fit & held).any()
    np.testing.assert_array_equal(fit | held, sampled)
    cols = np.flatnonzero(held[0, 0])
    assert cols.size > 0 and (held[0] == held[0, :1]).all()  # whole phase-encode lines
    w = sampled.shape[-1]
    centre = np.flatnonzero(sampled[0, 0])
    calib = [c for c in range(w // 2 - 4, w // 2 + 4) if c in centre]
    assert not held[0, 0, calib].any()  # the fully sampled centre stays in the fit set
    again = holdout_split(sampled, fraction=0.2, seed=3)[1]
    np.testing.assert_array_equal(again, held)
    assert not np.array_equal(holdout_split(sampled, fraction=0.2, seed=4)[1], held)


def test_2d_masks_hold_out_single_samples(undersampled):
    images = load_colin27([90], shape=(64, 64))
    full = simulate_multicoil(images, num_coils=2, snr=30.0, seed=5).raw
    mask, _ = mask_from_options("poisson", full.kspace.shape, [4], [0.08], 1)
    sampled = np.broadcast_to(mask, (1, 64, 64)).copy()
    fit, held = holdout_split(sampled, fraction=0.2, seed=0)
    assert not (fit & held).any() and np.array_equal(fit | held, sampled)
    assert not (held == held[:, :1]).all()


@pytest.mark.parametrize("method", ["l1-wavelet", "tv"])
def test_auto_picks_a_grid_weight_records_the_curve_and_is_reproducible(undersampled, method):
    a = recon.reconstruct(undersampled, method, lam="auto")
    b = recon.reconstruct(undersampled, method, lam="auto")
    record = a.parameters["lambda_auto"]
    values = list(ladder(method, undersampled.mask))
    assert record["lambda"] in values and record["grid"] == values and record["search"] == "anchored"
    tried = [v for v in record["validation_error"] if v is not None]
    assert 2 <= record["solves"] == len(tried) <= len(values) and all(np.isfinite(tried))
    assert record["validation_error"][record["grid"].index(record["lambda"])] == min(tried)
    assert record["validation_error"][values.index(values[2])] is not None  # the default is always tried
    np.testing.assert_array_equal(a.image, b.image)
    chosen = recon.reconstruct(undersampled, method, lam=record["lambda"])
    np.testing.assert_array_equal(a.image, chosen.image)  # the final solve is the plain one at that weight


def test_anchored_search_keeps_the_default_unless_a_step_clearly_helps():
    values = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05]
    calls = []

    def curve(errors):
        def error(v):
            calls.append(v)
            return errors[values.index(v)]
        return error

    assert anchored_search(values, 2, curve([1.0] * 6)) == 0.005  # flat: the default
    assert sorted(set(calls)) == [0.005, 0.01]  # two solves: the default and the step up
    calls.clear()
    assert anchored_search(values, 2, curve([0.5, 0.6, 1, 0.99, 1.0, 1.0])) == 0.005  # flat above: no look down
    assert 0.002 not in calls
    small = 1 - MIN_GAIN / 2
    assert anchored_search(values, 2, curve([1, 1, 1, small, small ** 2, small ** 3])) == 0.005  # gains too small
    assert anchored_search(values, 2, curve([1, 1, 1, 0.9, 0.8, 0.7])) == 0.05  # walks to the top
    assert anchored_search(values, 2, curve([0.5, 0.6, 1, 1.1, 1.2, 1.3])) == 0.001  # and to the bottom
    assert anchored_search(values, 2, curve([1, 1, 1, 0.9, 0.95, 0.7])) == 0.01  # stops at the first rise
    calls.clear()
    anchored_search(values, 2, curve([1, 1, 1, 0.9, 0.8, 0.85]))
    assert 0.001 not in calls  # never looks the other way once it moved


def test_explicit_grid_is_searched_exhaustively(undersampled):
    from recon.solvers.autolambda import select_lambda

    res = recon.reconstruct(undersampled, "l1-wavelet")
    mask = np.asarray(undersampled.mask).reshape(1, 1, 1, -1)
    lam, record = select_lambda(torch.from_numpy(undersampled.kspace), torch.from_numpy(res.maps), mask,
                                "l1-wavelet", grid=[0.02, 0.001, 0.005])
    assert record["search"] == "grid" and record["grid"] == [0.001, 0.005, 0.02] and record["solves"] == 3
    assert lam == record["grid"][int(np.argmin(record["validation_error"]))]


def test_reconstruct_passes_an_explicit_grid_and_holdout_seed(undersampled):
    grid = [0.001, 0.005, 0.02]
    a = recon.reconstruct(undersampled, "l1-wavelet", lam="auto", lambda_grid=grid, holdout_seed=1)
    record = a.parameters["lambda_auto"]
    assert record["search"] == "grid" and record["grid"] == grid and record["holdout_seed"] == 1
    assert record["solves"] == 3 and None not in record["validation_error"]
    b = recon.reconstruct(undersampled, "l1-wavelet", lam="auto", lambda_grid=grid, holdout_seed=2)
    assert b.parameters["lambda_auto"]["validation_error"] != record["validation_error"]  # another hold-out set
    with pytest.raises(recon.errors.UsageError, match="needs lam='auto'"):
        recon.reconstruct(undersampled, "l1-wavelet", lam=0.01, lambda_grid=grid)


def test_auto_is_refused_for_methods_without_a_weight_to_tune(undersampled):
    with pytest.raises(recon.errors.UsageError, match="l1-wavelet and tv"):
        recon.reconstruct(undersampled, "sense", lam="auto")
    with pytest.raises(recon.errors.UsageError, match="number >= 0 or 'auto'"):
        recon.reconstruct(undersampled, "l1-wavelet", lam="banana")


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("source", ["fastmri", "twix"])
def test_cli_lambda_auto_writes_the_choice(tmp_path, source):
    if source == "fastmri":
        images = load_colin27([90], shape=(96, 80))
        path = write_fastmri_kspace(tmp_path / "in.h5", simulate_multicoil(images, num_coils=3, seed=1).raw)
    else:
        path = TWIX
    out = tmp_path / "out.h5"
    r = _run("run", path, out, "--method", "l1-wavelet", "--lambda", "auto", "--accel", "4", "--threads", "1")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert f["lambda_auto"].shape == (f["reconstruction"].shape[0],)
        assert set(f["lambda_auto"][()]) <= set(np.float32(GRID))
        assert f["lambda_validation_error"].shape == (f["reconstruction"].shape[0], len(GRID))
        assert np.isfinite(f["lambda_validation_error"][:, 2]).all()  # the default weight, always tried
        assert '"lam": "auto"' in f.attrs["parameters"]


@pytest.mark.parametrize("args, message", [
    (["--method", "l1-wavelet", "--lambda", "banana"], "expected a number or 'auto'"),
    (["--method", "sense", "--lambda", "auto"], "l1-wavelet and tv"),
])
def test_cli_bad_lambda_is_a_usage_error(tmp_path, args, message):
    out = tmp_path / "out.h5"
    r = _run("run", TWIX, out, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_the_mask_may_be_a_sampling_mask_or_a_tensor(undersampled):
    """select_lambda takes the mask as SamplingMask, numpy or torch (issue 13: one mask type), same choice."""
    from recon.solvers.autolambda import select_lambda

    res = recon.reconstruct(undersampled, "l1-wavelet", iterations=5)
    k, maps = torch.from_numpy(undersampled.kspace), torch.from_numpy(res.maps)
    column = np.asarray(undersampled.mask, dtype=bool)
    runs = [select_lambda(k, maps, m, "l1-wavelet", grid=[0.001, 0.01], iterations=5)[1]
            for m in (column, SamplingMask(column), torch.from_numpy(column))]
    assert runs[0]["validation_error"] == runs[1]["validation_error"] == runs[2]["validation_error"]
    np.testing.assert_array_equal(sampled_points(k, SamplingMask(column)), sampled_points(k, column.reshape(1, 1, 1, -1)))


def test_curve_replay_scores_the_rules_on_a_known_curve(tmp_path):
    """``benchmarks/autolambda_curves.py --simulate``: on a curve whose PSNR and validation error both favour 4x
    the default, the shipped search walks there (4 fit-set solves + the final one) and the default misses."""
    row = {"case": "toy", "accel": 4, "method": "l1-wavelet", "grid": [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05],
           "psnr": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 24.0],
           "val": {"0": [1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.65], "1": [1.0, 0.95, 0.9, 0.8, 0.79, 0.78, 0.9]}}
    curves = tmp_path / "curves.json"
    curves.write_text(json.dumps([row]))
    script = Path(__file__).parents[1] / "benchmarks" / "autolambda_curves.py"
    out = subprocess.run([sys.executable, str(script), "--simulate", str(curves), "--gains", "0.03"],
                         capture_output=True, text=True, check=True).stdout
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines() if "within" in line}
    assert "within 0.3 dB   0/2" in lines["default (no search)"]  # 23 dB, 2 below the best
    # seed 0 walks up to 4x (25 dB); seed 1's steps above the default gain < 3 %, so it keeps the default
    assert "within 0.3 dB   1/2" in lines["anchored 3%, 1 fold(s)"] and "max  5" in lines["anchored 3%, 1 fold(s)"]
    assert "within 0.3 dB   2/2" in lines["argmin, 1 fold(s)"]  # both curves' minima are at 4x
    assert "toy 4x -> 1" in lines["anchored 3%, 1 fold(s)"]
