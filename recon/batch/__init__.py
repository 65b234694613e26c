"""Batch reconstruction of whole datasets (``recon batch``): resumable, isolated per file, local or on Dask.

* :func:`run_batch` / :func:`format_summary` (:mod:`recon.batch.runner`): the run and its end-of-run table.
* :mod:`recon.batch.discovery`: which inputs, and their output paths (the fastMRI submission layout).
* :mod:`recon.batch.resume`: whether an existing output is a finished result of the same settings.
* :mod:`recon.batch.tasks`: :class:`FileTask` and :func:`run_task`, the unit of work a backend runs.
* :mod:`recon.batch.backends`: local process pool, Dask distributed, inline.
* :mod:`recon.batch.manifest`: ``OUTPUT_DIR/manifest.json``, rewritten atomically as files finish.
"""
from recon.batch.backends import Backend, DaskBackend, InlineBackend, LocalPoolBackend, make_backend
from recon.batch.discovery import DEFAULT_PATTERN, BatchItem, find_inputs
from recon.batch.manifest import MANIFEST_NAME
from recon.batch.runner import BatchResult, format_summary, run_batch
from recon.batch.tasks import FileTask, run_task

__all__ = [
    "Backend", "BatchItem", "BatchResult", "DEFAULT_PATTERN", "DaskBackend", "FileTask", "InlineBackend",
    "LocalPoolBackend", "MANIFEST_NAME", "find_inputs", "format_summary", "make_backend", "run_batch", "run_task",
]
