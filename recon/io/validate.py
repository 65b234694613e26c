"""Checks that turn bad inputs, absurd options and silent nonsense into one clear error (issue 18).

Called from the pipeline, the CLI and the readers with one-line hooks, so that each check lives once:

* :func:`check_not_input`: an output may never be an input of the same run (same path, hard link, symlink);
* :func:`check_folder_writable`: the output folder accepts a new file, tried before any work;
* :func:`check_accelerations` / :func:`check_finite_option`: option values that are numbers only on paper
  (``--accel 0``, ``-4``, ``nan``, ``inf``; ``--snr nan``);
* :func:`check_reconstruction`: an all-zero or non-finite image is never reported as a success;
* :func:`check_declared_shape`: a dataset's declared shape against absurd sizes and the file's real storage.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from recon.errors import DataError, OutputError, UsageError

#: more elements than this in one declared array is refused before any work (2^34 complex64 = 128 GiB)
MAX_DECLARED_ELEMENTS = 2 ** 34
#: a recon/encoding matrix side longer than this is not an MRI image
MAX_MATRIX_SIDE = 16384


def check_not_input(output: str | Path, *inputs: str | Path) -> None:
    """:class:`UsageError` when ``output`` is one of ``inputs``: the same path, a symlink to it, or a hard
    link (same device and inode). Checked whether or not ``--overwrite`` is given: replacing the raw data
    with its own reconstruction destroys the user's data."""
    out = Path(output)
    out_real = Path(os.path.realpath(out))
    for inp in inputs:
        inp = Path(inp)
        same = Path(os.path.realpath(inp)) == out_real
        if not same and out.exists() and inp.exists():
            try:
                same = os.path.samefile(out, inp)
            except OSError:
                same = False
        if same:
            raise UsageError(f"output is the input {inp} (same file); it would destroy the input", out)


#: name prefix of :func:`check_folder_writable`'s temporary file (named only where the OS has no unnamed ones)
WRITE_TEST_PREFIX = ".recon-write-test."


def check_folder_writable(folder: str | Path, output: str | Path | None = None) -> None:
    """:class:`OutputError` unless a file can be created in ``folder`` (tried with a temporary file, which
    also works for root, whom ``os.access`` always answers yes, and for read-only mounts). The file is unnamed
    where the OS allows (Linux ``O_TMPFILE``, via :func:`tempfile.TemporaryFile`), so a process killed during
    the check leaves nothing behind; elsewhere it is a ``.recon-write-test.*.part`` file unlinked at once (and
    ``recon batch`` removes those a killed run left)."""
    folder = Path(folder)
    try:
        with tempfile.TemporaryFile(prefix=WRITE_TEST_PREFIX, suffix=".part", dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"output folder {folder} is not writable ({exc.strerror or exc})",
                          output if output is not None else folder) from None


def check_finite_option(name: str, value: float | None, *, minimum: float | None = None,
                        strict: bool = False) -> None:
    """:class:`UsageError` for a NaN/Inf option value, or one below ``minimum`` (``strict``: at or below)."""
    if value is None:
        return
    v = float(value)
    if not math.isfinite(v):
        raise UsageError(f"{name} must be a finite number, got {value}")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise UsageError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value}")


def check_accelerations(accels: Iterable[float] | None, fractions: Iterable[float] | None = None) -> None:
    """``--accel`` values must be finite and > 1 (1 = fully sampled); ``--center-fraction`` in (0, 1]."""
    for a in accels or ():
        check_finite_option("--accel", a)
        if float(a) <= 1:
            raise UsageError(f"--accel must be > 1 (an undersampling factor), got {a:g}")
    for f in fractions or ():
        check_finite_option("--center-fraction", f)
        if not 0 < float(f) <= 1:
            raise UsageError(f"--center-fraction must be in (0, 1], got {f:g}")


