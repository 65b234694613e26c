"""BART ``.cfl``/``.hdr`` pairs: read, write (atomically, as a pair) and map onto ``(slices, coils, H, W)``.

A BART array is two files: ``name.hdr`` (text; the line after ``# Dimensions`` lists the sizes) and
``name.cfl`` (raw little-endian complex64 samples in Fortran / column-major order, dimension 0 fastest).
BART's dimension names (``misc/mri.h``)::

    0 READ  1 PHS1  2 PHS2  3 COIL  4 MAPS  5 TE  6 COEFF  7 COEFF2  8 ITER  9 CSHIFT
    10 TIME  11 TIME2  12 LEVEL  13 SLICE  14 AVG  15 BATCH

Mapping onto ``recon``'s k-space (``data_specs/bart.md``): H = READ (0), W = PHS1 (1), coils = COIL (3),
slices = every dimension from TE (5) to BATCH (15) flattened, the lowest BART dimension varying fastest.
PHS2 > 1 (3D Cartesian) and MAPS > 1 (sensitivity maps, not k-space) are refused with a DataError.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import CorruptFileError, DataError, InputError, OutputError, UsageError
from recon.io.atomic import check_output_path
from recon.io.types import Header, InMemoryRawFile, RawData, RawFile, _with_kspace_axes, validate_kspace

__all__ = [
    "BART_DIMS", "bart_pair", "read_cfl", "write_cfl", "open_bart", "write_bart_kspace",
    "raw_to_bart", "bart_to_raw", "infer_mask",
]

BART_DIMS = ("READ", "PHS1", "PHS2", "COIL", "MAPS", "TE", "COEFF", "COEFF2", "ITER", "CSHIFT",
             "TIME", "TIME2", "LEVEL", "SLICE", "AVG", "BATCH")
N_DIMS = len(BART_DIMS)  # 16, BART's DIMS
READ_DIM, PHS1_DIM, PHS2_DIM, COIL_DIM, MAPS_DIM, SLICE_DIM = 0, 1, 2, 3, 4, 13
_HEADER_MAX_BYTES = 1 << 16


def bart_pair(path: str | Path) -> tuple[Path, Path]:
    """Return ``(name.cfl, name.hdr)`` for ``name.cfl``, ``name.hdr`` or ``name``; both must exist.

    Raises :class:`InputError` naming the missing half (or both, or a folder in the way).
    """
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".cfl", ".hdr") else path
    cfl, hdr = base.with_name(base.name + ".cfl"), base.with_name(base.name + ".hdr")
    has_cfl, has_hdr = cfl.exists(), hdr.exists()
    if not has_cfl and not has_hdr:
        raise InputError(f"file not found (a BART array needs {cfl.name} and {hdr.name})", path)
    for p, other in ((cfl, hdr), (hdr, cfl)):
        if not p.exists():
            raise InputError(f"BART pair incomplete: {p.name} is missing (found only {other.name})", p)
        if p.is_dir():
            raise InputError("is a folder, not a file", p)
    return cfl, hdr


def _pair_names(path: str | Path) -> tuple[Path, Path]:
    """The two file names of a BART array, without checking that they exist."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".cfl", ".hdr") else path
    return base.with_name(base.name + ".cfl"), base.with_name(base.name + ".hdr")


