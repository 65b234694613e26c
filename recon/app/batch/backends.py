"""Execution backends: where :func:`recon.app.batch.tasks.run_task` runs. One small interface, three backends.

* :class:`LocalPoolBackend` (default): ``workers`` local processes started with the ``spawn`` method (no
  forked torch/OpenMP state), each task setting torch to ``recon.app.runtime``'s per-worker threads
  (``OMP_NUM_THREADS`` if set, else physical cores // workers, at most 4). A worker that dies (killed, out
  of memory, a segfault in a library) breaks the pool; the pool is rebuilt and the tasks that
  were in flight are retried (:data:`MAX_ATTEMPTS` times in all) before they are recorded as failed.
* :class:`DaskBackend` (``--scheduler local`` or ``tcp://host:port``): the same tasks on Dask distributed.
  ``local`` starts a ``LocalCluster`` of ``workers`` single-threaded worker processes on 127.0.0.1. Dask
  reschedules the tasks of a worker that dies (up to its ``allowed-failures``) and retries tasks that raise.
* :class:`InlineBackend`: in this process, one file after the other (for the Python API and tests).

A backend is a context manager; :meth:`Backend.run` yields each task's result dict as soon as it is done
(in completion order).
"""
from __future__ import annotations

import os
import logging
import multiprocessing
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from recon.app.batch.tasks import FileTask, run_task
from recon.errors import require, UsageError
from recon.app.batch.lifetime import run_guarded, terminate_processes, worker_init
from recon.app.runtime import resolve_threads
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

#: how many times a local task is started before a dying worker counts as that file's failure
MAX_ATTEMPTS = 3
#: Dask retries of a task that raised (run_task itself never raises for a bad file)
DASK_RETRIES = 2


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _worker_died(task: FileTask, why: str) -> dict[str, Any]:
    return {"rel": task.rel, "status": "failed", "seconds": 0.0, "slices": 0, "shape": None, "metrics": None,
            "worker": None, "error": {"type": "WorkerDied", "message": f"{task.input}: {why}"}}