def check_reconstruction(image: np.ndarray, path: str | Path, method: str = "") -> None:
    """:class:`DataError` when a reconstruction is all zeros or holds NaN/Inf: never a silent success.

    An all-zero image means nothing was acquired (all-zero k-space, a mask with no sampled line) or the
    method did nothing (e.g. zero iterations); writing it with exit 0 would pass nonsense on as a result."""
    arr = np.asarray(image)
    what = f"{method} reconstruction" if method else "reconstruction"
    if arr.size == 0:
        raise DataError(f"{what} is empty (shape {tuple(arr.shape)}); check the header's recon size", path)
    if not np.isfinite(arr).all():
        raise DataError(f"{what} holds NaN/Inf values; the input k-space or options are invalid", path)
    if not np.any(arr):
        raise DataError(f"{what} is all zeros (no signal: empty k-space, no sampled line, or zero iterations); "
                        "not written", path)


def check_declared_shape(shape: Sequence[int], itemsize: int, path: str | Path, name: str = "kspace",
                         stored_bytes: int | None = None, file_bytes: int | None = None) -> None:
    """:class:`DataError` for an absurd declared ``shape`` (a negative or zero axis, more than
    :data:`MAX_DECLARED_ELEMENTS` elements) or one the file cannot hold: a dataset without compression whose
    declared bytes exceed the file's size."""
    dims = [int(d) for d in shape]
    if any(d <= 0 for d in dims):
        raise DataError(f"dataset '{name}' declares an empty or negative shape {tuple(dims)}", path)
    n = math.prod(dims)
    if n > MAX_DECLARED_ELEMENTS:
        raise DataError(f"dataset '{name}' declares an absurd shape {tuple(dims)} ({n:.3g} elements)", path)
    if file_bytes is not None and stored_bytes is not None and stored_bytes >= n * itemsize:
        return  # storage is really there
    if file_bytes is not None and stored_bytes is not None and n * itemsize > 64 * max(file_bytes, 1) \
            and stored_bytes < n * itemsize // 64:
        raise DataError(f"dataset '{name}' declares shape {tuple(dims)} ({n * itemsize / 2**20:.1f} MiB) but the "
                        f"file holds only {file_bytes / 2**20:.3f} MiB: truncated or forged header", path)


def check_h5_dataset(dataset, path: str | Path) -> None:
    """:func:`check_declared_shape` for an h5py dataset (its allocated storage vs the file size)."""
    try:
        stored = int(dataset.id.get_storage_size())
    except Exception:  # noqa: BLE001 - a virtual/external dataset: no size to compare
        stored = None
    try:
        file_bytes = os.path.getsize(path)
    except OSError:
        file_bytes = None
    check_declared_shape(dataset.shape, dataset.dtype.itemsize, path, dataset.name.lstrip("/"), stored, file_bytes)


def check_recon_size(size: Sequence[int], path: str | Path) -> None:
    """:class:`DataError` for a header recon/encoding matrix that is negative, zero or absurdly large."""
    dims = [int(d) for d in size]
    if any(d <= 0 for d in dims) or any(d > MAX_MATRIX_SIDE for d in dims):
        raise DataError(f"header recon size {tuple(dims)} is not a valid matrix (each side 1..{MAX_MATRIX_SIDE})",
                        path)


def check_opened(raw_file, path: str | Path) -> None:
    """Checks of an opened :class:`~recon.io.types.RawFile` before any work: its declared k-space shape
    (absurd sizes, more than the file's real storage) and the header's recon size."""
    dataset = getattr(raw_file, "_kspace", None)
    if dataset is not None and hasattr(dataset, "id"):
        check_h5_dataset(dataset, path)
    else:
        check_declared_shape(raw_file.shape, 8, path)
    check_recon_size(raw_file.header.recon_size, path)


def check_reference(reference: np.ndarray | None, path: str | Path, name: str | None) -> None:
    """:class:`DataError` when the file's reference image (``reconstruction_rss``) holds NaN/Inf: metrics
    against it would be meaningless, and dropping them silently hides it."""
    if reference is not None and not np.isfinite(np.asarray(reference)).all():
        raise DataError(f"'{name or 'reference'}' holds NaN/Inf values; cannot compute metrics against it", path)
