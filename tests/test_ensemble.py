"""k-space split ensembles of the learned methods (``--ensemble K``) and their calibrated intervals (issue 14,
item 4): the reconstruction is unchanged, the members keep the calibration region, same seed same result,
``recon calibrate --method varnet --ensemble K`` then ``recon run --calibration`` brackets the reconstruction,
and calibrations for something else are refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNDER = ["--accel", "4", "--center-fraction", "0.16", "--threads", "1"]


@pytest.fixture(scope="module")
def calibration(cal_folder: Path, tmp_path_factory) -> Path:
    from recon.app.cli import main

    out = tmp_path_factory.mktemp("c") / "cal.json"
    assert main(["calibrate", str(cal_folder), str(out), "--method", "varnet", "--ensemble", "3", "--alpha", "0.2",
                 *UNDER]) == 0
    return out


def _read(path: Path, *keys: str) -> list[np.ndarray]:
    with h5py.File(path) as f:
        return [f[k][()] for k in keys]


@pytest.mark.parametrize("method", ["varnet", "modl"])
def test_reconstruction_unchanged_and_uncertainty_positive_in_the_object(method, cal_folder, tmp_path):
    from recon.app.cli import main
    from recon.solvers.diffusion.uncertainty import object_mask

    src = min(cal_folder.glob("*.h5"))
    plain, ens = tmp_path / "plain.h5", tmp_path / "ens.h5"
    assert main(["run", str(src), str(plain), "--method", method, *UNDER]) == 0
    assert main(["run", str(src), str(ens), "--method", method, "--ensemble", "3", *UNDER]) == 0
    (rec0,) = _read(plain, "reconstruction")
    rec, unc, noise = _read(ens, "reconstruction", "uncertainty", "noise_level")
    assert np.array_equal(rec, rec0)  # bit-identical
    assert unc.shape == rec.shape and unc.dtype == np.float32 and noise.shape == (rec.shape[0],)
    (ref,) = _read(src, "reconstruction_rss")
    for i in range(rec.shape[0]):
        assert np.all(unc[i][object_mask(ref[i])] > 0)
    assert np.all(noise > 0)


@pytest.mark.parametrize("kind", ["column", "2d"])
def test_members_keep_the_calibration_region_and_drop_a_fifth_of_the_rest(kind):
    from recon.solvers.learned.adapt import calibration_region, sample_grid
    from recon.solvers.learned.method import ensemble_masks

    rng = np.random.default_rng(0)
    w = 64
    if kind == "column":
        mask = rng.random(w) < 0.25
        mask[w // 2 - 4:w // 2 + 4] = True
        mask = np.broadcast_to(mask, (40, w)).copy()  # constant along H: lines
    else:
        mask = rng.random((40, w)) < 0.25
        mask[16:24, w // 2 - 4:w // 2 + 4] = True
    grid = sample_grid(mask)
    calib = calibration_region(grid) & grid
    outside = int((grid & ~calib).sum())
    members = ensemble_masks(mask, 4, 0.2, seed=0)
    assert len(members) == 4
    for m in members:
        assert m.shape == mask.shape and m.dtype == bool
        g = sample_grid(m) if kind == "2d" else m[:1]
        assert np.all(m <= mask)  # a subset of the acquired samples
        assert np.all(g[calib])  # the calibration region is kept
        assert int((grid & ~g).sum()) == round(0.2 * outside)
    dropped = [grid & ~(sample_grid(m) if kind == "2d" else m[:1]) for m in members]
    if 4 * round(0.2 * outside) <= outside:
        assert not np.any(sum(d.astype(int) for d in dropped) > 1)  # disjoint left-out sets


def test_same_seed_same_result_other_seed_other_spread(cal_folder):
    from recon.io import open_raw
    from recon.app.pipeline import Undersampling, _undersample
    from recon.solvers.learned.method import ensemble_masks, varnet_method

    mask = np.zeros(40, bool)
    mask[::3] = True
    assert all(np.array_equal(a, b) for a, b in zip(ensemble_masks(mask, 3, seed=5), ensemble_masks(mask, 3, seed=5)))
    with open_raw(min(cal_folder.glob("*.h5"))) as rf:
        raw = rf.read_slices(0)
        mask, _ = Undersampling("random", (4.0,), (0.16,), seed=1).mask_for("x.h5", rf.shape)
    raw = _undersample(raw, mask)
    a, b = varnet_method(raw, ensemble=3), varnet_method(raw, ensemble=3)
    c = varnet_method(raw, ensemble=3, ensemble_seed=1)
    assert np.array_equal(a["uncertainty"], b["uncertainty"]) and np.array_equal(a["reconstruction"],
                                                                                 c["reconstruction"])
    assert not np.array_equal(a["uncertainty"], c["uncertainty"])


def test_calibrate_then_run_brackets_the_reconstruction(calibration, cal_folder, tmp_path):
    from recon.app.cli import main
    from recon.solvers.uncertainty.calibration import weights_identity

    cal = json.loads(calibration.read_text())
    assert cal["method"] == "varnet" and cal["slices"] == 12 and cal["scale"] > 0
    assert cal["options"] == {"ensemble": 3, "ensemble_fraction": 0.2, "adapt": False}
    assert cal["weights"]["sha256"] == weights_identity("varnet", None)["sha256"]
    src = min(cal_folder.glob("*.h5"))
    out = tmp_path / "rec.h5"
    assert main(["run", str(src), str(out), "--method", "varnet", "--ensemble", "3", "--calibration",
                 str(calibration), *UNDER]) == 0
    rec, lower, upper, unc, std, noise = _read(out, "reconstruction", "lower", "upper", "uncertainty",
                                               "sample_std", "noise_level")
    assert lower.shape == upper.shape == rec.shape and lower.dtype == upper.dtype == np.float32
    assert np.all(lower <= rec) and np.all(rec <= upper)
    assert np.allclose(unc, cal["scale"] * (std + noise[:, None, None]), rtol=1e-5)
    batch_out = tmp_path / "batch"
    assert main(["batch", str(cal_folder), str(batch_out), "--method", "varnet", "--ensemble", "3",
                 "--calibration", str(calibration), "--workers", "1", *UNDER]) == 0
    rec_b, lower_b = _read(batch_out / src.name, "reconstruction", "lower")
    assert np.array_equal(rec_b, rec) and np.array_equal(lower_b, lower)


@pytest.mark.parametrize("change", ["weights", "method", "ensemble", "accel", "no-ensemble", "adapt"])
def test_calibration_for_something_else_is_refused(change, calibration, cal_folder, tmp_path, capsys):
    from recon.app.cli import main
    from recon.weights import bundled_weights

    src = min(cal_folder.glob("*.h5"))
    args = ["run", str(src), str(tmp_path / "rec.h5"), "--method", "varnet", "--ensemble", "3", *UNDER,
            "--calibration", str(calibration)]
    if change == "weights":
        other = tmp_path / "other.pt"
        shutil.copy(bundled_weights("varnet"), other)
        with open(other, "ab") as f:
            f.write(b"\0")
        args += ["--weights", str(other)]
    elif change == "method":
        args[args.index("varnet")] = "modl"
    elif change == "ensemble":
        args[args.index("--ensemble") + 1] = "4"
    elif change == "accel":
        args[args.index("--accel") + 1] = "8"
    elif change == "no-ensemble":
        i = args.index("--ensemble")
        del args[i:i + 2]
    else:
        args.append("--adapt")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "calibration" in err and "Traceback" not in err
    assert not (tmp_path / "rec.h5").exists()


@pytest.mark.parametrize("args", [["--method", "sense", "--ensemble", "3"], ["--method", "diffusion", "--ensemble", "3"],
                                  ["--method", "varnet", "--ensemble", "1"]])
def test_ensemble_usage_errors(args, cal_folder, tmp_path, capsys):
    from recon.app.cli import main

    src = min(cal_folder.glob("*.h5"))
    assert main(["run", str(src), str(tmp_path / "rec.h5"), *args, *UNDER]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ensemble" in err
    assert not (tmp_path / "rec.h5").exists()


def test_calibrate_varnet_needs_an_ensemble(cal_folder, tmp_path, capsys):
    from recon.app.cli import main

    assert main(["calibrate", str(cal_folder), str(tmp_path / "c.json"), "--method", "varnet", *UNDER]) == 2
    assert "--ensemble" in capsys.readouterr().err


def test_the_cli_and_the_calibration_files_agree_on_the_calibratable_methods():
    from recon.app.cli.run import CALIBRATABLE, ENSEMBLE_METHODS
    from recon.solvers.uncertainty import calibration as calib

    assert set(CALIBRATABLE) == set(calib.CALIBRATABLE) and set(ENSEMBLE_METHODS) <= set(CALIBRATABLE)
    assert calib.resolved_options("varnet", {"ensemble": 3}) == {"ensemble": 3, "ensemble_fraction": 0.2,
                                                                 "adapt": False}
    assert calib.resolved_options("diffusion", {"steps": 12}) == calib.resolved_options("diffusion", {})
