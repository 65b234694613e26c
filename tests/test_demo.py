"""``recon demo``: the quick run through a subprocess (files, metrics recomputed from the written .h5, L1 beats
zero-filled), reconstructions equal to ``recon run``'s, idempotent reruns, bad output folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from recon.data import sample_path
from recon.app.demo import QUICK, DemoConfig, run_demo, sample_subset
from recon.io import read_raw
from recon.arrays import center_crop_or_pad, rss
from recon.io.fourier import ifft2c
from recon.metrics import fastmri_crop_size, volume_metrics
from recon.app.pipeline import METHODS, Undersampling, reconstruct_file
from recon.sampling import mask_from_options

QUICK_FILES = ["demo.png", "grappa_4x.h5", "l1-wavelet_4x.h5", "metrics.json", "metrics.md", "report.html",
               "sense_4x.h5", "tv_4x.h5", "zero-filled_4x.h5"]


def _reference(slices: list[int]) -> np.ndarray:
    """RSS of the fully sampled sample k-space, centre-cropped: computed here, independently of the demo."""
    raw = read_raw(sample_path())
    return np.asarray(center_crop_or_pad(rss(ifft2c(raw.kspace[slices]), axis=1), raw.header.recon_size), dtype=np.float32)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([sys.executable, "-m", "recon", "demo", "--out", str(out), "--quick"],
                          capture_output=True, text=True, timeout=600)
    return out, proc


def test_quick_demo_writes_its_files(quick_demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == QUICK_FILES
    image = plt.imread(out / "demo.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > image.shape[0]
    assert "| l1-wavelet |" in proc.stdout and "4x PSNR" in proc.stdout
    assert (out / "metrics.md").read_text().count("\n| ") == 1 + 5  # header + one line per method
    page = (out / "report.html").read_text()  # recon report of the folder: three tiers, one image row per method
    assert all(f'data-tier="{t}"' in page for t in ("pixel", "feature", "task"))
    assert page.count('<img src="data:image/png;base64,') == 5
    for name in QUICK_FILES:
        if name.endswith(".h5"):
            with h5py.File(out / name) as f:
                assert f["reconstruction"].shape == (1, 224, 192) and f["reconstruction"].dtype == np.float32
                assert f.attrs["method"] == name.removesuffix("_4x.h5")
                assert f.attrs["input_file"] == "sample_brain.h5"
                # the fastMRI random mask seeded from the sample's file name, as `recon run --accel 4` draws it
                expected, _ = mask_from_options("random", (224, 192), [4], [0.08], "sample_brain.h5")
                np.testing.assert_array_equal(f["mask"][()], expected)


def test_metrics_json_equal_recomputed_metrics(quick_demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert report["slices"] == [1] and report["skipped"] == {}
    reference = _reference(report["slices"])
    rows = {(r["method"], r["acceleration"]): r for r in report["results"]}
    assert sorted(rows) == sorted((m, 4) for m in ("zero-filled", "sense", "grappa", "l1-wavelet", "tv"))
    for row in report["results"]:
        with h5py.File(out / row["file"]) as f:
            rec = f["reconstruction"][()]
        got = volume_metrics(reference, rec, crop=fastmri_crop_size(reference.shape))
        for key in ("nmse", "psnr", "ssim"):
            assert row[key] == pytest.approx(got[key], abs=1e-6), (row["method"], key)
    l1, zf = rows[("l1-wavelet", 4)], rows[("zero-filled", 4)]
    assert l1["psnr"] > zf["psnr"] + 2.0 and l1["ssim"] > zf["ssim"] and l1["nmse"] < zf["nmse"]


def test_shared_maps_give_recon_run_images(quick_demo: tuple[Path, subprocess.CompletedProcess],
                                           tmp_path: Path) -> None:
    """The demo's shared ESPIRiT maps change nothing but the time: SENSE equals a plain ``recon run``."""
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stderr
    subset = sample_subset(sample_path(), QUICK.slices, tmp_path)
    summary = reconstruct_file(subset, tmp_path / "sense.h5", method="sense",
                               undersampling=Undersampling(accelerations=(4,), center_fractions=(0.08,)))
    with h5py.File(out / "sense_4x.h5") as demo, h5py.File(summary["output"]) as plain:
        a, b = demo["reconstruction"][()], plain["reconstruction"][()]
        assert json.loads(demo.attrs["parameters"]) == json.loads(plain.attrs["parameters"])
        np.testing.assert_array_equal(demo["mask"][()], plain["mask"][()])
    assert np.abs(a - b).max() <= 1e-4 * b.max()


def test_rerun_replaces_its_outputs_and_restores_methods(tmp_path: Path) -> None:
    config = DemoConfig(accelerations=((4, 0.08), (8, 0.04)), methods=("zero-filled",), learned=False, slices=(0,))
    registry = dict(METHODS)
    threads = torch.get_num_threads()
    first = run_demo(tmp_path, config, log=lambda msg: None, threads=1)
    assert torch.get_num_threads() == threads  # restored
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    second = run_demo(tmp_path, config, log=lambda msg: None)
    assert sorted(before) == ["demo.png", "metrics.json", "metrics.md", "report.html", "zero-filled_4x.h5",
                              "zero-filled_8x.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # replaced, nothing added
    assert [r["psnr"] for r in first["results"]] == [r["psnr"] for r in second["results"]]
    assert first["results"][0]["psnr"] > first["results"][1]["psnr"]  # 4x beats 8x
    assert dict(METHODS) == registry


def test_demo_into_a_file_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "recon", "demo", "--out", str(blocker / "out"), "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("recon: ") and "cannot create the demo folder" in proc.stderr
    assert "Traceback" not in proc.stderr and str(blocker / "out") in proc.stderr


def test_threads_below_one_is_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "recon", "demo", "--out", str(tmp_path / "d"), "--threads", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "recon: --threads must be >= 1, got 0\n"
    assert not (tmp_path / "d").exists()
