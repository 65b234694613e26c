"""Process-wide runtime settings: how many CPU threads torch uses.

torch's default (one OpenMP thread per logical CPU, threads that spin while waiting) is badly behaved on a
shared machine: measured on this project's 2-core development machine with other jobs running,
``recon run --method l1-wavelet`` on the bundled sample took 60.8-62.7 s with the default against
10.8-13.0 s with one thread or with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep instead of spin).
The policy applied by ``recon run``, ``recon batch`` (per worker) and ``recon demo``:

* threads: an explicit ``--threads N``, else ``OMP_NUM_THREADS`` when the user set it, else the command's
  default: ``min(physical cores, 4)`` for one process, ``max(1, min(physical cores // workers, 4))`` for each
  of ``workers`` batch workers;
* ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it. OpenMP reads it when torch is first imported, so it
  takes effect only when :func:`configure_threads` runs before ``import torch`` (the CLI's case).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from recon.errors import UsageError

#: more intra-op threads than this rarely help the per-slice work of the solvers
MAX_DEFAULT_THREADS = 4


def available_cpus() -> set[int]:
    """The logical CPUs this process may run on (affinity-aware where the OS says)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among ``cpus`` (default: :func:`available_cpus`): logical CPUs that are hyper-thread
    siblings (same ``topology/thread_siblings_list``) count once; without sysfs, every logical CPU counts."""
    cpus = available_cpus() if cpus is None else cpus
    cores: set[str] = set()
    for cpu in cpus:
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(f"cpu{cpu}")
    return max(1, len(cores))


def env_threads(environ: dict[str, str] | None = None) -> int | None:
    """``OMP_NUM_THREADS`` as a positive int (its first entry when it is a list), else None."""
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    try:
        n = int(value.split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def default_threads(workers: int = 1) -> int:
    """``min(physical cores, 4)`` for one process; ``max(1, min(physical cores // workers, 4))`` per worker."""
    return max(1, min(physical_cores() // max(1, int(workers)), MAX_DEFAULT_THREADS))


def resolve_threads(threads: int | None = None, workers: int = 1, default: int | None = None) -> int:
    """The thread count the policy gives: ``threads`` if given, else ``OMP_NUM_THREADS``, else ``default``
    (None: :func:`default_threads` of ``workers``).

    Raises :class:`UsageError` for ``threads < 1``.
    """
    if threads is not None:
        if int(threads) < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        return int(threads)
    from_env = env_threads()
    if from_env is not None:
        return from_env
    return int(default) if default is not None else default_threads(workers)


def configure_threads(threads: int | None = None, workers: int = 1, default: int | None = None) -> int:
    """Apply the policy to this process: ``OMP_WAIT_POLICY=PASSIVE`` (unless set; effective only before torch
    is first imported), then ``torch.set_num_threads``. Returns the number of threads.

    ``threads``: an explicit count (``--threads``); ``workers``: processes sharing this machine (batch);
    ``default``: the command's own default instead of :func:`default_threads`.
    """
    n = resolve_threads(threads, workers, default)
    if "torch" not in sys.modules:  # OpenMP reads it when torch loads it; child processes inherit it
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
