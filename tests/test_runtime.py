"""recon.app.runtime: the torch thread policy of recon run / batch / demo (explicit > OMP_NUM_THREADS > default)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recon.app import runtime
from recon.errors import UsageError


@pytest.fixture
def keep_torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fake_sysfs(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        d = root / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(text + "\n")
    return root


def test_physical_cores_counts_hyperthread_siblings_once(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert runtime.physical_cores({0, 1, 2, 3}, sysfs) == 2
    assert runtime.physical_cores({0, 2}, sysfs) == 1  # affinity to one core's two threads
    assert runtime.physical_cores({0, 1, 5}, sysfs) == 3  # no sysfs entry for cpu5: counted on its own


def test_env_threads_parsing() -> None:
    assert runtime.env_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert runtime.env_threads({"OMP_NUM_THREADS": "2,1"}) == 2  # nested-parallelism list: the outer level
    for bad in ("", "0", "-1", "many"):
        assert runtime.env_threads({"OMP_NUM_THREADS": bad}) is None
    assert runtime.env_threads({}) is None


@pytest.mark.parametrize("cores, workers, load, expected", [
    (2, 1, 0.0, 2), (8, 1, 0.3, 4), (64, 1, 0.0, 4), (8, 4, 0.0, 2), (2, 4, 0.0, 1), (1, 1, 0.0, 1),
    (2, 1, 0.6, 2), (2, 1, 4.0, 2), (8, 1, 5.2, 4), (8, 2, 4.0, 4), (8, 1, 100.0, 4)])
def test_default_threads(monkeypatch, cores: int, workers: int, load: float, expected: int) -> None:
    monkeypatch.setattr(runtime, "physical_cores", lambda *a, **k: cores)
    assert runtime.default_threads(workers, load=load) == expected
    monkeypatch.setattr(runtime, "load_average", lambda: load)  # the load never changes the count (issue 18)
    assert runtime.default_threads(workers) == expected


@pytest.mark.parametrize("cores, threads, workers, load, expected", [
    (2, 2, 1, 0.0, None), (2, 2, 1, 1.0, "PASSIVE"), (2, 1, 1, 9.0, None), (8, 4, 2, 0.0, None),
    (8, 4, 2, 1.0, "PASSIVE"), (8, 2, 1, 5.0, None)])
def test_wait_policy_follows_the_load(monkeypatch, cores, threads, workers, load, expected) -> None:
    monkeypatch.setattr(runtime, "physical_cores", lambda *a, **k: cores)
    assert runtime.wait_policy(threads, workers, load=load) == expected


def test_runnable_others_reads_proc_loadavg(tmp_path) -> None:
    f = tmp_path / "loadavg"
    f.write_text("1.63 2.43 2.86 4/84 31303\n")  # 4 runnable, one of them the reader
    assert runtime.runnable_others(f, reads=3, interval=0.0) == 3
    f.write_text("0.00 0.01 0.05 1/80 1\n")
    assert runtime.runnable_others(f, reads=1) == 0
    assert runtime.runnable_others(tmp_path / "missing") is None
    f.write_text("garbage")
    assert runtime.runnable_others(f) is None


def test_resolve_order_explicit_env_default(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "physical_cores", lambda *a, **k: 8)
    monkeypatch.setattr(runtime, "load_average", lambda: 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert runtime.resolve_threads() == 4
    assert runtime.resolve_threads(workers=2) == 4 and runtime.resolve_threads(workers=8) == 1
    assert runtime.resolve_threads(default=1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.resolve_threads(default=1) == 3 and runtime.resolve_threads(workers=8) == 3
    assert runtime.resolve_threads(2) == 2
    with pytest.raises(UsageError, match="--threads must be >= 1, got 0"):
        runtime.resolve_threads(0)


def _fresh_python(code: str, env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_configure_threads_sets_threads_and_keeps_the_wait_policy() -> None:
    code = ("import os, sys; from recon.app.runtime import configure_threads; assert 'torch' not in sys.modules; "
            "n = configure_threads(None); import torch; "
            "print(n, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY', 'unset'))")
    assert _fresh_python(code, {"OMP_NUM_THREADS": "1"}) == ["1", "1", "unset"]
    # the user's own wait policy is kept; an explicit count wins over OMP_NUM_THREADS
    code = code.replace("configure_threads(None)", "configure_threads(2)")
    assert _fresh_python(code, {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}) == ["2", "2", "ACTIVE"]


def test_local_pool_threads_follow_the_policy(monkeypatch) -> None:
    from recon.app.batch.backends import LocalPoolBackend, make_backend

    monkeypatch.setattr(runtime, "physical_cores", lambda *a, **k: 8)
    monkeypatch.setattr(runtime, "load_average", lambda: 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert LocalPoolBackend(workers=2).threads_per_task() == 4
    assert LocalPoolBackend(workers=3).threads_per_task() == 2
    assert make_backend(2, None, 1).threads_per_task() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert LocalPoolBackend(workers=2).threads_per_task() == 3


def test_batch_cli_threads_per_worker(monkeypatch, keep_torch_threads) -> None:
    import torch

    from recon.app.cli.batch import _threads_per_worker

    monkeypatch.setattr(runtime, "physical_cores", lambda *a, **k: 4)
    monkeypatch.setattr(runtime, "load_average", lambda: 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = argparse.Namespace(scheduler=None, threads=None, workers=2)
    assert _threads_per_worker(args) == 2 and torch.get_num_threads() == 2
    assert _threads_per_worker(argparse.Namespace(scheduler=None, threads=1, workers=2)) == 1
    assert torch.get_num_threads() == 1
    remote = argparse.Namespace(scheduler="tcp://h:8786", threads=None, workers=None)
    assert _threads_per_worker(remote) is None  # a remote cluster's workers keep their own setting


def test_run_threads_below_one_is_exit_2(tmp_path: Path) -> None:
    from recon.data import sample_path

    out = tmp_path / "x.h5"
    proc = subprocess.run([sys.executable, "-m", "recon", "run", str(sample_path()), str(out), "--threads", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "recon: --threads must be >= 1, got 0\n"
    assert not out.exists()
