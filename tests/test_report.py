"""``recon report RUN_DIR``: the page of a tiny batch-like folder and of a tiny demo-like folder (tables,
metric values stored vs computed, aggregates, embedded PNGs that decode), error paths (exit 2, one line,
nothing written), and the page in headless Chromium (loads, every image decodes, no console errors,
non-blank screenshot)."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

from recon.app.cli import main as cli_main
from recon.data import sample_path
from recon.io.fastmri import write_reconstruction
from recon.metrics.fidelity import volume_metrics
from recon.app.report import build_report
from recon.app.report.html import fmt

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA_URI = '<img src="data:image/png;base64,'


def _phantom(shift: float) -> np.ndarray:
    """(2, 64, 64) float32: a disc (background 0) holding three intensity classes, slightly different per slice."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    r = np.hypot(yy, xx)
    out = np.zeros((2, 64, 64), np.float32)
    for s in range(2):
        img = np.where(r < 27, 1.0, 0.0)
        img = np.where(r < 20, 0.6, img)
        img = np.where((np.abs(yy) < 6 + s) & (np.abs(xx) < 12), 0.25, img)
        out[s] = img * (1.0 + shift) * (1.0 + 0.1 * xx / 32)  # a gentle ramp: distinct intensities per class
    return out


def _row(html: str, name: str, tier: str) -> str:
    table = html.split(f'data-tier="{tier}"', 1)[1].split("</table>", 1)[0]
    return next(r for r in table.split("<tr") if f"<td>{name}</td>" in r)


