"""Exception types. Every error a user can cause carries the path it concerns and a one-line reason.

The CLI turns any :class:`ReconError` into ``recon: <message>`` on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import importlib
from pathlib import Path


class ReconError(Exception):
    """Base class of every error ``recon`` raises on purpose.

    Parameters
    ----------
    reason:
        What is wrong, in one line.
    path:
        The file or folder it concerns, if any.
    """

    exit_code = 2

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path is not None else self.reason


class InputError(ReconError):
    """An input file is missing, of an unsupported format, corrupt or inconsistent."""


class FormatError(InputError):
    """A file exists and opens, but is not a layout ``recon`` reads (e.g. an ``.h5`` that is neither fastMRI nor MRD)."""


class CorruptFileError(InputError):
    """A file cannot be read at all (truncated, garbage bytes, empty)."""


class DataError(InputError):
    """The data in a file are inconsistent or invalid (wrong dtype/rank, header vs data sizes, NaN/Inf)."""


class UsageError(ReconError):
    """Bad arguments: a parameter out of range, incompatible options, shapes that disagree."""


class OutputError(ReconError):
    """An output cannot be written (folder missing, exists without ``overwrite``, unwritable, disk full)."""


class MissingDependencyError(ReconError):
    """An optional extra is needed but not installed; the message says what to install."""


def require(module: str, extra: str | None, purpose: str):
    """Import a dependency or raise :class:`MissingDependencyError` saying what to install: the optional
    ``extra``, or (``extra=None``, an ordinary dependency missing from a broken install) recon-mri itself."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        how = (f"pip install 'recon-mri[{extra}]'" if extra is not None else
               f"it is a dependency of recon-mri, so the install is incomplete: `make install` or pip install '{module}'")
        raise MissingDependencyError(f"{purpose} needs the '{module}' package: {how} ({exc})") from None
