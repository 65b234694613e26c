"""``recon eval`` through a subprocess: targets from the bundled sample and a simulated file, predictions from
``recon run --accel 4``; numbers equal ``volume_metrics``, ``recon run``'s own summary and fastMRI's evaluate."""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.data import sample_path
from recon.metrics import fastmri_crop_size, volume_metrics
from recon.simulate import load_colin27, write_dataset
from test_metrics import fastmri_eval  # noqa: F401  (fixture: fastMRI's evaluate.py loaded by path)

NAMES = ("sample_brain.h5", "sim_000.h5")


def recon(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recon: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    """T: the sample and one simulated file (acquisition AXT2_SIM); P: ``recon run --accel 4`` of each."""
    root = tmp_path_factory.mktemp("eval")
    t, p = root / "targets", root / "predictions"
    t.mkdir()
    p.mkdir()
    shutil.copy(sample_path(), t / NAMES[0])
    write_dataset(t, load_colin27([85, 95], shape=(80, 64)), slices_per_file=2, num_coils=4, seed=3,
                  acquisition="AXT2_SIM", prefix="sim")
    assert sorted(x.name for x in t.iterdir()) == sorted(NAMES)
    summaries = {}
    for name in NAMES:
        proc = recon("run", t / name, p / name, "--accel", "4", "--json")
        assert proc.returncode == 0, proc.stderr
        summaries[name] = json.loads(proc.stdout)
    return {"t": t, "p": p, "root": root, "summaries": summaries}


def _expected(t: Path, p: Path, name: str) -> dict[str, float]:
    with h5py.File(t / name) as f:
        gt = f["reconstruction_rss"][()]
    with h5py.File(p / name) as f:
        pred = f["reconstruction"][()]
    return volume_metrics(gt, pred, crop=fastmri_crop_size(gt.shape))


def test_eval_numbers(folders, fastmri_eval):
    t, p, root = folders["t"], folders["p"], folders["root"]
    out_json, out_csv = root / "eval.json", root / "eval.csv"
    out_json.write_text("old report")  # reports are replaced
    proc = recon("eval", "--target-dir", t, "--predictions-dir", p, "--json", out_json, "--csv", out_csv)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out_json.read_text())
    assert sorted(report["files"]) == sorted(NAMES) and report["count"] == 2
    for name in NAMES:
        want = _expected(t, p, name)
        assert {k: report["files"][name][k] for k in want} == want  # JSON keeps every digit
        assert folders["summaries"][name]["metrics"] == want  # recon run reported what recon eval finds
        with h5py.File(p / name) as f:
            assert {k: float(f.attrs[f"metric_{k}"]) for k in want} == want
    values = {k: [report["files"][n][k] for n in NAMES] for k in ("nmse", "psnr", "ssim")}
    for k, v in values.items():
        assert report[k]["mean"] == pytest.approx(np.mean(v), rel=1e-12)
        assert report[k]["std"] == pytest.approx(np.std(v, ddof=1), rel=1e-9)
    line = proc.stdout.strip()
    assert line == "  ".join(f"{k.upper()} = {report[k]['mean']:.4g} +/- {2 * report[k]['std']:.4g}"
                             for k in ("nmse", "psnr", "ssim"))
    assert "evaluated 2 volume(s)" in proc.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["file"] for r in rows] == sorted(NAMES)
    assert all(float(r["ssim"]) == report["files"][r["file"]]["ssim"] for r in rows)
    assert [int(r["slices"]) for r in rows] == [3, 2]
    assert not list(root.glob(".*.part"))

    # fastMRI's own evaluate.py over the same folders (its float32 arithmetic: within 1e-6)
    theirs = fastmri_eval.evaluate(
        argparse.Namespace(target_path=t, predictions_path=p, acquisition=None, acceleration=None),
        "reconstruction_rss")
    means, stds = theirs.means(), theirs.stddevs()
    assert report["nmse"]["mean"] == pytest.approx(means["NMSE"], abs=1e-6)
    assert report["psnr"]["mean"] == pytest.approx(means["PSNR"], rel=1e-6)
    assert report["ssim"]["mean"] == pytest.approx(means["SSIM"], abs=1e-6)
    assert report["ssim"]["std"] == pytest.approx(stds["SSIM"], abs=1e-6)