def _images(html: str) -> list[np.ndarray]:
    return [plt.imread(io.BytesIO(base64.b64decode(b64)), format="png")
            for b64 in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


@pytest.fixture
def batch_dir(tmp_path: Path) -> dict:
    """A batch-like OUTPUT_DIR: ``manifest.json``, a.h5 (4x, stored pixel metrics with a marker PSNR),
    b.h5 (8x, no stored metrics, with uncertainty and hallucination maps), c.h5 (failed)."""
    rng = np.random.default_rng(0)
    out, targets = tmp_path / "out", tmp_path / "targets"
    out.mkdir()
    targets.mkdir()
    volumes = {}
    files = {}
    for name, accel, noise, shift in (("a.h5", 4, 0.03, 0.0), ("b.h5", 8, 0.12, 0.2)):
        target = _phantom(shift)
        pred = np.abs(target + noise * rng.standard_normal(target.shape)).astype(np.float32)
        with h5py.File(targets / name, "w") as f:
            f.create_dataset("reconstruction_rss", data=target)
        extra = None
        if name == "b.h5":
            extra = {"uncertainty": np.full_like(pred, 0.05) + 0.01 * rng.random(pred.shape, dtype=np.float32),
                     "hallucination": rng.random(pred.shape, dtype=np.float32)}
        write_reconstruction(out / name, pred, attrs={"method": "zero-filled", "mask_acceleration": accel},
                             datasets=extra)
        volumes[name] = (target, pred)
        files[name] = {"input": str(tmp_path / "in" / name), "output": str(out / name), "status": "ok",
                       "seconds": 0.5, "slices": 2, "target": str(targets / name), "error": None,
                       "metrics": ({"nmse": 0.01, "psnr": 12.3456, "ssim": 0.5} if name == "a.h5" else None)}
    files["c.h5"] = {"input": str(tmp_path / "in" / "c.h5"), "output": str(out / "c.h5"), "status": "failed",
                     "seconds": 0.1, "slices": None, "metrics": None,
                     "error": {"type": "DataError", "message": "k-space <has> NaN"}}
    manifest = {"manifest_version": 1, "tool": "recon batch", "state": "finished",
                "command": ["recon", "batch", "in", "out", "--accel", "4"], "input_dir": str(tmp_path / "in"),
                "output_dir": str(out), "parameters": {"method": "zero-filled", "options": {},
                                                       "undersampling": None, "target_dir": str(targets),
                                                       "tiers": ["pixel"]},
                "versions": {"recon": "0.1.0", "numpy": np.__version__}, "files": files,
                "summary": {"files": 3, "ok": 2, "skipped": 0, "failed": 1, "pending": 0}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return {"out": out, "targets": targets, "volumes": volumes}


def test_batch_report_tables_values_and_images(batch_dir: dict, capsys: pytest.CaptureFixture) -> None:
    out = batch_dir["out"]
    assert cli_main(["report", str(out), "--tiers", "pixel,task"]) == 0
    html = (out / "report.html").read_text()
    assert 'data-tier="pixel"' in html and 'data-tier="task"' in html and 'data-tier="feature"' not in html
    assert "recon batch in out --accel 4" in html  # the run's command in the summary
    # a.h5: the stored value is shown as stored (not recomputed); b.h5: computed as fastMRI's metrics
    assert "<td class=\"num\">12.35</td>" in _row(html, "a.h5", "pixel")
    target, pred = batch_dir["volumes"]["b.h5"]
    expected = volume_metrics(target, pred)
    row_b = _row(html, "b.h5", "pixel")
    for key in ("nmse", "psnr", "ssim"):
        assert f">{fmt(expected[key], key)}</td>" in row_b, key
    assert "computed against reconstruction_rss of b.h5" in row_b
    # aggregate over the two reconstructions (the failed file does not count): mean +- sample std
    both = np.array([12.3456, expected["psnr"]])
    assert f"{fmt(both.mean(), 'psnr')} &plusmn; {fmt(both.std(ddof=1), 'psnr')}" in html
    assert "(n = 2)" in html
    # task tier computed for both files (a's stored metrics are pixel only); identical masks -> Dice <= 1
    dice = re.findall(r'<td class="num(?: best)?">([0-9.]+)</td>', _row(html, "a.h5", "task"))
    assert len(dice) == 5 and all(0.5 < float(d) <= 1.0 for d in dice)
    # the failed file is listed with its (escaped) error and no numbers
    row_c = _row(html, "c.h5", "pixel")
    assert "failed" in row_c and "k-space &lt;has&gt; NaN" in row_c
    # images: one panel row per reconstruction + one metric-vs-acceleration plot per tier (4x and 8x)
    assert html.count(DATA_URI) == 2 + 2
    images = _images(html)
    assert len(images) == 4 and all(im.ndim == 3 and im.shape[0] > 100 and im.std() > 0.05 for im in images)
    assert "uncertainty map" in html and "hallucination map" in html
    assert "&darr; lower is better" in html and "&uarr; higher is better" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html  # self-contained
    assert capsys.readouterr().out.strip() == f"wrote {out / 'report.html'}"


def test_report_is_regenerated_unless_no_overwrite(batch_dir: dict, capsys: pytest.CaptureFixture) -> None:
    out = batch_dir["out"]
    (out / "report.html").write_text("old")
    assert cli_main(["report", str(out), "--tiers", "pixel"]) == 0
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert cli_main(["report", str(out), "--tiers", "pixel", "--no-overwrite"]) == 2
    assert "output exists" in capsys.readouterr().err
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_plain_folder_with_target_dir(batch_dir: dict, capsys: pytest.CaptureFixture) -> None:
    """Without a manifest: every reconstruction .h5 under the folder, scored against --target-dir."""
    out = batch_dir["out"]
    (out / "manifest.json").unlink()
    assert cli_main(["report", str(out), "--tiers", "pixel", "--target-dir", str(batch_dir["targets"])]) == 0
    html = (out / "report.html").read_text()
    assert "folder of reconstructions" in html and "c.h5" not in html
    for name in ("a.h5", "b.h5"):
        target, pred = batch_dir["volumes"][name]
        psnr = volume_metrics(target, pred)["psnr"]
        assert f">{fmt(psnr, 'psnr')}</td>" in _row(html, name, "pixel"), name
    assert html.count(DATA_URI) == 2 + 1
    # without references: the images only, no metrics, no error maps
    (out / "report.html").unlink()
    assert cli_main(["report", str(out), "--tiers", "pixel"]) == 0
    html = (out / "report.html").read_text()
    assert "no reference: only stored metrics" in html and "|reconstruction - reference|" not in html
    # a manifest whose files all failed: exit 2, the counts in the message
    (out / "manifest.json").write_text(json.dumps({"files": {"x.h5": {"status": "failed", "output": "x.h5"}}}))
    assert cli_main(["report", str(out)]) == 2
    assert "names no finished reconstruction (1 failed)" in capsys.readouterr().err


def test_demo_like_folder(tmp_path: Path) -> None:
    """metrics.json of ``recon demo`` (slice 1 of the bundled sample), 2 methods x 4x/8x: stored pixel metrics,
    feature tier computed against the sample's reconstruction_rss, a metric-vs-acceleration plot."""
    from recon.metrics.feature import feature_metrics

    with h5py.File(sample_path(), "r") as f:
        ref = np.asarray(f["reconstruction_rss"][1:2], dtype=np.float32)
    rng = np.random.default_rng(1)
    rows, preds = [], {}
    for method, level in (("zero-filled", 0.08), ("tv", 0.03)):
        for accel in (4, 8):
            pred = np.abs(ref + level * accel / 4 * ref.max() * rng.standard_normal(ref.shape)).astype(np.float32)
            name = f"{method}_{accel}x.h5"
            write_reconstruction(tmp_path / name, pred, attrs={"method": method, "mask_acceleration": accel})
            m = volume_metrics(ref, pred, crop=(192, 192))
            rows.append({"method": method, "acceleration": accel, "center_fraction": 0.08, "file": name, **m,
                         "seconds": 0.1})
            preds[name] = pred
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"sample": "sample_brain.h5", "slices": [1], "reference": "RSS", "results": rows, "skipped": {}}))
    path = build_report(tmp_path, tiers="pixel,feature", log=lambda msg: None)
    html = path.read_text()
    assert "recon demo --quick" in html and html.count(DATA_URI) == 4 + 2
    assert all(im.std() > 0.05 for im in _images(html))
    assert f">{fmt(rows[0]['psnr'], 'psnr')}</td>" in _row(html, "zero-filled_4x.h5", "pixel")
    crop = (slice(None), slice(16, 208), slice(None))  # fastMRI's crop of 224 x 192: 192 x 192
    expected = feature_metrics(ref[crop], preds["tv_8x.h5"][crop])
    row = _row(html, "tv_8x.h5", "feature")
    for key, value in expected.items():
        assert f">{fmt(value, key)}</td>" in row, key
    assert "metric vs acceleration" in html


