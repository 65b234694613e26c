"""``recon batch --scheduler``: a Dask LocalCluster on loopback gives byte-identical outputs to the local
process pool, and a batch survives one Dask worker being killed mid-run (Dask reschedules its task)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from recon.app.batch import LocalPoolBackend, run_batch  # noqa: E402
from recon.app.batch.manifest import MANIFEST_NAME  # noqa: E402
from recon.simulate import load_colin27, write_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dask") / "in"
    write_dataset(folder, load_colin27(range(40, 40 + 12 * FILES), shape=(32, 32)), slices_per_file=12,
                  num_coils=4, snr=30.0, seed=5, readout_oversampling=2)
    return folder


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory) -> Path:
    """The local process pool's outputs (2 workers, 1 torch thread each on this 2-core machine)."""
    out = tmp_path_factory.mktemp("dask_ref") / "out"
    res = run_batch(dataset, out, backend=LocalPoolBackend(2), stream=open(os.devnull, "w"))
    assert res.exit_code == 0 and res.summary["ok"] == FILES
    return out


def _same_outputs(out: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.glob("*.h5"))
    assert len(names) == FILES and sorted(p.name for p in out.glob("*.h5")) == names
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_local_cluster_matches_local_pool(dataset: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "recon", "batch", str(dataset), str(out), "--scheduler", "local",
                        "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["backend"]["name"] == "dask" and m["backend"]["workers"] == 2
    assert m["backend"]["scheduler"].startswith("local (tcp://127.0.0.1:")
    assert m["summary"]["ok"] == FILES
    assert len({e["worker"] for e in m["files"].values()}) == 2  # both workers took files
    _same_outputs(out, reference)


def test_killed_worker_is_retried(dataset: Path, reference: Path, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        cmd = [sys.executable, "-m", "recon", "batch", str(dataset), str(out), "--scheduler",
               cluster.scheduler_address]
        with open(tmp_path / "batch.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
            victim = None
            deadline = time.monotonic() + 120
            while victim is None and time.monotonic() < deadline and proc.poll() is None:
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if len(busy) == 2:  # both workers are reconstructing: kill one in the middle of its task
                    addr, keys = sorted(busy.items())[0]
                    pid = client.run(os.getpid, workers=[addr])[addr]
                    os.kill(pid, signal.SIGKILL)
                    victim = (pid, [str(k) for k in keys])
                time.sleep(0.005)
            assert victim is not None, "the batch finished before a worker could be killed"
            assert proc.wait(timeout=180) == 0, (tmp_path / "batch.log").read_text()
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["summary"]["ok"] == FILES and m["summary"]["failed"] == 0
    killed_pid, killed_keys = victim
    rels = sorted(m["files"])
    for key in killed_keys:  # the task that was running on the killed worker was finished by another one
        entry = m["files"][rels[int(key.rsplit("-", 1)[1])]]
        assert entry["status"] == "ok" and not entry["worker"].endswith(f":{killed_pid}")
    assert not list(out.glob(".*.part"))
    assert all(e["peak_rss_mb"] > 0 for e in m["files"].values())
    _same_outputs(out, reference)
