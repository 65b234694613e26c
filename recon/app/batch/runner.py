"""``run_batch``: reconstruct every input of a folder into an output folder, resumably.

Order of work: find the inputs (:mod:`recon.app.batch.discovery`) -> create ``OUTPUT_DIR`` and take its lock (two
runs never write one folder) -> remove stale ``.*.part`` temporaries of a killed run -> sort each input into
*skip* (finished output with matching attributes, :mod:`recon.app.batch.resume`), *fail* (an output exists with
other settings) or *run* -> write the manifest (so an unwritable folder fails before any work) -> run the tasks
on the backend, updating the manifest as each finishes -> final manifest and summary table.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from recon.app.batch.backends import Backend, make_backend
from recon.app.batch.discovery import DEFAULT_PATTERN, find_inputs
from recon.app.batch.lifetime import LOCK_NAME, WORKERS_LOCK_NAME, check_no_live_workers, owner
from recon.app.batch.manifest import MANIFEST_NAME, Manifest, load_manifest, software_versions
from recon.app.batch.progress import BatchProgress
from recon.app.batch.resume import FINISHED, MISMATCH, MISSING, output_state
from recon.app.batch.tasks import FileTask, score_against_input, score_files
from recon.errors import OutputError, UsageError
from recon.io.validate import WRITE_TEST_PREFIX
from recon.metrics.tiers import TIER_NAMES, parse_tiers, tier_metric_names
from recon import __version__

#: metric tiers ``recon batch --tiers`` accepts (pixel: NMSE/PSNR/SSIM, feature, task)
SUPPORTED_TIERS = TIER_NAMES


@dataclass
class BatchResult:
    """What :func:`run_batch` returns: the manifest's path and content, and the exit code (0, or 1 when any
    file failed)."""

    manifest_path: Path
    manifest: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.manifest["summary"]

    @property
    def exit_code(self) -> int:
        return 1 if self.summary["failed"] else 0


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.recon_batch.lock`` (released by the OS if the process dies)."""
    try:
        # deferred: fcntl may be missing on this platform or install (its ImportError is handled here)
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path = folder / LOCK_NAME
    try:
        fh = open(path, "a+")
    except OSError as exc:
        raise OutputError(f"cannot write in the output folder: {exc.strerror or exc}", folder) from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError("another recon batch is writing to this output folder", folder) from None
        yield
    finally:
        fh.close()


def _remove_stale_parts(output: Path) -> None:
    """Delete ``.NAME.*.part`` temporaries left beside ``output`` by a killed run (and the folder's
    ``.recon-write-test.*.part`` files of :func:`recon.io.validate.check_folder_writable` where the OS has no
    unnamed temporary files)."""
    if output.parent.is_dir():
        for pattern in (f".{output.name}.*.part", f"{WRITE_TEST_PREFIX}*.part"):
            for part in output.parent.glob(pattern):
                with contextlib.suppress(OSError):
                    part.unlink()


def _parse_tiers(tiers: Sequence[str] | str | None) -> list[str]:
    """The ``--tiers`` list (default ``pixel``); :class:`UsageError` for an unknown tier or one whose module
    cannot be loaded (checked here, before any work)."""
    names = ["pixel"] if tiers is None else parse_tiers(tiers)
    tier_metric_names(names)
    return names


def _undersampling_dict(u: Any) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"mask_type": u.mask_type, "accelerations": list(u.accelerations),
            "center_fractions": list(u.center_fractions), "seed": u.seed}


def _skipped_metrics(state: Any, target: str | None, source: Path, output: Path, previous: dict[str, Any],
                     rel: str, tiers: list[str]) -> dict[str, float] | None:
    """Metrics of an output finished by an earlier run: against ``target`` (from that run's manifest when it
    scored the same metrics against the same target file, else computed now), or those stored in the output's
    attributes (against the input's own reference; the feature/task tiers computed now against the input
    ``source``'s reference when it has one)."""
    extra = any(t != "pixel" for t in tiers)
    if target is None and not extra:
        return state.metrics
    old = previous["files"].get(rel) or {}
    old_metrics = old.get("metrics") or {}
    if (old.get("status") in ("ok", "skipped") and old.get("target") == target
            and all(name in old_metrics for name in tier_metric_names(tiers))):
        return old_metrics
    try:
        return score_files(target, output, tiers) if target is not None else score_against_input(source, output, tiers)
    except Exception:  # a skipped file keeps its output either way; it just has no (full) score
        return state.metrics if target is None else None