def read_hdr(hdr: Path) -> list[int]:
    """The dimension sizes listed in a BART ``.hdr`` (as many as the file gives, at least one)."""
    try:
        with open(hdr, "rb") as fh:
            raw = fh.read(_HEADER_MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", hdr) from None
    if len(raw) > _HEADER_MAX_BYTES:
        raise CorruptFileError("not a BART header (over 64 KiB)", hdr)
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise CorruptFileError("not a BART header (not ASCII text)", hdr) from None
    for i, line in enumerate(lines):
        if line.strip() == "# Dimensions":
            if i + 1 >= len(lines):
                break
            try:
                dims = [int(v) for v in lines[i + 1].split()]
            except ValueError:
                raise CorruptFileError(f"bad '# Dimensions' line: {lines[i + 1].strip()!r}", hdr) from None
            if not dims or any(d < 1 for d in dims):
                raise CorruptFileError(f"bad dimensions {dims} (need positive sizes)", hdr)
            return dims
    raise CorruptFileError("not a BART header (no '# Dimensions' line followed by sizes)", hdr)


def read_cfl(path: str | Path) -> np.ndarray:
    """Read a BART array: complex64, shape from the ``.hdr`` with trailing singleton dims dropped.

    The array's axes are BART's dimensions in order (axis 0 = READ ...); the data are read in
    Fortran order, exactly as BART stores them. Raises :class:`CorruptFileError` when the ``.cfl``
    size does not match the header.
    """
    cfl, hdr = bart_pair(path)
    dims = read_hdr(hdr)
    n = int(np.prod(dims, dtype=np.int64))
    size = cfl.stat().st_size
    if size != n * 8:
        raise CorruptFileError(
            f"data size {size} bytes does not match the header's dimensions {dims} ({n * 8} bytes of complex64)", cfl
        )
    while len(dims) > 1 and dims[-1] == 1:
        dims = dims[:-1]
    try:
        flat = np.fromfile(cfl, dtype="<c8", count=n)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", cfl) from None
    return flat.reshape(dims, order="F").astype(np.complex64, copy=False)


def _format_hdr(dims: list[int]) -> bytes:
    return ("# Dimensions\n" + " ".join(str(int(d)) for d in dims) + " \n").encode("ascii")


def write_cfl(path: str | Path, array: np.ndarray, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``array`` (any rank up to 16, cast to complex64) as a BART pair; return ``(cfl, hdr)``.

    The array's axes are BART's dimensions in order; the header lists at least 16 sizes. Both files
    are written to temporary names first; then any old ``.hdr`` is removed, the ``.cfl`` renamed into
    place and the ``.hdr`` renamed last, so a crash at any point leaves either the old pair, or a
    ``.cfl`` without its ``.hdr`` (refused by :func:`bart_pair`), never a mismatched pair. Existing
    files are only replaced with ``overwrite=True``.
    """
    cfl, hdr = _pair_names(path)
    arr = np.asarray(array)
    if arr.ndim > N_DIMS:
        raise UsageError(f"BART arrays have at most {N_DIMS} dimensions, got shape {arr.shape}", cfl)
    if not (np.iscomplexobj(arr) or np.issubdtype(arr.dtype, np.number)):
        raise UsageError(f"BART arrays are numeric, got dtype {arr.dtype}", cfl)
    dims = list(arr.shape) + [1] * (N_DIMS - arr.ndim)
    if 0 in dims:
        raise UsageError(f"BART arrays cannot have an empty axis: shape {arr.shape}", cfl)
    check_output_path(cfl, overwrite)
    check_output_path(hdr, overwrite)
    data = np.asarray(arr, dtype="<c8").reshape(-1, order="F")
    temps: list[Path] = []
    try:
        for final, payload in ((cfl, None), (hdr, _format_hdr(dims))):
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
            temps.append(Path(name))
            with os.fdopen(fd, "wb") as fh:
                if payload is None:
                    data.tofile(fh)
                else:
                    fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
        if not overwrite and (cfl.exists() or hdr.exists()):
            raise OutputError("output appeared while writing; not replaced", cfl)
        if hdr.exists():
            hdr.unlink()  # from here until the last rename the pair is incomplete, never mismatched
        os.replace(temps[0], cfl)
        os.replace(temps[1], hdr)
    except OSError as exc:
        raise OutputError(f"could not write: {exc.strerror or exc}", cfl) from exc
    finally:
        for t in temps:
            if t.exists():
                t.unlink()
    return cfl, hdr


def bart_to_raw(array: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """BART-ordered k-space (up to 16 dims) -> ``(slices, coils, H, W)`` complex64.

    H = READ (dim 0), W = PHS1 (dim 1), coils = COIL (dim 3), slices = dims 5..15 flattened with the
    lowest dimension fastest. Raises :class:`DataError` when PHS2 (dim 2) or MAPS (dim 4) exceeds 1.
    """
    arr = np.asarray(array)
    if arr.ndim > N_DIMS:
        raise DataError(f"BART arrays have at most {N_DIMS} dimensions, got shape {arr.shape}", path)
    dims = list(arr.shape) + [1] * (N_DIMS - arr.ndim)
    if dims[PHS2_DIM] > 1:
        raise DataError(
            f"3D k-space (PHS2 = {dims[PHS2_DIM]}) is not supported: recon reads 2D slices only "
            "(inverse-FFT along PHS2 with `bart fft -u -i 4` and move it to SLICE first)", path)
    if dims[MAPS_DIM] > 1:
        raise DataError(f"MAPS = {dims[MAPS_DIM]} > 1: this looks like sensitivity maps, not k-space", path)
    full = arr.reshape(dims)
    h, w, c = dims[READ_DIM], dims[PHS1_DIM], dims[COIL_DIM]
    s = int(np.prod(dims[5:]))
    # (R, P1, 1, C, 1, d5..d15) -> (R, P1, C, S) with d5 fastest, then to (S, C, R, P1)
    merged = full.reshape((h, w, c, s), order="F")
    return np.ascontiguousarray(merged.transpose(3, 2, 0, 1)).astype(np.complex64, copy=False)


def raw_to_bart(kspace: np.ndarray) -> np.ndarray:
    """``(slices, coils, H, W)`` -> 16-dim BART order ``(H, W, 1, coils, 1, ..., slices@13, 1, 1)``."""
    k = np.asarray(kspace)
    if k.ndim != 4:
        raise UsageError(f"k-space must have shape (slices, coils, H, W), got {k.shape}")
    s, c, h, w = k.shape
    dims = [1] * N_DIMS
    dims[READ_DIM], dims[PHS1_DIM], dims[COIL_DIM], dims[SLICE_DIM] = h, w, c, s
    return k.transpose(2, 3, 1, 0).reshape(dims).astype(np.complex64, copy=False)


def infer_mask(kspace: np.ndarray) -> np.ndarray | None:
    """The sampling mask implied by exact zeros in ``(slices, coils, H, W)`` k-space.

    Returns None when every sample is non-zero somewhere across slices and coils, a ``(W,)``
    column mask when whole phase-encode lines are empty, else an ``(H, W)`` mask.
    """
    sampled = np.any(kspace != 0, axis=(0, 1))  # (H, W)
    if sampled.all():
        return None
    cols = sampled.any(axis=0)
    if np.array_equal(sampled, np.broadcast_to(cols, sampled.shape)):
        return cols
    return sampled


def open_bart(path: str | Path) -> RawFile:
    """Open a BART k-space pair as a :class:`RawFile` (read whole; see :func:`bart_to_raw`)."""
    cfl, hdr = bart_pair(path)
    dims = read_hdr(hdr)
    arr = read_cfl(cfl)
    # NaN/Inf (random bytes read as floats) refused here, before infer_mask compares them with zero and numpy
    # warns on stderr (issue 18 defect 10)
    kspace = validate_kspace(bart_to_raw(arr, cfl), cfl)
    if not np.any(kspace):  # the mask is inferred from zeros: say what is really wrong
        raise DataError("k-space is all zeros: nothing was acquired", cfl)
    s, c, h, w = kspace.shape
    full_dims = dims + [1] * (N_DIMS - len(dims))
    header = Header(
        encoded_matrix=(h, w, 1), recon_matrix=(h, w, 1), num_coils=c, format="bart",
        attrs={"bart_dims": [int(d) for d in full_dims]},
    )
    mask = infer_mask(kspace)
    data = RawData(kspace, header, mask=mask, path=cfl)
    slice_dims = {BART_DIMS[i]: int(full_dims[i]) for i in range(5, len(full_dims)) if full_dims[i] > 1}
    extra: dict[str, Any] = {
        "bart_dims": {BART_DIMS[i] if i < N_DIMS else str(i): int(d) for i, d in enumerate(full_dims) if d > 1},
        "slice_axis": slice_dims or {"SLICE": 1},
    }
    if mask is not None:
        extra["mask_source"] = "inferred from zero samples"
    return InMemoryRawFile(data, "bart", extra)


def write_bart_kspace(path: str | Path, data: RawData, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``data.kspace`` as a BART pair (H->READ, W->PHS1, coils->COIL, slices->SLICE).

    Samples outside ``data.mask`` are written as zeros (BART marks unsampled points by zero).
    Header fields other than the array shape are not stored. Returns ``(cfl, hdr)``.
    """
    k = data.kspace
    if data.mask is not None:
        k = k * _with_kspace_axes(data.mask)
    return write_cfl(path, raw_to_bart(k), overwrite=overwrite)