def test_eval_filters(folders):
    t, p, root = folders["t"], folders["p"], folders["root"]
    out = root / "axt2.json"
    proc = recon("eval", "--target-dir", t, "--predictions-dir", p, "--acquisition", "AXT2_SIM",
                 "--acceleration", "4", "--tiers", "pixel", "--json", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert list(report["files"]) == ["sim_000.h5"] and report["skipped"] == ["sample_brain.h5"]
    assert report["ssim"] == {"mean": _expected(t, p, "sim_000.h5")["ssim"], "std": 0.0}
    assert "1 skipped" in proc.stderr
    msg = one_line_error(recon("eval", "--target-dir", t, "--predictions-dir", p, "--acceleration", "8"))
    assert "no target files match (acceleration=8.0)" in msg


def test_eval_errors(folders, tmp_path):
    t, p = folders["t"], folders["p"]
    args = ["eval", "--target-dir", t, "--predictions-dir", p]
    assert "unknown tier 'colour'" in one_line_error(recon(*args, "--tiers", "pixel,colour"))
    assert "--tiers names no tier" in one_line_error(recon(*args, "--tiers", " , "))
    assert "target folder does not exist" in one_line_error(recon("eval", "--target-dir", tmp_path / "no",
                                                                  "--predictions-dir", p))
    assert "output folder" in one_line_error(recon(*args, "--json", tmp_path / "no" / "r.json"))
    assert not (tmp_path / "no").exists()

    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(p / "sim_000.h5", partial / "sim_000.h5")
    msg = one_line_error(recon("eval", "--target-dir", t, "--predictions-dir", partial, "--json", tmp_path / "r.json"))
    assert "1 prediction(s) missing for targets: sample_brain.h5" in msg
    assert not (tmp_path / "r.json").exists()

    with h5py.File(p / "sample_brain.h5") as f:
        small = f["reconstruction"][:, :100, :100]
    from recon.io.fastmri import write_reconstruction

    write_reconstruction(partial / "sample_brain.h5", small)
    msg = one_line_error(recon("eval", "--target-dir", t, "--predictions-dir", partial))
    assert "sample_brain.h5: prediction shape (3, 100, 100) does not fit target shape (3, 224, 192)" in msg


def test_eval_all_tiers(tmp_path):
    """``--tiers pixel,feature,task`` on two tiny volumes: every metric in the summary line, the JSON (aggregate
    and per file, equal to :func:`volume_tier_metrics`) and the CSV."""
    import importlib.util

    from scipy import ndimage as ndi

    from recon.io.fastmri import write_reconstruction
    from recon.metrics.tiers import tier_metric_names, volume_tier_metrics
    from test_metrics_task import phantom

    tiers = "pixel,feature,task" if importlib.util.find_spec("recon.metrics.feature") else "pixel,task"
    t, p = tmp_path / "t", tmp_path / "p"
    t.mkdir()
    p.mkdir()
    preds = {}
    for i, blur in enumerate((0.6, 1.2)):
        target, _ = phantom(size=64, slices=2, seed=i)
        with h5py.File(t / f"v{i}.h5", "w") as f:
            f["reconstruction_rss"] = target.astype(np.float32)
        preds[f"v{i}.h5"] = (target.astype(np.float32), ndi.gaussian_filter(target, (0, blur, blur)).astype(np.float32))
        write_reconstruction(p / f"v{i}.h5", preds[f"v{i}.h5"][1])
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    proc = recon("eval", "--target-dir", t, "--predictions-dir", p, "--tiers", tiers, "--json", out_json,
                 "--csv", out_csv)
    assert proc.returncode == 0, proc.stderr
    names = tier_metric_names(tiers)
    assert "dice_mean" in names and "edge_f1" in names
    report = json.loads(out_json.read_text())
    assert report["tiers"] == tiers.split(",") and report["count"] == 2
    for name, (target, pred) in preds.items():
        want = volume_tier_metrics(target, pred, tiers, crop="fastmri")
        assert {k: report["files"][name][k] for k in names} == want
        assert report["files"][name]["slices"] == 2
    for k in names:
        v = [report["files"][n][k] for n in preds]
        assert report[k]["mean"] == pytest.approx(np.mean(v), rel=1e-12)
        assert report[k]["std"] == pytest.approx(np.std(v, ddof=1), rel=1e-9)
    # the stronger blur (v1) moves more voxels between tissue classes (the phantom's high-contrast circles keep
    # their Canny edges: edge F1 stays 1 here; tests/test_metrics_task.py checks it on the brain sample)
    assert report["files"]["v1.h5"]["dice_mean"] < 0.85 < report["files"]["v0.h5"]["dice_mean"] < 1
    line = proc.stdout.strip()
    assert line == "  ".join(f"{k.upper()} = {report[k]['mean']:.4g} +/- {2 * report[k]['std']:.4g}" for k in names)
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["file", "slices", *names]
    assert [float(r["dice_gm"]) for r in rows] == [report["files"][n]["dice_gm"] for n in preds]