def run_batch(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    method: str = "zero-filled",
    options: dict[str, Any] | None = None,
    undersampling: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    backend: Backend | None = None,
    resume: bool = True,
    limit: int | None = None,
    pattern: str = DEFAULT_PATTERN,
    target_dir: str | Path | None = None,
    tiers: Sequence[str] | str | None = None,
    prewhiten: bool = True,
    live: bool | None = None,
    stream: TextIO | None = None,
    command: Sequence[str] | None = None,
) -> BatchResult:
    """Reconstruct every input under ``input_dir`` into ``output_dir`` (same relative paths, ``.h5``).

    Parameters
    ----------
    method, options, undersampling: as :func:`recon.app.pipeline.reconstruct_file` (the ``recon run`` options).
    workers: local worker processes (default: the number of cores) or Dask LocalCluster workers.
    scheduler: None (local process pool), ``"local"`` (Dask LocalCluster) or a Dask scheduler address.
    threads: torch threads per worker (None: :func:`recon.app.runtime.resolve_threads` for the local pool and
        LocalCluster; a remote cluster's workers keep their own setting).
    backend: a ready :class:`~recon.app.batch.backends.Backend` instead of ``workers``/``scheduler``/``threads``.
    resume: skip inputs whose output is finished with the same settings; an output made with other
        settings is that file's failure. False: reconstruct everything, overwriting existing outputs.
    limit, pattern: which inputs (:func:`recon.app.batch.discovery.find_inputs`).
    target_dir: folder of ground-truth files at the same relative paths: score each output against its
        target's ``reconstruction_rss`` (NMSE/PSNR/SSIM, as ``recon eval``).
    tiers: metric tiers, ``"pixel,feature,task"`` or a sequence (default ``pixel``): scored against the target
        (``target_dir``) or, without one, the input's own reference; the manifest aggregates every metric.
    prewhiten: whiten each input with its noise scans when it has them (False: ``--no-prewhiten``; part of
        the settings a resumed output must match, :mod:`recon.app.batch.resume`).
    live: progress bar (True) or log lines (False); None = bar when ``stream`` is a terminal.
    stream: where progress goes (stderr); the summary table is the caller's to print (:func:`format_summary`).
    command: the command line, recorded in the manifest.

    Raises :class:`UsageError`/:class:`InputError`/:class:`OutputError` for problems of the whole run
    (before any work where possible); failures of single files are recorded, never raised.
    """
    options = dict(options or {})
    items, out_root, target_root, tier_names, backend = _check_run(
        input_dir, output_dir, method, options, pattern, limit, target_dir, tiers, backend, workers, scheduler,
        threads)
    stream = stream if stream is not None else sys.stderr
    with output_lock(out_root):
        check_no_live_workers(out_root)  # the lock covers an earlier run's workers too (issue 18)
        if hasattr(backend, "lock_path"):
            backend.lock_path = str(out_root / WORKERS_LOCK_NAME)
        previous = load_manifest(out_root / MANIFEST_NAME) or {"files": {}}
        # we hold the lock, so an earlier run whose manifest still says "running" is dead (SIGKILL, power loss)
        killed = previous.get("state") == "running"
        header = _run_header(
            command, input_dir, out_root, backend, previous if killed else None,
            {"method": method, "options": options, "undersampling": _undersampling_dict(undersampling),
             "pattern": pattern, "limit": limit, "resume": resume,
             "target_dir": str(target_root) if target_root else None, "tiers": tier_names,
             "prewhiten": prewhiten})
        manifest = Manifest(out_root / MANIFEST_NAME, header,
                            [(it.rel, str(it.input), str(it.output)) for it in items],
                            metric_names=tier_metric_names(tier_names))
        settings = dict(method=method, options=options, undersampling=undersampling, prewhiten=prewhiten)
        tasks, skipped = _plan_tasks(items, manifest, previous, target_root, resume, tier_names, backend, settings)
        manifest.write()  # fails here, before any work, if OUTPUT_DIR is not writable

        progress = BatchProgress(len(tasks), stream=stream, live=live)
        _log_start(progress, manifest, previous if killed else None, resume, out_root, len(items), input_dir,
                   skipped, len(tasks), backend)
        _execute(tasks, items, backend, manifest, header, progress)
    return BatchResult(manifest.path, manifest.data)


