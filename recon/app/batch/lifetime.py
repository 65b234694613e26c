"""Batch worker processes live no longer than their parent, and the output-folder lock covers them (issue 18).

* :func:`worker_init` (the local pool's initializer) asks Linux to send the worker ``SIGTERM`` when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``), exits at once if the parent is already gone, and turns ``SIGTERM`` into
  an exception so that the atomic writer's ``finally`` deletes its ``.part`` temporary: a ``SIGKILL`` or
  ``SIGTERM`` of ``recon batch`` leaves no orphan finishing its file and then waiting forever.
* Each worker holds a shared ``flock`` on ``OUTPUT_DIR/.recon_batch.workers.lock`` for its whole life;
  :func:`check_no_live_workers` (called by the parent once it holds the folder's exclusive lock) refuses to
  start while any worker of an earlier run still holds it, instead of marking that worker's file FAILED.
* A ``SIGKILL`` of ``recon batch`` leaves its manifest saying ``"running"``. :func:`stale_run` tells such a dead
  run from a live one (the folder's exclusive lock is free, or the recorded owner pid is gone on this host):
  the next ``recon batch`` says that it resumes a killed run, and ``recon report`` says the run was killed.
"""
from __future__ import annotations

import contextlib
import os
import socket
import signal
import sys
import ctypes
from pathlib import Path

from recon.errors import UsageError
from recon.app.batch.tasks import run_task

LOCK_NAME = ".recon_batch.lock"  # held exclusively by the running ``recon batch`` (recon.app.batch.runner)
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
            # deferred: fcntl may be missing on this platform or install (its ImportError is handled here)
            import fcntl

            fh = open(lock_path, "a+")
            fcntl.flock(fh, fcntl.LOCK_SH)
            _held.append(fh)


def check_no_live_workers(folder: Path) -> None:
    """:class:`UsageError` while processes of an earlier run still hold ``folder``'s workers lock."""
    try:
        # deferred: fcntl may be missing on this platform or install (its ImportError is handled here)
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
    """:func:`recon.app.batch.tasks.run_task` in a pool worker; a SIGTERM (the parent died or stops the pool)
    unwinds the task, deleting its ``.part`` temporary, then ends the process instead of returning to the
    pool's queue, where an orphan would wait forever."""
    try:
        return run_task(task)
    except WorkerTerminated:
        os._exit(143)


def owner() -> dict[str, object]:
    """Who runs this batch, for the manifest: ``{"pid", "host"}``."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _lock_free(folder: Path) -> bool | None:
    """Whether no process holds ``folder``'s exclusive batch lock (None: cannot tell). Opens the lock file
    read-only and never creates it; tries a shared lock, which a running batch's exclusive lock refuses."""
    try:
        # deferred: fcntl may be missing on this platform or install (its ImportError is handled here)
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return True  # a running batch creates it before anything else
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the lock
    return True


def _pid_gone(manifest: dict) -> bool | None:
    """Whether the manifest's owner pid no longer exists (None: no pid, or another host's)."""
    pid, host = manifest.get("pid"), manifest.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def stale_run(folder: str | Path, manifest: dict | None) -> str | None:
    """Why ``manifest`` (of the run in ``folder``) says ``"running"`` although that run is dead, or None when it
    does not say so or the run may still be alive. A run is dead when its output lock is free (the OS releases
    it when the process dies, however it died) or, without locks, when its owner pid is gone."""
    if not manifest or manifest.get("state") != "running":
        return None
    free = _lock_free(Path(folder))
    gone = _pid_gone(manifest)
    if free is False:
        return None
    if free is None and not gone:
        return None
    who = f"pid {manifest['pid']}" if manifest.get("pid") is not None else "its process"
    started = f", started {manifest['started']}" if manifest.get("started") else ""
    return (f"the run in this folder ({who}{started}) was killed before it finished: its manifest still says "
            "'running' but its process is gone")