def test_error_paths_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    with h5py.File(other / "t.h5", "w") as f:  # an .h5 that is not a reconstruction
        f.create_dataset("reconstruction_rss", data=np.zeros((1, 8, 8), np.float32))
    cases = {"missing": "does not exist", "file.txt": "not a folder", "empty": "nothing to report",
             "other": "nothing to report"}
    for name, words in cases.items():
        assert cli_main(["report", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("report.html"))
    assert cli_main(["report", str(other), "--tiers", "pixel,colour"]) == 2
    assert "unknown tier 'colour'" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_in_headless_chromium(batch_dir: dict, tmp_path: Path) -> None:
    """The page loads from disk, every image decodes, no script/console errors, and the screenshot is not blank."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (install Debian's 'chromium', e.g. 'make system-tools')")
    out = batch_dir["out"]
    page = build_report(out, tiers="pixel", log=lambda msg: None)
    flags = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = page.absolute().as_uri()
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n = page.read_text().count(DATA_URI)
    assert n == 2 + 1
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert f'data-images-loaded="{n}/{n}"' in body, body
    assert 'data-console-errors="0"' in body, body
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "shot.png"
    proc = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,2000", url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = plt.imread(shot)
    assert image.shape[:2] == (2000, 1280)
    assert image[..., :3].std() > 0.05  # text, tables and images: not a blank page
    assert (image[..., :3].mean(axis=-1) < 0.5).mean() > 0.01  # dark pixels: text and the images' content


def test_images_capped_for_large_runs(batch_dir: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import recon.app.report.build as build

    monkeypatch.setattr(build, "MAX_IMAGE_FILES", 1)
    html = build_report(batch_dir["out"], tiers="pixel", log=lambda msg: None).read_text()
    assert html.count(DATA_URI) == 1 + 1  # a.h5's panels + the metric-vs-acceleration plot
    assert "images of the first 1 of 2 reconstructions are shown" in html
    assert "<td>b.h5</td>" in html  # still in the tables


def test_corrupt_output_is_listed_not_fatal(batch_dir: dict) -> None:
    (batch_dir["out"] / "b.h5").write_bytes(b"\x89HDF garbage")
    html = build_report(batch_dir["out"], tiers="pixel", log=lambda msg: None).read_text()
    assert "unreadable" in _row(html, "b.h5", "pixel") and "cannot open as HDF5" in html
    assert html.count(DATA_URI) == 1  # a.h5 only; one acceleration left: no plot
