"""issue 17 item 5 / issue 18 defect 14: the same command gives bit-identical outputs whatever the load.

The default thread count no longer follows the load (recon.runtime); the load only picks OpenMP's wait
policy, which changes speed, not results. ``recon run`` without ``--threads`` is run idle and beside a CPU
burner process and the outputs must be ``np.array_equal``, with the thread count recorded in both.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from recon.data import sample_path

ROOT = Path(__file__).resolve().parents[1]
BURN = "import os\nwhile True:\n    sum(i * i for i in range(10000))\n"


def _run(out: Path) -> tuple[np.ndarray, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "recon", "run", str(sample_path()), str(out), "--method", "sense"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        return f["reconstruction"][()], int(f.attrs["threads"])


def test_run_is_bit_identical_idle_and_under_load(tmp_path: Path) -> None:
    idle, threads_idle = _run(tmp_path / "idle.h5")
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(max(2, os.cpu_count() or 1))]
    try:
        busy, threads_busy = _run(tmp_path / "busy.h5")
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert threads_idle == threads_busy >= 1
    assert np.array_equal(idle, busy)
