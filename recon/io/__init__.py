"""Stage 1: files -> k-space + header, and results -> files.

``open_raw(path)`` opens any supported raw format lazily; ``read_raw(path)`` reads it whole.
Formats: fastMRI HDF5 (``recon.io.fastmri``), ISMRMRD/MRD HDF5 (``recon.io.mrd``), Siemens twix
``.dat`` (``recon.io.twix``), BART ``.cfl``/``.hdr`` (``recon.io.bart``). Image outputs (NIfTI, PNG,
DICOM) are in ``recon.io.images``. Layout specifications: ``data_specs/``.
"""
from __future__ import annotations

from pathlib import Path

from recon.errors import FormatError
from recon.io.types import Header, InMemoryRawFile, RawData, RawFile, validate_kspace
from recon.io.atomic import atomic_path, check_output_path
from recon.io.paths import check_input_file
from recon.io.bart import bart_pair

__all__ = [
    "Header", "RawData", "RawFile", "InMemoryRawFile", "validate_kspace",
    "atomic_path", "check_output_path", "detect_format", "open_raw", "read_raw",
]

RAW_EXTENSIONS = {".h5": "hdf5", ".hdf5": "hdf5", ".mrd": "mrd", ".dat": "twix", ".cfl": "bart", ".hdr": "bart"}


def detect_format(path: str | Path) -> str:
    """Return ``fastmri``, ``mrd``, ``twix`` or ``bart`` for a raw file, or raise a specific InputError."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in RAW_EXTENSIONS:
        raise FormatError(
            f"unsupported extension '{path.suffix}' (raw inputs: .h5 fastMRI/MRD, .dat twix, .cfl/.hdr BART)", path
        )
    kind = RAW_EXTENSIONS[ext]
    if kind == "bart":
        bart_pair(path)  # raises when one half of the pair is missing
        return "bart"
    check_input_file(path)
    if kind == "twix":
        return "twix"
    # deferred: loads h5py, which importing recon.io does not
    from recon.io.hdf5 import hdf5_kind

    return hdf5_kind(path)


def open_raw(path: str | Path, *, epi_correction: bool = True) -> RawFile:
    """Open a raw file of any supported format for slice-by-slice reading.

    ``epi_correction=False`` (``--no-epi-correction``): no EPI ramp regridding / ghost correction (twix, MRD).
    """
    fmt = detect_format(path)
    if fmt == "fastmri":
        # deferred: loads h5py, which importing recon.io does not
        from recon.io.fastmri import open_fastmri as opener
    elif fmt == "mrd":
        # deferred: loads h5py, which importing recon.io does not
        from recon.io.mrd import open_mrd as opener
    elif fmt == "twix":
        # deferred: only the code of the branch taken is loaded (e.g. one reader per detected format)
        from recon.io.twix import open_twix as opener
    else:
        # deferred: only the code of the branch taken is loaded (e.g. one reader per detected format)
        from recon.io.bart import open_bart as opener
    if fmt in ("twix", "mrd") and not epi_correction:
        return opener(path, epi_correction=False)
    return opener(path)


def read_raw(path: str | Path) -> RawData:
    """Read a whole raw file into memory."""
    with open_raw(path) as f:
        return f.read()
