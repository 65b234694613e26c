"""Telling the HDF5 layouts apart (fastMRI vs ISMRMRD/MRD) and opening HDF5 files with clear errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.errors import CorruptFileError, FormatError, InputError


def open_h5(path: str | Path) -> h5py.File:
    """Open an HDF5 file read-only; a truncated or non-HDF5 file raises :class:`CorruptFileError`."""
    path = Path(path)
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as exc:
        raise CorruptFileError(f"not a readable HDF5 file (truncated or corrupt): {exc}", path) from None


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value: bytes decoded (UTF-8), numpy scalars as Python scalars,
    anything else (arrays, str) unchanged."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(obj: h5py.File | h5py.Group | h5py.Dataset) -> dict[str, Any]:
    """The attributes of an open HDF5 object as plain Python values (:func:`attr_value`)."""
    return {k: attr_value(v) for k, v in obj.attrs.items()}


def hdf5_kind(path: str | Path) -> str:
    """``fastmri`` if the file has a top-level ``kspace`` dataset or fastMRI's ``ismrmrd_header``;
    ``mrd`` if it has an ISMRMRD group with ``data``/``xml``; else :class:`FormatError`."""
    with open_h5(path) as f:
        keys = set(f.keys())
        if "kspace" in keys or "ismrmrd_header" in keys or "reconstruction_rss" in keys:
            return "fastmri"
        for k in keys:
            g = f[k]
            if isinstance(g, h5py.Group) and ("data" in g or "xml" in g):
                return "mrd"
    raise FormatError(
        f"HDF5 file is neither fastMRI (no 'kspace' dataset) nor ISMRMRD/MRD (no group with 'data'); "
        f"top-level keys: {sorted(keys) or 'none'}",
        path,
    )
