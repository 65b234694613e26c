"""``recon batch``: per-file isolation of corrupt inputs, resume, settings mismatch, manifest, metrics
(identical to ``recon eval``), unwritable output folder, disk full, missing Dask. Real files, real processes."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.app.batch import InlineBackend, find_inputs, format_summary, run_batch
from recon.app.batch.manifest import MANIFEST_NAME
from recon.errors import InputError, OutputError, UsageError
from recon.io.fastmri import read_reconstruction
from recon.metrics import evaluate_folders
from recon.app.pipeline import Undersampling
from recon.simulate import load_colin27, write_dataset

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def recon_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "recon", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def cli_inline(capsys, *args: str) -> tuple[int, str, str]:
    """The real CLI entry point, in this process: (exit code, stdout, stderr)."""
    from recon.app.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def make_dataset(folder: Path, files: int = 3, slices: int = 2, coils: int = 4, size=(32, 24), seed: int = 0):
    """A small simulated fastMRI-layout folder (real Colin 27 slices, simulated coils and noise)."""
    vol = load_colin27(range(80, 80 + files * slices), shape=size)
    return write_dataset(folder, vol, slices_per_file=slices, num_coils=coils, snr=30.0, seed=seed,
                         readout_oversampling=2)


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good") / "in"
    make_dataset(folder)
    return folder


def _h5_outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.h5"))


def _no_temporaries(folder: Path) -> bool:
    return not list(folder.rglob("*.part"))


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory, good_dir) -> Path:
    """Good files (one in a sub-folder) and every kind of bad one."""
    folder = tmp_path_factory.mktemp("mixed") / "in"
    folder.mkdir()
    good = sorted(good_dir.glob("*.h5"))
    shutil.copy(good[0], folder / "a_good.h5")
    (folder / "sub").mkdir()
    shutil.copy(good[1], folder / "sub" / "b_good.h5")
    data = good[2].read_bytes()
    (folder / "sub" / "truncated.h5").write_bytes(data[: len(data) // 2])
    (folder / "garbage.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty.h5").write_bytes(b"")
    with h5py.File(good[0]) as src, h5py.File(folder / "no_kspace.h5", "w") as f:
        f.create_dataset("ismrmrd_header", data=src["ismrmrd_header"][()])
        f.create_dataset("reconstruction_rss", data=src["reconstruction_rss"][()])
    shutil.copy(good[0], folder / "nans.h5")
    with h5py.File(folder / "nans.h5", "r+") as f:
        k = f["kspace"][()]
        k[1, 2, 3, 4] = np.nan
        f["kspace"][...] = k
    with h5py.File(good[0]) as src, h5py.File(folder / "zero_coils.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 0) + src["kspace"].shape[2:], np.complex64))
        f.create_dataset("ismrmrd_header", data=src["ismrmrd_header"][()])
    (folder / "sub" / "bad_only").mkdir()
    (folder / "sub" / "bad_only" / "garbage2.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    return folder


BAD = {  # relative path -> (error type, words in the reason)
    "empty.h5": ("CorruptFileError", "file is empty"),
    "garbage.h5": ("CorruptFileError", "not a readable HDF5 file (truncated or corrupt)"),
    "sub/truncated.h5": ("CorruptFileError", "truncated file"),
    "sub/bad_only/garbage2.h5": ("CorruptFileError", "not a readable HDF5 file"),
    "no_kspace.h5": ("FormatError", "no 'kspace' dataset"),
    "nans.h5": ("DataError", "k-space contains 1 NaN/Inf values"),
    "zero_coils.h5": ("DataError", "empty axis"),
}


def test_corrupt_files_are_isolated_and_reported(mixed_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    r = recon_cli("batch", str(mixed_dir), str(out), "--workers", "2")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    # only the good files were written, at their relative paths; no temporaries, no folder for bad-only input
    assert _h5_outputs(out) == ["a_good.h5", "sub/b_good.h5"]
    assert _no_temporaries(out)
    assert not (out / "sub" / "bad_only").exists()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["state"] == "finished"
    files = manifest["files"]
    assert set(files) == {"a_good.h5", "sub/b_good.h5", *BAD}
    for rel, (kind, words) in BAD.items():
        e = files[rel]
        assert e["status"] == "failed", rel
        assert e["error"]["type"] == kind
        assert str(mixed_dir / rel) in e["error"]["message"] and words in e["error"]["message"], e["error"]
        assert "\n" not in e["error"]["message"]
    for rel in ("a_good.h5", "sub/b_good.h5"):
        assert files[rel]["status"] == "ok" and files[rel]["slices"] == 2
        rec, attrs = read_reconstruction(out / rel)
        with h5py.File(mixed_dir / rel) as f:
            ref = f["reconstruction_rss"][()]
        assert rec.shape == ref.shape == (2, 32, 24)
        assert np.abs(rec - ref).max() <= 1e-5 * ref.max()  # fully sampled zero-filled RSS = reference
        assert attrs["method"] == "zero-filled"
    s = manifest["summary"]
    assert (s["ok"], s["failed"], s["skipped"], s["pending"]) == (2, len(BAD), 0, 0)
    assert set(manifest["versions"]) >= {"recon", "torch", "numpy", "python"}
    assert manifest["backend"]["name"] == "local" and manifest["backend"]["workers"] == 2
    # progress: plain lines when stderr is not a terminal; summary table on stdout
    assert "[9/9]" in r.stderr and "FAILED nans.h5: DataError" in r.stderr
    assert "2 reconstructed, 0 skipped (finished earlier), 7 failed" in r.stdout
    assert "zero_coils.h5: " in r.stdout

    # rerun: the finished ones are skipped (and the log says so), the bad ones fail again
    before = {rel: (out / rel).read_bytes() for rel in ("a_good.h5", "sub/b_good.h5")}
    code, _, err = cli_inline(capsys, "batch", str(mixed_dir), str(out), "--workers", "1")
    assert code == 1
    assert "skipped 2 finished" in err
    m2 = json.loads((out / MANIFEST_NAME).read_text())
    assert [m2["files"][k]["status"] for k in ("a_good.h5", "sub/b_good.h5")] == ["skipped", "skipped"]
    assert m2["summary"]["failed"] == len(BAD)
    assert {rel: (out / rel).read_bytes() for rel in before} == before


def test_resume_mismatch_and_no_resume(good_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    first = run_batch(good_dir, out, backend=InlineBackend(), live=False, stream=open(os.devnull, "w"))
    assert first.exit_code == 0 and first.summary["ok"] == 3
    before = {p: p.read_bytes() for p in out.glob("*.h5")}
    # other settings: each file fails telling what to do; nothing is overwritten
    code, stdout, _ = cli_inline(capsys, "batch", str(good_dir), str(out), "--accel", "4", "--workers", "1")
    assert code == 1 and "3 failed" in stdout
    m = json.loads((out / MANIFEST_NAME).read_text())
    for e in m["files"].values():
        assert e["status"] == "failed" and e["error"]["type"] == "OutputError"
        assert "other settings" in e["error"]["message"] and "--no-resume" in e["error"]["message"]
    assert {p: p.read_bytes() for p in out.glob("*.h5")} == before
    # --no-resume overwrites with the new settings
    code, _, err = cli_inline(capsys, "batch", str(good_dir), str(out), "--accel", "4", "--no-resume",
                              "--workers", "1")
    assert code == 0, err
    _, attrs = read_reconstruction(out / "sim_000.h5")
    assert attrs["mask_acceleration"] == 4 and attrs["parameters"]["mask"]["seed"] == "sim_000.h5"
    # and these are now finished for the --accel 4 settings, but not for --accel 8
    code, _, err = cli_inline(capsys, "batch", str(good_dir), str(out), "--accel", "4", "--workers", "1")
    assert code == 0 and "skipped 3 finished" in err
    code, _, err = cli_inline(capsys, "batch", str(good_dir), str(out), "--accel", "8", "--workers", "1")
    assert code == 1 and "skipped 0 finished; 3 with conflicting outputs" in err


def test_metrics_match_recon_eval(good_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, err = cli_inline(capsys, "batch", str(good_dir), str(out), "--accel", "4", "--target-dir",
                                   str(good_dir), "--workers", "1")
    assert code == 0, err
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    ev = evaluate_folders(good_dir, out)
    assert set(ev.files) == set(manifest["files"])
    for rel, e in manifest["files"].items():
        for name in ("nmse", "psnr", "ssim"):
            assert e["metrics"][name] == pytest.approx(ev.files[rel][name], rel=1e-12, abs=1e-15)
    agg = manifest["summary"]["metrics"]
    for name in ("nmse", "psnr", "ssim"):
        assert agg[name]["mean"] == pytest.approx(ev.mean[name], rel=1e-12)
        assert agg[name]["std"] == pytest.approx(ev.std[name], rel=1e-9)
        assert agg[name]["n"] == 3
    assert 0 < agg["nmse"]["mean"] < 0.2 and 0.3 < agg["ssim"]["mean"] < 1  # 4x undersampled: real errors
    assert f"NMSE {agg['nmse']['mean']:.4g}" in stdout
    # the same metrics without --target-dir: from the input's own reference (recorded by reconstruct_file)
    out2 = tmp_path / "out2"
    res = run_batch(good_dir, out2, backend=InlineBackend(), stream=open(os.devnull, "w"),
                    undersampling=Undersampling("random", (4,), (0.08,)))
    for rel, e in res.manifest["files"].items():
        assert e["metrics"]["psnr"] == pytest.approx(ev.files[rel]["psnr"], rel=1e-9)
    # skipped files keep their scores
    again = run_batch(good_dir, out, backend=InlineBackend(), stream=open(os.devnull, "w"), target_dir=good_dir,
                      undersampling=Undersampling("random", (4,), (0.08,)))
    assert again.summary["skipped"] == 3
    assert again.summary["metrics"]["ssim"]["mean"] == pytest.approx(ev.mean["ssim"], rel=1e-12)


def test_tiers_task_scores_match_recon_eval(good_dir: Path, tmp_path: Path) -> None:
    """``--tiers pixel,task``: per-file task metrics and their aggregates equal ``recon eval``'s; a resumed run
    without ``--target-dir`` scores the skipped outputs against the inputs' own reference (here the same
    files), and a tier the first run did not score is computed rather than taken from the old manifest."""
    from recon.metrics.task import TASK_METRICS

    out = tmp_path / "out"
    devnull = open(os.devnull, "w")
    us = Undersampling("random", (4,), (0.08,))
    res = run_batch(good_dir, out, backend=InlineBackend(), stream=devnull, undersampling=us,
                    target_dir=good_dir, tiers="pixel,task")
    assert res.exit_code == 0 and res.manifest["parameters"]["tiers"] == ["pixel", "task"]
    ev = evaluate_folders(good_dir, out, tiers=("pixel", "task"))
    names = ["nmse", "psnr", "ssim", *TASK_METRICS]
    assert ev.metric_names == names
    agg = res.summary["metrics"]
    assert list(agg) == names
    for rel, e in res.manifest["files"].items():
        assert e["metrics"] == pytest.approx({k: ev.files[rel][k] for k in names}, rel=1e-12, abs=1e-15)
        assert 0 < e["metrics"]["dice_mean"] < 1  # 4x undersampled: real disagreement
    for name in names:
        assert agg[name]["mean"] == pytest.approx(ev.mean[name], rel=1e-12)
        assert agg[name]["std"] == pytest.approx(ev.std[name], rel=1e-9, abs=1e-15)
        assert agg[name]["n"] == 3
    assert f"DICE_MEAN {agg['dice_mean']['mean']:.4g}" in format_summary(res.manifest)

    pixel_only = run_batch(good_dir, tmp_path / "out2", backend=InlineBackend(), stream=devnull, undersampling=us)
    assert list(pixel_only.summary["metrics"]) == ["nmse", "psnr", "ssim"]
    again = run_batch(good_dir, tmp_path / "out2", backend=InlineBackend(), stream=devnull, undersampling=us,
                      tiers=["task", "pixel"])
    assert again.summary["skipped"] == 3 and list(again.summary["metrics"]) == [*TASK_METRICS, "nmse", "psnr", "ssim"]
    for rel, e in again.manifest["files"].items():  # outputs equal to those of `out` (same seeded mask)
        assert e["metrics"] == pytest.approx(res.manifest["files"][rel]["metrics"], rel=1e-12, abs=1e-15)


def test_discovery_pattern_limit_and_layout(good_dir: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    for name in ("x.h5", "a/y.h5", "a/b/z.h5", ".hidden.h5", "a/.x.h5.123.part", "notes.txt"):
        (src / name).write_bytes(b"")
    out = src / "out"  # an output folder inside the input folder is never scanned
    out.mkdir()
    (out / "x.h5").write_bytes(b"")
    items = find_inputs(src, out)
    assert [i.rel for i in items] == ["a/b/z.h5", "a/y.h5", "x.h5"]
    assert items[0].output == out.absolute() / "a" / "b" / "z.h5"
    assert [i.rel for i in find_inputs(src, out, pattern="a/*.h5")] == ["a/y.h5"]
    assert [i.rel for i in find_inputs(src, out, limit=2)] == ["a/b/z.h5", "a/y.h5"]
    # the default takes every raw format (a BART pair once, by its .cfl); comma-separated globs combine
    for name in ("scan.dat", "pair.cfl", "pair.hdr", "v.hdf5"):
        (src / "a" / name).write_bytes(b"")
    assert [i.rel for i in find_inputs(src, out)] == ["a/b/z.h5", "a/pair.cfl", "a/scan.dat", "a/v.hdf5",
                                                       "a/y.h5", "x.h5"]
    assert [i.rel for i in find_inputs(src, out, pattern="*.dat, a/*.h5")] == ["a/scan.dat", "a/y.h5"]
    with pytest.raises(UsageError, match="holds no glob"):
        find_inputs(src, out, pattern=" , ")
    with pytest.raises(UsageError, match="--limit must be >= 1"):
        find_inputs(src, out, limit=0)
    with pytest.raises(InputError, match="input folder not found"):
        find_inputs(tmp_path / "nope", out)
    o = str(tmp_path / "o")
    code, _, err = cli_inline(capsys, "batch", str(good_dir), o, "--pattern", "*.dat")
    assert code == 2 and err == f"recon: no input files match '*.dat' under {good_dir}\n"
    code, _, err = cli_inline(capsys, "batch", str(good_dir), o, "--workers", "0")
    assert code == 2 and err == "recon: --workers must be >= 1, got 0\n"
    code, _, err = cli_inline(capsys, "batch", str(good_dir), o, "--tiers", "task,colour")
    assert code == 2 and err == "recon: unknown tier 'colour' in --tiers; tiers: pixel, feature, task\n"
    with pytest.raises(SystemExit) as exc:
        cli_inline(capsys, "batch", str(good_dir), o, "--method", "nope")
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # --limit: only the first file
    res = run_batch(good_dir, o, limit=1, backend=InlineBackend(), stream=open(os.devnull, "w"))
    assert res.exit_code == 0 and _h5_outputs(tmp_path / "o") == ["sim_000.h5"]


def test_unwritable_output_folder(good_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    r = recon_cli("batch", str(good_dir), str(blocker / "out"))
    assert r.returncode == 2
    assert r.stderr.startswith(f"recon: {blocker / 'out'}: cannot create the output folder")
    assert len(r.stderr.strip().splitlines()) == 1
    assert blocker.read_text() == "not a folder" and sorted(os.listdir(tmp_path)) == ["a_file"]


def test_read_only_output_folder(good_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:  # root ignores folder permissions, not the immutable attribute
        import shutil
        import subprocess

        immutable = shutil.which("chattr") is not None and subprocess.run(
            ["chattr", "+i", str(out)], capture_output=True).returncode == 0
        if not immutable:
            out.chmod(0o755)
            pytest.skip("root ignores folder permissions and chattr +i is not available")
    try:
        r = recon_cli("batch", str(good_dir), str(out))
        assert r.returncode == 2 and "cannot write in the output folder" in r.stderr
        assert os.listdir(out) == []
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(out)], check=True)
        out.chmod(0o755)


def test_disk_full(good_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_file = h5py.File

    def full_disk(name, mode="r", *args, **kwargs):  # writing an output: the disk is full
        if mode == "w" and str(name).endswith(".part"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_file(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", full_disk)
    out = tmp_path / "out"
    res = run_batch(good_dir, out, backend=InlineBackend(), stream=open(os.devnull, "w"))
    assert res.exit_code == 1 and res.summary["failed"] == 3
    for rel, e in res.manifest["files"].items():
        assert e["error"]["type"] == "OutputError"
        assert e["error"]["message"] == f"{out.absolute() / rel}: could not write: No space left on device"
    assert _h5_outputs(out) == [] and _no_temporaries(out)
    assert "No space left on device" in format_summary(res.manifest)
    monkeypatch.undo()

    # the manifest itself cannot be written: the run stops before any work, with a clear error
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    out2 = tmp_path / "out2"
    with pytest.raises(OutputError, match="manifest.json: could not write: No space left on device"):
        run_batch(good_dir, out2, backend=InlineBackend(), stream=open(os.devnull, "w"))
    assert _h5_outputs(out2) == [] and _no_temporaries(out2) and not (out2 / MANIFEST_NAME).exists()


def test_scheduler_without_dask_says_what_to_install(good_dir: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
            "from recon.app.cli import main\n"
            f"sys.exit(main(['batch', {str(good_dir)!r}, {str(tmp_path / 'o')!r}, '--scheduler', 'local']))")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2
    assert "pip install 'recon-mri[distributed]'" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []  # nothing created
    r = recon_cli("batch", str(good_dir), str(tmp_path / "o"), "--scheduler", "nonsense")
    assert r.returncode == 2 and "--scheduler must be 'local' or an address" in r.stderr
    assert os.listdir(tmp_path) == []