class Backend:
    """Runs :class:`FileTask` s and yields their results as they finish."""

    name = "backend"
    workers = 1
    started = False

    def __enter__(self) -> "Backend":
        self.start()
        self.started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
        self.started = False

    def start(self) -> None:
        """Acquire the workers (processes, a cluster connection)."""

    def close(self) -> None:
        """Release them; tasks not yet finished are abandoned."""

    def threads_per_task(self) -> int | None:
        """torch threads each task should use (None: leave the worker's own setting)."""
        return None

    def run(self, tasks: Iterable[FileTask]) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the backend."""
        return {"name": self.name, "workers": self.workers, "threads_per_worker": self.threads_per_task()}


class InlineBackend(Backend):
    """Runs every task in the calling process, in order."""

    name = "inline"

    def run(self, tasks: Iterable[FileTask]) -> Iterator[dict[str, Any]]:
        for task in tasks:
            yield run_task(task)


class LocalPoolBackend(Backend):
    """A pool of ``workers`` spawned processes on this machine (at most ``workers`` tasks in flight)."""

    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        self.workers = int(workers) if workers else available_cores()
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        self.threads = resolve_threads(threads or None, self.workers)  # recon.app.runtime's policy
        self._pool = None
        self.lock_path: str | None = None  # OUTPUT_DIR's workers lock (recon.app.batch.lifetime), set by the runner

    def threads_per_task(self) -> int | None:
        return self.threads

    def _new_pool(self):
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker_init, initargs=(os.getpid(), self.lock_path))

    def _kill_pool(self) -> None:
        """Stop the workers now (their SIGTERM handler deletes .part files): on an error or a signal."""
        if self._pool is not None:
            terminate_processes(list(getattr(self._pool, "_processes", {}).values()))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def start(self) -> None:
        self._pool = self._new_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, tasks: Iterable[FileTask]) -> Iterator[dict[str, Any]]:
        if self._pool is None:
            self.start()
        try:
            yield from self._run(tasks)
        except BaseException:  # SIGTERM/Ctrl-C/error of the parent: the workers stop with it
            self._kill_pool()
            raise

    def _run(self, tasks: Iterable[FileTask]) -> Iterator[dict[str, Any]]:
        pending = deque(tasks)
        attempts: dict[str, int] = {}
        inflight: dict[Any, FileTask] = {}
        while pending or inflight:
            while pending and len(inflight) < self.workers:
                task = pending.popleft()
                attempts[task.rel] = attempts.get(task.rel, 0) + 1
                inflight[self._pool.submit(run_guarded, task)] = task
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = inflight.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken = True
                    if attempts[task.rel] >= MAX_ATTEMPTS:
                        yield _worker_died(task, f"a worker process died while reconstructing it "
                                                 f"({attempts[task.rel]} attempts)")
                    else:
                        pending.appendleft(task)
                except Exception as exc:  # e.g. a task that cannot be pickled: that file fails
                    yield _worker_died(task, f"{type(exc).__name__}: {exc}")
            if broken:  # every other task in flight died with the pool: retry them on a new one
                for fut, task in list(inflight.items()):
                    fut.cancel()
                    pending.appendleft(task)
                inflight.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()


class DaskBackend(Backend):
    """Dask distributed: ``scheduler="local"`` (a LocalCluster on 127.0.0.1) or a scheduler address."""

    name = "dask"

    def __init__(self, scheduler: str, workers: int | None = None, threads: int | None = None):
        require("distributed", "distributed", "recon batch --scheduler")  # say what to install, before any work
        self.scheduler = scheduler
        self.local = scheduler == "local"
        if not self.local and "://" not in scheduler:
            raise UsageError(f"--scheduler must be 'local' or an address like tcp://host:8786, got {scheduler!r}")
        self.workers = int(workers) if workers else available_cores()
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        if threads:
            self.threads: int | None = int(threads)
        else:  # a remote cluster's cores are unknown here: its workers keep their own torch setting
            self.threads = resolve_threads(None, self.workers) if self.local else None
        self._cluster = None
        self.client = None

    def threads_per_task(self) -> int | None:
        return self.threads

    def start(self) -> None:
        # deferred: optional extra recon-mri[distributed] (Dask), a clear error where it is missing
        from distributed import Client, LocalCluster

        if self.local:
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"cannot connect to the Dask scheduler {self.scheduler}: {exc}") from None
            self.workers = len(self.client.scheduler_info().get("workers", {})) or self.workers

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["scheduler"] = self.scheduler if not self.local else f"local ({self.client.scheduler.address})" \
            if self.client is not None else "local"
        return out

    def run(self, tasks: Iterable[FileTask]) -> Iterator[dict[str, Any]]:
        # deferred: optional extra recon-mri[distributed] (Dask), a clear error where it is missing
        from distributed import as_completed

        if self.client is None:
            self.start()
        run_id = uuid.uuid4().hex[:8]
        futures = {}
        for i, task in enumerate(tasks):
            fut = self.client.submit(run_task, task, key=f"recon-batch-{run_id}-{i}", pure=False,
                                     retries=DASK_RETRIES)
            futures[fut.key] = (fut, task)
        try:
            for fut in as_completed([f for f, _ in futures.values()]):
                task = futures[fut.key][1]
                try:
                    yield fut.result()
                except Exception as exc:  # KilledWorker after repeated worker deaths, or a task error
                    yield _worker_died(task, f"{type(exc).__name__}: {exc}")
                fut.release()
        finally:
            for fut, _ in futures.values():
                if not fut.done():
                    fut.cancel()


def make_backend(workers: int | None = None, scheduler: str | None = None, threads: int | None = None) -> Backend:
    """The backend the CLI options ask for: Dask when ``scheduler`` is given, else the local pool."""
    if scheduler:
        return DaskBackend(scheduler, workers, threads)
    return LocalPoolBackend(workers, threads)
