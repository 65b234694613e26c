"""Atomic output: write to a temporary file in the destination folder, then rename.

A killed process or a failed write never leaves a half-written file under the final name, and an
existing output is never replaced unless ``overwrite`` is set.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import errno
import re
from pathlib import Path
from typing import Iterator

from recon.errors import OutputError
from recon.io.validate import check_folder_writable


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Fail early (before any work) if ``path`` cannot be written: folder missing, or exists without overwrite."""
    path = Path(path)
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist", path)
    if not path.parent.is_dir():
        raise OutputError(f"{path.parent} is not a folder", path)
    if path.exists() and not overwrite:
        raise OutputError("output exists; pass --overwrite (overwrite=True) to replace it", path)
    if path.is_dir():
        raise OutputError("output path is a folder", path)

    check_folder_writable(path.parent, path)  # a read-only folder fails now, not after the work
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _one_line(exc: OSError) -> str:
    """An OS error as one line: 'No space left on device' and the like, not HDF5's multi-line report."""
    text = str(exc.strerror or exc)
    if exc.errno == errno.ENOSPC or "errno = 28" in text or "No space left" in text:
        return os.strerror(errno.ENOSPC)
    found = re.search(r"error message = '([^']*)'", text)  # HDF5 wraps the OS's own message
    if found:
        return found.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any error delete it.

    The temporary name starts with ``.`` and ends with ``.part`` so batch scans never take it for output.
    """
    path = check_output_path(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        if path.exists() and not overwrite:  # appeared while we worked
            raise OutputError("output appeared while writing; not replaced", path)
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"could not write: {_one_line(exc)}", path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
