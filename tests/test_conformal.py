"""Calibrated intervals (recon.metrics.conformal, recon calibrate, --calibration) and truth-based
hallucination maps (recon.metrics.hallucination); issue 14."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.stats import norm

from recon.metrics import conformal as cf
from recon.operators import fft2c

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the math, on synthetic data with a known error distribution --------------------------------------------

def _synthetic(n: int, rng: np.random.Generator, size: int = 24):
    """``n`` slices: truth = mean + e with e ~ N(0, s^2) per pixel, s varying over pixels and slices; the
    heuristic spread is 0.5 s (mis-scaled by 2: the calibration must find lam = 2 z). Returns scores and the
    per-slice (mean, truth, spread, object)."""
    out = []
    for _ in range(n):
        mean = 1 + rng.random((size, size))
        s = 0.05 * (0.5 + rng.random((size, size))) * rng.uniform(0.7, 1.3)
        truth = mean + s * rng.standard_normal((size, size))
        obj = np.ones((size, size), bool)
        out.append((mean, truth, 0.5 * s, obj))
    return [cf.slice_scores(m, t, lo, lo, o) for m, t, lo, o in out], out


def test_crc_reaches_target_miss_rate_on_fresh_draws() -> None:
    rng = np.random.default_rng(0)
    scores, _ = _synthetic(200, rng)
    fit = cf.fit_scale(scores, alpha=0.1, guarantee="crc")
    # the oracle: |e| / (0.5 s) > lam with probability 2 (1 - Phi(lam / 2)) = 0.1  ->  lam = 2 z_0.95 = 3.29
    oracle = 2 * norm.ppf(0.95)
    assert abs(fit.scale - oracle) < 0.1 * oracle
    assert fit.calibration_risk <= (0.1 * 201 - 1) / 200 + 1e-12  # the CRC inequality itself
    fresh, data = _synthetic(2000, np.random.default_rng(1))
    miss = np.mean([cf.slice_loss(s, fit.scale) for s in fresh])
    assert 0.1 - 2 / 201 - 0.01 <= miss <= 0.1 + 0.005, miss  # E[miss] in [alpha - 2B/(n+1), alpha]
    m, t, lo, o = data[0]
    lower, upper = cf.intervals(m, lo, lo, fit.scale)
    assert cf.miss_fraction(m, t, lower, upper, o) == pytest.approx(cf.slice_loss(fresh[0], fit.scale))


def test_rcps_controls_risk_with_high_probability() -> None:
    rng = np.random.default_rng(2)
    scores, _ = _synthetic(300, rng)
    fit = cf.fit_scale(scores, alpha=0.1, delta=0.1, guarantee="rcps")
    assert fit.ucb is not None and fit.ucb <= 0.1 + 1e-9
    fresh, _ = _synthetic(1000, np.random.default_rng(3))
    miss = np.mean([cf.slice_loss(s, fit.scale) for s in fresh])
    assert miss <= 0.1 and fit.scale >= cf.fit_scale(scores, alpha=0.1, guarantee="crc").scale


def test_hoeffding_bentkus_known_values_and_too_few_slices() -> None:
    # zero empirical risk: Hoeffding gives (1 - alpha)^n, Bentkus e (1 - alpha)^n
    assert cf.hb_pvalue(0.0, 20, 0.1) == pytest.approx(0.9 ** 20)
    assert cf.rcps_min_slices(0.1, 0.1) == 22 and 0.9 ** 22 < 0.1 < 0.9 ** 21
    ucb = cf.hb_ucb(0.05, 100, 0.1)
    assert cf.hb_pvalue(0.05, 100, ucb) == pytest.approx(0.1, abs=1e-6) and 0.05 < ucb < 0.15
    scores, _ = _synthetic(15, np.random.default_rng(4))
    with pytest.raises(ValueError, match="needs more calibration slices"):
        cf.fit_scale(scores, alpha=0.1, delta=0.1, guarantee="rcps")
    with pytest.raises(ValueError, match="at least 10"):
        cf.fit_scale(scores[:5], alpha=0.1, guarantee="crc")


def test_scores_and_losses_are_exact() -> None:
    mean = np.array([[1.0, 1.0, 1.0, 1.0]])
    truth = np.array([[0.5, 1.2, 1.0, 3.0]])
    lo = np.array([[0.25, 1.0, 0.0, 0.0]])
    hi = np.array([[1.0, 0.1, 0.0, 1.0]])
    r = cf.interval_scores(mean, truth, lo, hi)
    assert np.allclose(r, [[2.0, 2.0, 0.0, 2.0]])
    s = cf.slice_scores(mean, truth, lo, hi, np.ones_like(mean, bool))
    assert cf.slice_loss(s, 1.999) == 0.75 and cf.slice_loss(s, 2.0) == 0.0
    assert math.isinf(cf.interval_scores(np.ones(1), np.zeros(1), np.zeros(1), np.ones(1))[0])


def test_calibrated_outputs_bracket_the_reconstruction() -> None:
    from recon.solvers.uncertainty.calibration import calibrated_outputs

    rng = np.random.default_rng(5)
    mean = rng.random((3, 17, 13)).astype(np.float32) * 1e3
    std = rng.random((3, 17, 13)).astype(np.float32)
    std[0, :4] = 0
    for scale in (0.0, 1e-8, 1.7, 40.0):
        out = calibrated_outputs(mean, std, 0.0, scale)
        assert np.all(out["lower"] <= mean) and np.all(mean <= out["upper"])
        assert out["lower"].dtype == out["upper"].dtype == out["uncertainty"].dtype == np.float32
        assert np.allclose(out["uncertainty"], scale * std, rtol=1e-6)


# --- truth-based hallucination: the null-space projection is exact ----------------------------------------

def _sense_problem(coils: int, h: int = 32, w: int = 40, accel: int = 5):
    from recon.solvers.diffusion.samplers import SenseData

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(coils):
        cx, cy = math.cos(2 * math.pi * c / coils), math.sin(2 * math.pi * c / coils)
        maps.append((torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)) + 0.1) * torch.exp(1j * (0.3 * cx * xx)))
    s = torch.stack(maps).to(torch.complex64)
    s = s / (s.abs() ** 2).sum(0, keepdim=True).sqrt()
    m = np.random.default_rng(1).random(w) < 1 / accel
    m[w // 2 - 2: w // 2 + 2] = True
    mask = torch.from_numpy(m.astype(np.float32))
    x = torch.randn(h, w, generator=g, dtype=torch.complex64)
    return SenseData.build(fft2c(s * x), s, mask), x, g


@pytest.mark.parametrize("coils", [1, 2])
def test_null_space_projection_is_idempotent_and_unmeasured(coils: int) -> None:
    from recon.metrics.hallucination import null_space_error

    data, x, g = _sense_problem(coils)
    rec = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.complex64)
    h = null_space_error(data, rec, x)
    h2 = null_space_error(data, h, torch.zeros_like(h))
    assert torch.linalg.norm(h2 - h) <= 1e-4 * torch.linalg.norm(h)  # P_null P_null = P_null
    measured = data.op.forward(h)  # the measured part of the hallucination is zero
    assert torch.linalg.norm(measured) <= 1e-4 * torch.linalg.norm(data.op.forward(rec - x))
    assert torch.linalg.norm(h) > 0.1 * torch.linalg.norm(rec - x)  # and it is not trivially zero


def test_roc_auc_matches_the_pairwise_definition() -> None:
    from recon.metrics.hallucination import roc_auc

    rng = np.random.default_rng(6)
    s = rng.integers(0, 5, 60).astype(float)
    y = rng.random(60) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[y] for b in s[~y]]
    assert roc_auc(s, y) == pytest.approx(np.mean(pairs))
    assert roc_auc(np.arange(10), np.arange(10) >= 5) == 1.0



def test_local_detector_ceiling_is_one_for_smooth_and_near_chance_for_pixel_noise() -> None:
    from recon.metrics.hallucination import local_detector_ceiling

    obj = np.ones((40, 40), bool)
    halves = np.zeros((40, 40))
    halves[:, :20] = 1.0  # |h| constant over large regions: a 5 x 5 oracle separates them exactly
    assert local_detector_ceiling(halves, obj, 1.0, 0.5, window=5) == 1.0
    rng = np.random.default_rng(3)
    noise = rng.exponential(size=(40, 40))  # |h| varying independently from pixel to pixel
    level = float(np.median(noise)) / 0.5  # half of the pixels positive, as at 8x
    assert local_detector_ceiling(noise, obj, level, 0.5, window=1) == 1.0  # no smoothing: |h| itself
    c5 = local_detector_ceiling(noise, obj, level, 0.5, window=5)
    assert 0.5 < c5 < 0.7  # the pixel's own share of a 25-pixel window: little above chance

# --- the command line ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibration(cal_folder: Path, tiny_prior_weights: Path, tmp_path_factory) -> Path:
    from recon.app.cli import main

    out = tmp_path_factory.mktemp("c") / "cal.json"
    rc = main(["calibrate", str(cal_folder), str(out), "--method", "diffusion", "--alpha", "0.2",
               "--accel", "4", "--center-fraction", "0.16", "--samples", "2", "--steps", "2", "--weights", str(tiny_prior_weights), "--threads", "1"])
    assert rc == 0
    return out


RUN = ["--method", "diffusion", "--samples", "2", "--steps", "2", "--accel", "4", "--center-fraction", "0.16",
       "--threads", "1"]


def test_calibrate_writes_the_fit_and_run_writes_intervals(calibration: Path, cal_folder: Path,
                                                           tiny_prior_weights: Path, tmp_path: Path) -> None:
    from recon.app.cli import main
    from recon.solvers.uncertainty.calibration import weights_identity

    cal = json.loads(calibration.read_text())
    assert cal["method"] == "diffusion" and cal["slices"] == 12 and cal["alpha"] == 0.2
    assert cal["options"] == {"samples": 2, "steps": 2, "sampler": "dds", "start_sigma": 2.0}
    assert cal["weights"]["sha256"] == weights_identity("diffusion", tiny_prior_weights)["sha256"]
    assert cal["undersampling"]["accelerations"] == [4.0] and cal["scale"] > 0
    assert cal["calibration_risk"] <= (0.2 * 13 - 1) / 12
    out = tmp_path / "rec.h5"
    src = min(cal_folder.glob("*.h5"))
    assert main(["run", str(src), str(out), *RUN, "--weights", str(tiny_prior_weights), "--calibration",
                 str(calibration)]) == 0
    with h5py.File(out) as f:
        rec, lower, upper, unc = (f[k][()] for k in ("reconstruction", "lower", "upper", "uncertainty"))
        std, noise = f["sample_std"][()], f["noise_level"][()]
    assert lower.shape == upper.shape == rec.shape and lower.dtype == upper.dtype == np.float32
    assert np.all(lower <= rec) and np.all(rec <= upper)
    assert np.allclose(unc, cal["scale"] * (std + noise[:, None, None]), rtol=1e-5)
    assert np.allclose((upper - lower) / 2, unc, rtol=1e-4, atol=1e-6 * rec.max())


@pytest.mark.parametrize("change", ["weights", "method", "accel", "samples", "garbage"])
def test_calibration_for_something_else_is_refused(change: str, calibration: Path, cal_folder: Path,
                                                   tiny_prior_weights: Path, tmp_path: Path, capsys) -> None:
    from recon.app.cli import main

    src = min(cal_folder.glob("*.h5"))
    args = ["run", str(src), str(tmp_path / "rec.h5"), *RUN, "--weights", str(tiny_prior_weights),
            "--calibration", str(calibration)]
    if change == "weights":
        args.remove("--weights"), args.remove(str(tiny_prior_weights))  # the bundled prior instead
    elif change == "method":
        args[args.index("diffusion")] = "sense"
        for k in ("--samples", "--steps"):
            i = args.index(k)
            del args[i:i + 2]
    elif change == "accel":
        args[args.index("--accel") + 1] = "8"
    elif change == "samples":
        args[args.index("--samples") + 1] = "3"
    else:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"format": "something"}))
        args[-1] = str(bad)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("calibration" in err) and "Traceback" not in err
    assert not (tmp_path / "rec.h5").exists()


def test_measured_acceleration_is_checked_per_slice(calibration: Path, tiny_prior_weights: Path) -> None:
    from recon.errors import UsageError
    from recon.solvers.uncertainty.calibration import check_calibration, load_calibration

    cal = load_calibration(calibration)
    lo, hi = cal["measured_acceleration"]["min"], cal["measured_acceleration"]["max"]
    check_calibration(cal, calibration, method="diffusion", weights=tiny_prior_weights, acceleration=0.5 * (lo + hi))
    for accel in (2 * hi, 0.5 * lo):
        with pytest.raises(UsageError, match="sampled at"):
            check_calibration(cal, calibration, method="diffusion", weights=tiny_prior_weights, acceleration=accel)


def test_report_shows_intervals_and_miss_rate(calibration: Path, cal_folder: Path, tiny_prior_weights: Path,
                                              tmp_path: Path) -> None:
    from recon.app.cli import main
    from recon.app.report.collect import collect_run
    from recon.app.report.intervals import interval_rows
    from recon.solvers.diffusion.uncertainty import object_mask

    src = min(cal_folder.glob("*.h5"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    out = run_dir / src.name
    assert main(["run", str(src), str(out), *RUN, "--weights", str(tiny_prior_weights), "--calibration",
                 str(calibration)]) == 0
    assert main(["report", str(run_dir), "--tiers", "pixel", "--target-dir", str(cal_folder)]) == 0
    page = (run_dir / "report.html").read_text()
    assert "Calibrated intervals" in page and "lower map" in page and "upper map" in page
    rows = interval_rows(collect_run(run_dir, cal_folder), log=print)
    assert len(rows) == 1 and rows[0].alpha == pytest.approx(0.2)
    with h5py.File(out) as f, h5py.File(src) as g:
        lower, upper, ref = f["lower"][()], f["upper"][()], g["reconstruction_rss"][()]
    objs = np.stack([object_mask(r) for r in ref])
    miss = ((ref < lower) | (ref > upper))[objs].mean()
    assert rows[0].miss == pytest.approx(miss, abs=1e-9)
    assert f"{rows[0].miss:.4f}" in page


def test_the_old_calibration_import_path_is_the_same_module():
    import recon.solvers.diffusion.calibration as old
    from recon.solvers.uncertainty import calibration as new

    assert old is new and old.CALIBRATABLE == new.CALIBRATABLE
