"""Batch worker processes live no longer than their parent, and the output-folder lock covers them (issue 18).

* :func:`worker_init` (the local pool's initializer) asks Linux to send the worker ``SIGTERM`` when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``), exits at once if the parent is already gone, and turns ``SIGTERM`` into
  an exception so that the atomic writer's ``finally`` deletes its ``.part`` temporary: a ``SIGKILL`` or
  ``SIGTERM`` of ``recon batch`` leaves no orphan finishing its file and then waiting forever.
* Each worker holds a shared ``flock`` on ``OUTPUT_DIR/.recon_batch.workers.lock`` for its whole life;
  :func:`check_no_live_workers` (called by the parent once it holds the folder's exclusive lock) refuses to
  start while any worker of an earlier run still holds it, instead of marking that worker's file FAILED.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from recon.errors import UsageError

WORKERS_LOCK_NAME = ".recon_batch.workers.lock"
_PR_SET_PDEATHSIG = 1
_held: list = []  # the worker's lock file, kept open for the process's life


class WorkerTerminated(SystemExit):
    """SIGTERM in a worker: unwinds (deleting temporaries) and ends the process."""


def _on_term(signum, frame) -> None:  # noqa: ARG001
    raise WorkerTerminated(143)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Linux: deliver ``sig`` to this process when its parent dies. Returns whether it could be set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover
        return False


def worker_init(parent_pid: int, lock_path: str | None = None) -> None:
    """Pool initializer: die with the parent, clean up on SIGTERM, hold the shared workers lock."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops the pool
    die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(143)
    if lock_path:
        with contextlib.suppress(ImportError, OSError):
            import fcntl

            fh = open(lock_path, "a+")
            fcntl.flock(fh, fcntl.LOCK_SH)
            _held.append(fh)


def check_no_live_workers(folder: Path) -> None:
    """:class:`UsageError` while processes of an earlier run still hold ``folder``'s workers lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fh = open(folder / WORKERS_LOCK_NAME, "a+")
    except OSError:
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError("worker processes of an earlier recon batch are still writing to this output "
                             "folder; wait for them to stop", folder) from None
        fcntl.flock(fh, fcntl.LOCK_UN)


def terminate_processes(processes) -> None:
    """SIGTERM then (after 5 s) SIGKILL each still-running ``multiprocessing`` process, and reap them."""
    procs = [p for p in processes if p.is_alive()]
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            with contextlib.suppress(Exception):
                p.kill()
                p.join(1)


def run_guarded(task):
    """:func:`recon.batch.tasks.run_task` in a pool worker; a SIGTERM (the parent died or stops the pool)
    unwinds the task, deleting its ``.part`` temporary, then ends the process instead of returning to the
    pool's queue, where an orphan would wait forever."""
    from recon.batch.tasks import run_task

    try:
        return run_task(task)
    except WorkerTerminated:
        os._exit(143)
