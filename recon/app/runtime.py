"""Process-wide runtime settings: how many CPU threads torch uses.

torch's default (one OpenMP thread per logical CPU, threads that spin while waiting) is badly behaved on a
shared machine: measured on this project's 2-core development machine with other torch jobs running,
``recon run --method l1-wavelet`` on the bundled sample took 60.8-62.7 s with the default against
10.5-13.0 s with one thread. On an idle machine, though, the spinning threads are what make two threads fast:
``OMP_WAIT_POLICY=PASSIVE`` (sleeping waits) cost 1.3-2x there (L1-wavelet per slice, sample 0.31-0.33 s ->
0.40-0.58 s, Shepp-Logan 0.35-0.59 s -> 0.77-0.79 s; ``benchmarks/classical.py --problems sample shepp-logan
--masks 1d4 --no-bart --sigpy none``), and with 4 busy processes on the 2 cores one thread (1.69 s) beat
two passive (2.57 s) and two spinning (3.46 s) threads. Results, though, must not depend on the load: torch splits reductions by thread count, so 1 and 2 threads
give different bits (up to 1.2e-5 relative), and a thread count read from the load made the same command
differ idle and busy (issue 17 item 5 / issue 18 defect 14). So the default thread count is fixed by the
machine alone, and the load only chooses OpenMP's wait policy, which changes speed but never results
(``tests/test_reproducible.py`` checks bit-identity idle and beside a CPU burner). Applied by ``recon run``,
``recon batch`` (per worker) and ``recon demo``:

* threads: an explicit ``--threads N``, else ``OMP_NUM_THREADS`` when the user set it, else the command's
  default: ``min(physical cores, 4)`` for one process, ``max(1, min(physical cores // workers, 4))`` for each
  of ``workers`` batch workers, whatever the load;
* ``OMP_WAIT_POLICY`` is the user's when set; else, with more than one thread and fewer free cores than
  threads at start (free cores = physical cores minus runnable threads of other processes, Linux
  ``/proc/loadavg``), ``PASSIVE`` (sleeping waits, no spinning against the other work), else OpenMP's
  default. It is set only before torch is first imported (OpenMP reads it once).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
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


def runnable_others(path: Path = Path("/proc/loadavg"), reads: int = 5, interval: float = 0.002) -> int | None:
    """Runnable tasks (threads) of other processes right now: the 4th field of Linux's ``/proc/loadavg``
    (``running/total``) minus this reading process, median of ``reads`` reads ``interval`` s apart; None
    where the file does not exist."""
    counts = []
    for i in range(max(1, int(reads))):
        try:
            counts.append(int(path.read_text().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < reads:
            time.sleep(interval)
    return max(0, int(statistics.median(counts)))


def load_average() -> float:
    """Other CPU work now: :func:`runnable_others` where Linux tells, else the 1-minute load average (which
    lags: it still counts a command that has just finished), else 0."""
    now = runnable_others()
    if now is not None:
        return float(now)
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return 0.0


def free_cores(cores: int, load: float | None = None) -> int:
    """Cores not busy with other work: ``cores - round(load)`` (``load``: default :func:`load_average`),
    at least 1."""
    load = load_average() if load is None else float(load)
    return max(1, int(cores) - int(round(load)))


def default_threads(workers: int = 1, load: float | None = None) -> int:
    """``min(physical cores, 4)`` for one process; ``max(1, min(physical cores // workers, 4))`` per worker.

    ``load`` is accepted for compatibility and ignored: the default never follows the load, so results are
    the same whatever else runs (see the module docstring)."""
    del load
    w = max(1, int(workers))
    return max(1, min(physical_cores() // w, MAX_DEFAULT_THREADS))


def wait_policy(threads: int, workers: int = 1, load: float | None = None) -> str | None:
    """The OpenMP wait policy for ``threads`` per process among ``workers``: ``"PASSIVE"`` when the cores
    free at start cannot hold them all spinning, else None (OpenMP's default). Speed only, never results."""
    if int(threads) <= 1:
        return None
    free = free_cores(physical_cores(), load)
    return "PASSIVE" if free < int(threads) * max(1, int(workers)) else None


def apply_wait_policy(threads: int, workers: int = 1) -> str | None:
    """Set ``OMP_WAIT_POLICY`` from :func:`wait_policy` unless the user set it or torch is already imported
    (OpenMP reads it once). Returns the policy in effect (None: OpenMP's default)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"]
    if "torch" in sys.modules:
        return None
    policy = wait_policy(threads, workers)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy
    return policy


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
    """Apply the policy to this process: ``torch.set_num_threads`` with :func:`resolve_threads`'s count.
    Returns the number of threads.

    ``threads``: an explicit count (``--threads``); ``workers``: processes sharing this machine (batch);
    ``default``: the command's own default instead of :func:`default_threads`.
    """
    n = resolve_threads(threads, workers, default)
    apply_wait_policy(n, workers)
    # deferred: loads torch, which importing recon.app.runtime does not
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
