"""Checks every reader makes on an input path before opening it."""
from __future__ import annotations

from pathlib import Path

from recon.errors import CorruptFileError, InputError


def check_input_file(path: str | Path) -> Path:
    """Return ``path`` if it is an existing, non-empty regular file; else a specific :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, not a file", path)
    if path.stat().st_size == 0:
        raise CorruptFileError("file is empty", path)
    return path
