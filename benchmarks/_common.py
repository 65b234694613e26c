"""Helpers shared by the benchmark scripts: timing, peak memory, BART files and BART subprocesses.

* :func:`best_time` / :func:`timeit`: minimum wall (or CPU) time over repeats after a warm-up.
* :func:`write_cfl` / :func:`read_cfl`: BART's ``.cfl``/``.hdr`` pair of a complex array as it is (no
  reordering; :mod:`recon.io.bart` does the k-space layout mapping).
* :func:`run_measured`: run a command, return its wall time and the peak RSS of that one child process
  (``ru_maxrss`` from ``os.wait4``, so other children do not mix in).
* :class:`PeakRSS`: peak resident memory of this process during a block, as an increase over the resident
  memory at its start (Linux ``/proc/self/status`` ``VmHWM``, reset through ``/proc/self/clear_refs``); it sees
  numpy's, torch's and every other allocator's memory, which ``tracemalloc`` does not.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """``(seconds, last output)``: minimum wall time of ``fn()`` over ``repeat`` runs after one warm-up run."""
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> float:
    """Minimum time of ``fn()`` over ``repeats`` runs, in ms (wall clock unless ``clock`` says otherwise)."""
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best * 1e3


def write_cfl(base: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (complex, any shape = BART dims) as ``base.cfl`` + ``base.hdr`` (column-major)."""
    base = Path(base)
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in array.shape) + "\n")
    np.asfortranarray(array.astype(np.complex64)).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: str | Path) -> np.ndarray:
    """Read ``base.cfl`` + ``base.hdr`` as a complex64 array of the header's dims (trailing 1s kept)."""
    base = Path(base)
    dims = [int(d) for d in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64).reshape(dims, order="F")


@dataclass
class ProcResult:
    """One finished subprocess: wall ``seconds``, peak resident memory ``max_rss_mb`` (MiB), exit code, output."""

    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, cmd: Sequence[str]) -> "ProcResult":
        if self.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({self.returncode}): {self.stderr.strip()[-500:]}")
        return self


def run_measured(cmd: Sequence[str | Path], env: dict[str, str] | None = None, cwd: str | Path | None = None) -> ProcResult:
    """Run ``cmd`` (no shell) and measure it: wall time and ``ru_maxrss`` of this child alone."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ProcResult(seconds, usage.ru_maxrss / 1024.0, proc.returncode, out.read(), err.read())


def bart_available() -> bool:
    return shutil.which("bart") is not None


def bart_version() -> str:
    return subprocess.run(["bart", "version"], capture_output=True, text=True).stdout.strip()


def run_bart(*args: str | Path) -> ProcResult:
    """``bart ARGS...`` measured by :func:`run_measured`; ``RuntimeError`` with BART's message if it fails."""
    cmd = ["bart", *[str(a) for a in args]]
    return run_measured(cmd).check(cmd)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


class PeakRSS:
    """Context manager: ``mb`` = peak RSS during the block minus RSS at its start, in MiB (Linux only; else NaN)."""

    def __init__(self) -> None:
        self.mb = float("nan")
        self._start = 0

    def __enter__(self) -> "PeakRSS":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self._start = _status_kib("VmRSS")
        except OSError:
            self._start = -1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._start >= 0:
            self.mb = max(_status_kib("VmHWM") - self._start, 0) / 1024.0
