"""Batch reconstruction of whole datasets (``recon batch``): resumable, isolated per file, local or on Dask.

* :func:`run_batch` / :func:`format_summary` (:mod:`recon.app.batch.runner`): the run and its end-of-run table.
* :mod:`recon.app.batch.discovery`: which inputs, and their output paths (the fastMRI submission layout).
* :mod:`recon.app.batch.resume`: whether an existing output is a finished result of the same settings.
* :mod:`recon.app.batch.tasks`: :class:`FileTask` and :func:`run_task`, the unit of work a backend runs.
* :mod:`recon.app.batch.backends`: local process pool, Dask distributed, inline.
* :mod:`recon.app.batch.manifest`: ``OUTPUT_DIR/manifest.json``, rewritten atomically as files finish.
"""
from recon.app.batch.backends import Backend, DaskBackend, InlineBackend, LocalPoolBackend, make_backend
from recon.app.batch.discovery import DEFAULT_PATTERN, BatchItem, find_inputs
from recon.app.batch.manifest import MANIFEST_NAME
from recon.app.batch.runner import BatchResult, format_summary, run_batch
from recon.app.batch.tasks import FileTask, run_task

__all__ = [
    "Backend", "BatchItem", "BatchResult", "DEFAULT_PATTERN", "DaskBackend", "FileTask", "InlineBackend",
    "LocalPoolBackend", "MANIFEST_NAME", "find_inputs", "format_summary", "make_backend", "run_batch", "run_task",
]
