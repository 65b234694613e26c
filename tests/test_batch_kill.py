"""SIGKILL a running ``recon batch`` (the whole process group, so its pool workers die too), run it again:
it finishes, skips the outputs that were complete, redoes the rest, and every output is byte-identical to an
uninterrupted run's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recon.app.batch import LocalPoolBackend, run_batch
from recon.app.batch.manifest import MANIFEST_NAME
from recon.simulate import load_colin27, write_dataset

ROOT = Path(__file__).resolve().parents[1]
FILES = 8


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def wait_for_finished(manifest: Path, proc: subprocess.Popen, count: int = 1, timeout: float = 90) -> dict:
    """Poll the manifest (written atomically) until ``count`` files are done; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _read_manifest(manifest)
        if m is not None and sum(e["status"] == "ok" for e in m["files"].values()) >= count:
            return m
        if proc.poll() is not None:
            pytest.fail(f"batch ended (rc {proc.returncode}) before {count} file(s) were reported")
        time.sleep(0.002)
    pytest.fail("no file finished in time")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """8 volumes of 12 slices, 4 coils, 64 x 32 k-space: each takes a worker about 0.1-0.2 s."""
    folder = tmp_path_factory.mktemp("kill") / "in"
    write_dataset(folder, load_colin27(range(40, 40 + 12 * FILES), shape=(32, 32)), slices_per_file=12,
                  num_coils=4, snr=30.0, seed=3, readout_oversampling=2)
    return folder


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory) -> Path:
    """An uninterrupted run with one worker."""
    out = tmp_path_factory.mktemp("kill_ref") / "out"
    res = run_batch(dataset, out, backend=LocalPoolBackend(1), stream=open(os.devnull, "w"))
    assert res.exit_code == 0 and res.summary["ok"] == FILES
    return out


def _same_outputs(out: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.glob("*.h5"))
    assert sorted(p.name for p in out.glob("*.h5")) == names and len(names) == FILES
    for name in names:  # byte-identical files (HDF5 without timestamps), so identical arrays and attributes
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def pool_workers(pid: int) -> list[int]:
    """Child processes of ``pid`` that are multiprocessing pool workers (not its resource tracker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the pool worker")
def test_killed_pool_worker_is_replaced(dataset: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "recon", "batch", str(dataset), str(out), "--workers", "1"]
    with open(tmp_path / "batch.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
        wait_for_finished(out / MANIFEST_NAME, proc)
        workers = pool_workers(proc.pid)
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)  # only the worker: the batch rebuilds its pool and retries
        assert proc.wait(timeout=120) == 0, (tmp_path / "batch.log").read_text()
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["summary"]["ok"] == FILES and m["summary"]["failed"] == 0
    assert len({e["worker"] for e in m["files"].values()}) == 2  # the first worker, then its replacement
    assert not list(out.glob(".*.part"))  # the killed worker's temporary is gone
    _same_outputs(out, reference)


def test_sigkill_mid_run_then_resume(dataset: Path, reference: Path, tmp_path: Path) -> None:

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "recon", "batch", str(dataset), str(out), "--workers", "1"]
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_for_finished(out / MANIFEST_NAME, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the batch process and its pool worker
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = _read_manifest(out / MANIFEST_NAME)
    assert killed is not None and killed["state"] == "running"  # a crash keeps the last complete manifest
    complete = sorted(p.name for p in out.glob("*.h5"))
    assert 1 <= len(complete) < FILES, "the kill came too late to test anything"
    assert sum(e["status"] == "ok" for e in killed["files"].values()) <= len(complete)
    assert killed["pid"] == proc.pid

    # the stale "running" manifest is recognised: recon report says the run was killed ...
    report = subprocess.run([sys.executable, "-m", "recon", "report", str(out), "--tiers", "pixel"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stderr
    assert "was killed before it finished" in report.stderr and str(proc.pid) in report.stderr, report.stderr
    assert "killed before it finished" in (out / "report.html").read_text()

    # ... and the next batch says it resumes a killed run, and does
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(complete)} finished" in rerun.stderr
    assert f"(pid {proc.pid}, started {killed['started']}) was killed" in rerun.stderr, rerun.stderr
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["state"] == "finished"
    assert m["previous_run"]["state"] == "killed" and m["previous_run"]["pid"] == proc.pid
    assert m["summary"]["skipped"] == len(complete) and m["summary"]["ok"] == FILES - len(complete)
    assert {rel for rel, e in m["files"].items() if e["status"] == "skipped"} == set(complete)
    assert not list(out.glob(".*.part"))  # the killed run's temporary was cleaned up
    _same_outputs(out, reference)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock")
def test_running_manifest_is_stale_only_when_its_process_is_gone(tmp_path: Path) -> None:
    """A live run (another process holds the output lock) is not called killed; a free lock, or a gone pid,
    is."""
    from recon.app.batch.lifetime import LOCK_NAME, owner, stale_run

    m = {"state": "running", "started": "2026-01-01T00:00:00+00:00", "files": {}, **owner()}
    assert stale_run(tmp_path, {**m, "state": "finished"}) is None
    assert "was killed" in stale_run(tmp_path, m)  # no lock file at all: nobody runs here
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(fh, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(tmp_path / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert stale_run(tmp_path, {**m, "pid": holder.pid}) is None  # alive: still running
    finally:
        holder.kill()
        holder.wait()
    why = stale_run(tmp_path, {**m, "pid": holder.pid})
    assert why is not None and f"pid {holder.pid}" in why
    assert (tmp_path / LOCK_NAME).exists() and not list(tmp_path.glob("manifest.json"))
