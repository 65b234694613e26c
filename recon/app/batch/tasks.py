"""The unit of batch work: reconstruct one file (and score it), in whatever process a backend picks.

:func:`run_task` never raises for a bad file: every exception becomes a ``failed`` result naming the error
type and its one-line reason, so one corrupt input cannot stop a batch. It is a plain module-level function
of a picklable :class:`FileTask`, so the local process pool and Dask run exactly the same code.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import numpy as np
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from recon.errors import CorruptFileError, DataError, FormatError, ReconError
from recon.metrics.evaluation import TARGET_KEYS
from recon.metrics import fastmri_crop_size
from recon.metrics.tiers import volume_tier_metrics

@dataclass(frozen=True)
class FileTask:
    """Everything a worker needs for one input (picklable; paths as strings).

    Attributes
    ----------
    rel: the input's relative path (the manifest key).
    input, output: absolute paths; the output's folder is created if missing.
    method, options, undersampling: passed to :func:`recon.app.pipeline.reconstruct_file`.
    overwrite: replace an existing output (``--no-resume``).
    target: a ground-truth file (``--target-dir``) to score against, or None.
    threads: torch intra-op threads for this task (None = leave the worker's setting).
    tiers: metric tiers to score (:data:`recon.metrics.tiers.TIER_NAMES`); without a ``target``, tiers beyond
        ``pixel`` are scored against the input's own ``reconstruction_rss``/``_esc`` when it has one.
    prewhiten: whiten with the input's noise scans when it has them (False: ``--no-prewhiten``).
    """

    rel: str
    input: str
    output: str
    method: str = "zero-filled"
    options: dict[str, Any] = field(default_factory=dict)
    undersampling: Any = None
    overwrite: bool = False
    target: str | None = None
    threads: int | None = None
    tiers: tuple[str, ...] = ("pixel",)
    prewhiten: bool = True


def _error(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, ReconError):
        message = str(exc)
    else:  # an unexpected failure: keep its type and first line, never a traceback in the manifest
        text = str(exc).strip().splitlines()
        message = text[0] if text else repr(exc)
    return {"type": type(exc).__name__, "message": message}


def _make_parents(output: Path) -> list[Path]:
    """Create the output's missing parent folders; return those created (deepest last)."""
    created: list[Path] = []
    missing = [p for p in reversed(output.parents) if not p.exists()]
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:  # another worker made it
            continue
        created.append(folder)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass


def read_target(path: str | Path) -> "Any":
    """The ground-truth volume ``(slices, h, w)`` of a target file: its ``reconstruction_rss`` (multi-coil) or
    ``reconstruction_esc`` (single-coil), the datasets fastMRI's ``evaluate.py`` and ``recon eval`` read."""
    # deferred: loads h5py, which importing recon.app.batch.tasks does not
    from recon.io.hdf5 import open_h5

    with open_h5(path) as f:
        key = next((k for k in TARGET_KEYS if k in f), None)
        if key is None:
            raise FormatError(f"target has no {' or '.join(TARGET_KEYS)} dataset", path)
        try:
            return np.asarray(f[key][()])
        except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError for damaged files
            raise CorruptFileError(f"cannot read '{key}': {exc}", path) from None


def score_files(target_path: str | Path, output_path: str | Path,
                tiers: str | Sequence[str] = ("pixel",)) -> dict[str, float]:
    """The metrics of ``tiers`` (default NMSE/PSNR/SSIM) of a written reconstruction against a target file,
    exactly as ``recon eval`` computes them (:func:`recon.metrics.evaluate_folders`: both centre-cropped to
    fastMRI's crop of the target)."""
    # deferred: loads h5py, which importing recon.app.batch.tasks does not
    from recon.io.fastmri import read_reconstruction

    target = read_target(target_path)
    prediction, _ = read_reconstruction(output_path)
    size = fastmri_crop_size(target.shape)
    if target.ndim != 3 or prediction.shape[0] != target.shape[0] or prediction.shape[-2] < size[0] \
            or prediction.shape[-1] < size[1]:
        raise DataError(f"reconstruction shape {prediction.shape} does not fit target shape {target.shape}",
                        output_path)
    return volume_tier_metrics(target, prediction, tiers, crop=size)


def score_against_input(input_path: str | Path, output_path: str | Path, tiers: Sequence[str]) -> dict[str, float]:
    """The metrics of ``tiers`` of an output against its *input*'s own reference (a fastMRI file's
    ``reconstruction_rss``/``_esc``): the feature and task tiers of a batch run without ``--target-dir``."""
    try:
        return score_files(input_path, output_path, tiers)
    except FormatError as exc:
        raise FormatError("no reference for the feature/task tiers (the input has no reconstruction_rss or "
                          "reconstruction_esc); score against ground truth with --target-dir", exc.path) from None


def run_task(task: FileTask) -> dict[str, Any]:
    """Reconstruct ``task.input`` into ``task.output``; return a JSON-serialisable result.

    Returns
    -------
    ``{"rel", "status": "ok"|"failed", "seconds", "slices", "shape", "metrics", "error", "worker",
    "peak_rss_mb"}``:
    ``metrics`` is ``{"nmse", "psnr", "ssim"}`` (plus the metrics of ``task.tiers``) or None; ``error`` is ``{"type", "message"}`` or None;
    ``worker`` is ``host:pid`` of the process that ran it; ``peak_rss_mb`` its peak resident memory so far.
    """
    start = time.perf_counter()
    result: dict[str, Any] = {"rel": task.rel, "status": "failed", "seconds": 0.0, "slices": 0, "shape": None,
                              "metrics": None, "error": None, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    created: list[Path] = []
    try:
        if task.threads:
            # deferred: loads torch, which importing recon.app.batch.tasks does not
            import torch

            if torch.get_num_threads() != task.threads:
                torch.set_num_threads(task.threads)
        # deferred: loads torch, tqdm, which importing recon.app.batch.tasks does not
        from recon.app.pipeline import reconstruct_file

        output = Path(task.output)
        created = _make_parents(output)
        summary = reconstruct_file(task.input, output, method=task.method, overwrite=task.overwrite,
                                   undersampling=task.undersampling, prewhiten=task.prewhiten, **task.options)
        created = []  # the output is written: keep its folders
        result.update(status="ok", shape=summary["shape"], slices=int(summary["shape"][0]),
                      metrics=summary.get("metrics"))
        try:
            if task.target is not None:
                result["metrics"] = score_files(task.target, output, task.tiers)
            elif any(t != "pixel" for t in task.tiers):  # pixel metrics came with the reconstruction
                result["metrics"] = score_against_input(task.input, output, task.tiers)
        except Exception as exc:  # the reconstruction stands; say why it has no (full) score
            result["metrics_error"] = _error(exc)
    except Exception as exc:  # per-file isolation: record and go on
        result["error"] = _error(exc)
        _remove_empty(created)
    result["seconds"] = round(time.perf_counter() - start, 4)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float | None:
    """Peak resident memory of this (worker) process so far, in MiB (None where the OS does not say).

    Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh in a spawned process (``ru_maxrss`` does not:
    it keeps the parent's peak across ``fork`` + ``exec``); elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        # deferred: resource may be missing on this platform or install (its ImportError is handled here)
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