def _log_start(progress: BatchProgress, manifest: Manifest, previous: dict[str, Any] | None, resume: bool,
               out_root: Path, n_items: int, input_dir: str | Path, skipped: int, n_tasks: int,
               backend: Backend) -> None:
    """The run's first progress lines: the killed earlier run (``previous``: its manifest; None when the
    earlier run was not killed) and what is to be done."""
    pre_failed = sum(1 for e in manifest.files.values() if e["status"] == "failed")
    if previous is not None:
        who = f"pid {previous['pid']}, " if previous.get("pid") is not None else ""
        then = "resuming from its finished outputs" if resume else "--no-resume: redoing every file"
        progress.log(f"the previous run in {out_root} ({who}started {previous.get('started')}) was killed "
                     f"before it finished (its manifest said 'running'); {then}")
    progress.log(f"{n_items} input(s) under {Path(input_dir)}; skipped {skipped} finished"
                 + (f"; {pre_failed} with conflicting outputs" if pre_failed else "")
                 + f"; {n_tasks} to reconstruct on {backend.name} ({backend.workers} worker(s))")


def _check_run(input_dir: str | Path, output_dir: str | Path, method: str, options: dict[str, Any], pattern: str,
               limit: int | None, target_dir: str | Path | None, tiers: Sequence[str] | str | None,
               backend: Backend | None, workers: int | None, scheduler: str | None, threads: int | None
               ) -> tuple[list[Any], Path, Path | None, list[str], Backend]:
    """Everything that can be wrong with the whole run, checked before any work (usage errors first, then
    the output folder, which is created): ``(inputs, output root, target root, tier names, backend)``."""
    # deferred: loads torch, tqdm, which importing recon.app.batch.runner does not
    from recon.app.pipeline import get_method

    get_method(method, options)  # unknown method or option: a usage error before anything else
    tier_names = _parse_tiers(tiers)
    out_root = Path(output_dir).absolute()
    items = find_inputs(input_dir, out_root, pattern=pattern, limit=limit)
    if not items:
        raise UsageError(f"no input files match {pattern!r} under {Path(input_dir)}")
    target_root = Path(target_dir).absolute() if target_dir is not None else None
    if target_root is not None and not target_root.is_dir():
        raise UsageError("--target-dir is not a folder", target_root)
    if backend is None:  # bad --workers/--scheduler or no Dask: fail before creating anything
        backend = make_backend(workers, scheduler, threads)
    if out_root.exists() and not out_root.is_dir():
        raise OutputError("output path exists and is not a folder", out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder: {exc.strerror or exc}", out_root) from None
    return items, out_root, target_root, tier_names, backend


def _run_header(command: Sequence[str] | None, input_dir: str | Path, out_root: Path, backend: Backend,
                killed: dict[str, Any] | None, parameters: dict[str, Any]) -> dict[str, Any]:
    """The manifest's header: who runs what on which inputs with which settings and software; ``killed``: the
    manifest of an earlier run that died while running (recorded as ``previous_run``)."""
    header = {
        **owner(),
        "command": list(command) if command is not None else None,
        "input_dir": str(Path(input_dir).absolute()),
        "output_dir": str(out_root),
        "parameters": parameters,
        "versions": software_versions(),
        "backend": backend.describe(),
    }
    if killed is not None:
        header["previous_run"] = {"state": "killed", "started": killed.get("started"),
                                  "updated": killed.get("updated"), "pid": killed.get("pid")}
    return header


def _plan_tasks(items: list[Any], manifest: Manifest, previous: dict[str, Any], target_root: Path | None,
                resume: bool, tier_names: list[str], backend: Backend, settings: dict[str, Any]
                ) -> tuple[list[FileTask], int]:
    """``(tasks to run, inputs skipped as finished)``; records each input's target, and the skipped ones and
    conflicting outputs (failures) in ``manifest``. ``settings``: method, options, undersampling, prewhiten."""
    tasks: list[FileTask] = []
    skipped = 0
    for it in items:
        _remove_stale_parts(it.output)
        target = None
        if target_root is not None:
            tpath = (target_root / it.rel).with_suffix(".h5")
            if tpath.is_file():
                target = str(tpath)
                manifest.record(it.rel, target=target)
            else:
                manifest.record(it.rel, metrics_error={"type": "InputError",
                                                       "message": f"{tpath}: no target file"})
        if resume:
            state = output_state(it.output, input_name=it.input.name, version=__version__, **settings)
            if state.state == FINISHED:
                manifest.record(it.rel, status="skipped", slices=state.slices, seconds=0.0,
                                metrics=_skipped_metrics(state, target, it.input, it.output, previous, it.rel,
                                                         tier_names))
                skipped += 1
                continue
            if state.state != MISSING:
                if state.state == MISMATCH:
                    why = (f"an output made with other settings exists ({state.reason}); "
                           "use another OUTPUT_DIR, or --no-resume to overwrite it")
                else:
                    why = f"the existing output {state.reason}; remove it, or --no-resume to overwrite it"
                manifest.record(it.rel, status="failed", error={"type": "OutputError",
                                                                 "message": f"{it.output}: {why}"})
                continue
        tasks.append(FileTask(rel=it.rel, input=str(it.input), output=str(it.output), overwrite=not resume,
                              target=target, threads=backend.threads_per_task(), tiers=tuple(tier_names),
                              **settings))
    return tasks, skipped


def _execute(tasks: list[FileTask], items: list[Any], backend: Backend, manifest: Manifest,
             header: dict[str, Any], progress: BatchProgress) -> None:
    """Run ``tasks`` on ``backend``, recording each result in the manifest as it arrives; whatever happens,
    remove dead workers' temporaries and write the manifest's final state (``finished`` or ``interrupted``)."""
    state = "interrupted"
    try:
        if tasks:  # a backend the caller started (``with backend:``) stays up for the caller's next run
            with (backend if not backend.started else contextlib.nullcontext(backend)):
                header["backend"] = backend.describe()
                manifest.data["backend"] = header["backend"]
                for result in backend.run(tasks):
                    rel = result.pop("rel")
                    manifest.record(rel, **result)
                    manifest.write()
                    result["rel"] = rel
                    progress.update(result)
        state = "finished"
    finally:
        progress.close()
        for it in items:  # temporaries of workers that died mid-write (their task was redone)
            _remove_stale_parts(it.output)
        with contextlib.suppress(OutputError):
            manifest.write(state)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_summary(manifest: dict[str, Any], max_rows: int = 50) -> str:
    """The end-of-run table: one row per file (the first ``max_rows``), aggregates and failures."""
    files = manifest["files"]
    s = manifest["summary"]
    lines = [f"recon batch: {s['files']} file(s): {s['ok']} reconstructed, {s['skipped']} skipped (finished "
             f"earlier), {s['failed']} failed" + (f", {s['pending']} not done" if s["pending"] else "")
             + f"; {s['slices']} slices in {s['seconds']:.1f} s"
             + (f" ({s['slices_per_second']:.2f} slices/s)" if s.get("slices_per_second") else "")]
    width = min(max((len(r) for r in files), default=4), 60)
    lines.append(f"{'file':<{width}}  {'status':<7} {'slices':>6} {'seconds':>8} {'NMSE':>9} {'PSNR':>7} {'SSIM':>7}")
    for i, (rel, e) in enumerate(files.items()):
        if i == max_rows:
            lines.append(f"... {len(files) - max_rows} more in {manifest.get('output_dir', '')}/{MANIFEST_NAME}")
            break
        m = e.get("metrics") or {}
        lines.append(f"{rel:<{width}}  {e['status']:<7} {_fmt(e.get('slices'), 'd'):>6} "
                     f"{_fmt(e.get('seconds'), '.2f'):>8} {_fmt(m.get('nmse'), '.4g'):>9} "
                     f"{_fmt(m.get('psnr'), '.2f'):>7} {_fmt(m.get('ssim'), '.4f'):>7}")
    agg = s.get("metrics")
    if agg:
        parts = [f"{name.upper()} {agg[name]['mean']:.4g} ± {agg[name]['std']:.2g}"
                 for name in agg if agg.get(name) and agg[name]["mean"] is not None]
        lines.append(f"mean ± std over {max(a['n'] for a in agg.values())} volume(s): " + ", ".join(parts))
    failed = [(rel, e) for rel, e in files.items() if e["status"] == "failed"]
    if failed:
        lines.append("failed:")
        lines.extend(f"  {rel}: {e['error']['type']}: {e['error']['message']}" for rel, e in failed)
    return "\n".join(lines)
