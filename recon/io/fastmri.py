"""fastMRI HDF5 files: lazy reader (:func:`open_fastmri`), k-space writer and reconstruction (submission) files.

Layout (``data_specs/fastmri.md``, validated against ``data_specs/fastmri.schema.json``):

* ``kspace``: complex, ``(slices, coils, H, W)`` multi-coil or ``(slices, H, W)`` single-coil;
  H = readout (with its 2x oversampling), W = phase encode.
* ``ismrmrd_header``: ISMRMRD XML (sizes, limits -> phase-encode padding; ``recon.io.fastmri_header``).
* train/val: ``reconstruction_rss`` (multi-coil) / ``reconstruction_esc`` (single-coil), float32
  ``(slices, h, w)``; test: ``mask`` ``(W,)`` with attributes ``acceleration``, ``num_low_frequency``.
* file attributes: ``acquisition``, ``max``, ``norm``, ``patient_id`` (+ the test ones).

Opening reads only metadata; :meth:`FastMRIFile.read_slices` reads (and checks) only the slices asked for.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.errors import (
    CorruptFileError, DataError, FormatError, InputError, MissingDependencyError, UsageError,
)
from recon.io.atomic import atomic_path
from recon.io.fastmri_header import parse_encoding, header_xml
from recon.io.hdf5 import open_h5
from recon.io.types import NO_SAMPLED_LINE, Header, RawData, RawFile, describe_mask, validate_kspace

__all__ = [
    "FastMRIFile", "open_fastmri", "describe_h5", "validate_layout",
    "write_fastmri_kspace", "write_reconstruction", "read_reconstruction",
]

REFERENCE_NAMES = ("reconstruction_rss", "reconstruction_esc")
FILE_ATTRS = ("acquisition", "max", "norm", "patient_id", "acceleration", "num_low_frequency")
#: the schema in a source checkout; an installed package looks for a copy in recon/data/ instead
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "data_specs" / "fastmri.schema.json"
_SCHEMA_COPY = Path(__file__).resolve().parents[1] / "data" / "fastmri.schema.json"

#: errors h5py raises when the bytes of a file are damaged (truncated, overwritten)
_H5_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


# --------------------------------------------------------------------------------------------- schema

def _kind(dtype: np.dtype) -> str:
    if dtype.kind == "c":
        return "complex"
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "iu":
        return "int"
    if dtype.kind == "b":
        return "bool"
    if dtype.kind in "SO" or h5py.check_string_dtype(dtype) is not None:
        return "string" if h5py.check_string_dtype(dtype) is not None else "bytes"
    if dtype.kind == "V" and dtype.names and set(dtype.names) == {"r", "i"}:
        return "complex"  # HDF5 compound complex that numpy did not map
    return "other"


def _json_value(value: Any) -> Any:
    """An HDF5 attribute value as plain JSON (bytes decoded, numpy scalars and arrays unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()] if value.ndim else _json_value(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe_h5(f: h5py.File) -> dict[str, Any]:
    """The metadata of an open fastMRI file as a small dict (what the JSON schema checks).

    ``{"datasets": {name: {"kind", "dtype", "rank", "shape"}}, "attrs": {name: value}}``; no data are read.
    """
    datasets = {}
    for name, obj in f.items():
        if isinstance(obj, h5py.Dataset):
            datasets[name] = {"kind": _kind(obj.dtype), "dtype": str(obj.dtype),
                              "rank": len(obj.shape), "shape": [int(n) for n in obj.shape]}
        else:
            datasets[name] = {"kind": "group"}
    attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
    return {"datasets": datasets, "attrs": attrs}


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    for candidate in (SCHEMA_PATH, _SCHEMA_COPY):
        if candidate.is_file():
            with open(candidate, encoding="utf-8") as fh:
                return json.load(fh)
    raise MissingDependencyError(
        f"the fastMRI layout schema is missing ({SCHEMA_PATH} or {_SCHEMA_COPY}); reinstall recon-mri"
    )


def _schema_message(parts: list[Any]) -> str | None:
    """The ``x-message`` of the deepest schema node on the instance path ``parts`` (local ``$ref`` followed)."""
    root = _schema()
    node: dict[str, Any] = root
    message = node.get("x-message")
    for part in parts:
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(part, str) or "x-message" in node:  # an array item keeps its array's message
            message = node.get("x-message")
    return message


def validate_layout(meta: dict[str, Any], path: str | Path) -> None:
    """Check :func:`describe_h5`'s dict against ``data_specs/fastmri.schema.json``.

    Raises :class:`FormatError` when ``kspace`` is missing and :class:`DataError` for a wrong dtype,
    rank, shape or attribute; the reason is the schema's ``x-message`` for the failing field plus what
    the file has.
    """
    # deferred: loads jsonschema, which importing recon.io.fastmri does not
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(meta))
    if error is None:
        return
    parts = list(error.absolute_path)
    if error.validator == "required" and parts == ["datasets"]:
        keys = sorted(meta.get("datasets", {}))
        raise FormatError(f"{_schema_message(parts)}; datasets: {keys or 'none'}", path)
    message = _schema_message(parts) or f"does not match the fastMRI layout: {error.message}"
    if len(parts) >= 3 and parts[0] == "datasets":
        ds = meta["datasets"][parts[1]]
        detail = f"dtype {ds.get('dtype')}" if parts[2] == "kind" else f"shape {tuple(ds.get('shape', ()))}"
    else:
        detail = f"value {error.instance!r}"
    raise DataError(f"{message}; the file has {detail}", path)


# --------------------------------------------------------------------------------------------- reader

class FastMRIFile(RawFile):
    """A fastMRI ``.h5`` file, open for lazy slice-by-slice reading.

    Attributes
    ----------
    path, format (``"fastmri"``), header, shape ``(slices, coils, H, W)`` as for every :class:`RawFile`.
    single_coil: the file stores ``(slices, H, W)`` (a coil axis of 1 is added on reading).
    reference_name: ``reconstruction_rss`` / ``reconstruction_esc`` when the file has one, else None.
    mask: the ``(W,)`` boolean column mask of a test-layout file, else None (fully sampled).
    meta: the metadata dict validated against the schema.
    """

    format = "fastmri"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file: h5py.File | None = open_h5(self.path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        f = self._file
        assert f is not None
        try:
            self.meta = describe_h5(f)
        except _H5_READ_ERRORS as exc:
            raise CorruptFileError(f"cannot read the HDF5 metadata (truncated or corrupt): {exc}", self.path) from None
        validate_layout(self.meta, self.path)
        ds = f["kspace"]
        self._kspace: h5py.Dataset = ds
        self.single_coil = ds.ndim == 3
        s, *rest = ds.shape
        self.shape = (s, 1, *rest) if self.single_coil else tuple(int(n) for n in ds.shape)  # type: ignore[assignment]
        _, coils, height, width = self.shape

        self.reference_name = next((n for n in REFERENCE_NAMES if n in self.meta["datasets"]), None)
        if self.reference_name is not None:
            ref_shape = self.meta["datasets"][self.reference_name]["shape"]
            if ref_shape[0] != s:
                raise DataError(f"'{self.reference_name}' has {ref_shape[0]} slices but 'kspace' has {s}", self.path)

        self.mask = None
        if "mask" in self.meta["datasets"]:
            self.mask = self._read_mask(width)

        attrs = {k: v for k, v in self.meta["attrs"].items()}
        self.header = self._parse_header(coils, height, width, attrs)

    def _read_mask(self, width: int) -> np.ndarray:
        assert self._file is not None
        try:
            mask = np.asarray(self._file["mask"][()])
        except _H5_READ_ERRORS as exc:
            raise CorruptFileError(f"cannot read 'mask' (truncated or corrupt): {exc}", self.path) from None
        if mask.shape != (width,):
            raise DataError(f"'mask' has length {mask.shape[0]} but k-space W (phase encode) is {width}", self.path)
        if not np.all(np.isin(mask, (0, 1))):
            raise DataError("'mask' must contain only 0/1 (or booleans)", self.path)
        if not mask.any():  # refused at opening, before any slice is read
            raise DataError(f"'mask': {NO_SAMPLED_LINE}", self.path)
        return mask.astype(bool)

    def _parse_header(self, coils: int, height: int, width: int, attrs: dict[str, Any]) -> Header:
        xml = None
        if "ismrmrd_header" in self.meta["datasets"]:
            assert self._file is not None
            try:
                raw = self._file["ismrmrd_header"][()]
            except _H5_READ_ERRORS as exc:
                raise CorruptFileError(f"cannot read 'ismrmrd_header' (truncated or corrupt): {exc}", self.path) from None
            xml = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        if xml is None:  # not a file fastMRI published; keep what the data say
            enc = None
            encoded, recon = (height, width, 1), (height, width, 1)
            fovs = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
            acquired, pe_center = None, None
        else:
            enc = parse_encoding(xml, self.path)
            encoded, recon = enc.encoded_matrix, enc.recon_matrix
            fovs = (enc.encoded_fov_mm, enc.recon_fov_mm)
            if encoded[0] != height:
                raise DataError(
                    f"ismrmrd_header encoded matrix x (readout) is {encoded[0]} but k-space H is {height}", self.path
                )
            # fastMRI slices masks with padding_left/right as they are; we clip them to [0, W] (brain
            # files can have W != encoded y), and refuse only a range with no line left in it.
            left, right = max(enc.padding_left, 0), min(enc.padding_right, width)
            if not left < right:
                raise DataError(
                    f"ismrmrd_header encoding limits leave no phase-encode line in [0, {width}): "
                    f"[{enc.padding_left}, {enc.padding_right}) from center {enc.limits_center}, "
                    f"maximum {enc.limits_maximum}", self.path
                )
            acquired, pe_center = (left, right), enc.pe_center
        return Header(
            encoded_matrix=tuple(encoded), recon_matrix=tuple(recon), num_coils=coils,  # type: ignore[arg-type]
            encoded_fov_mm=fovs[0], recon_fov_mm=fovs[1],
            pe_center=pe_center, acquired_pe=acquired,
            acquisition=attrs.get("acquisition") if isinstance(attrs.get("acquisition"), str) else None,
            xml=xml, format="fastmri", attrs=attrs,
        )

    # -- reading ---------------------------------------------------------------------------------
    def _selection(self, index: int | slice | None) -> slice:
        n = self.shape[0]
        if index is None:
            return slice(0, n)
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -n <= i < n:
                raise UsageError(f"slice {i} out of range: the file has {n} slices", self.path)
            i %= n
            return slice(i, i + 1)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                raise UsageError("read_slices takes a contiguous range of slices (step 1)", self.path)
            if stop <= start:
                raise UsageError(f"empty slice range {index} of {n} slices", self.path)
            return slice(start, stop)
        raise UsageError(f"slice index must be an int or a slice, got {type(index).__name__}", self.path)

    def _read(self, name: str, sel: slice) -> np.ndarray:
        if self._file is None:
            raise UsageError("file is closed", self.path)
        try:
            return self._file[name][sel]
        except _H5_READ_ERRORS as exc:
            raise CorruptFileError(
                f"cannot read '{name}' slices {sel.start}..{sel.stop - 1} (truncated or corrupt): {exc}", self.path
            ) from None

    def read_slices(self, index: int | slice | None = None) -> RawData:
        """Read slices ``index`` (an int keeps the slice axis; None = all) of ``kspace`` and the reference.

        Returns :class:`RawData` with ``kspace`` ``(n, coils, H, W)`` complex64 (NaN/Inf raise
        :class:`DataError`), ``reference`` ``(n, h, w)`` float32 if the file has one, ``mask`` ``(W,)``
        for a test-layout file.
        """
        sel = self._selection(index)
        kspace = self._read("kspace", sel)
        if self.single_coil:
            kspace = kspace[:, None]
        kspace = validate_kspace(kspace, self.path)
        reference = None
        if self.reference_name is not None:
            reference = np.asarray(self._read(self.reference_name, sel), dtype=np.float32)
        return RawData(kspace, self.header, mask=self.mask, reference=reference,
                       reference_name=self.reference_name if reference is not None else None, path=self.path)

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["layout"] = "single-coil" if self.single_coil else "multi-coil"
        if self.mask is not None:
            out["sampling"] = describe_mask(self.mask, self.header)  # the stored one: attr_acceleration
        else:
            out["sampling"] = "fully sampled"
        out["reference"] = self.reference_name
        out["noise"] = None
        for key in FILE_ATTRS:
            if key in self.header.attrs:
                out[f"attr_{key}"] = self.header.attrs[key]
        return out

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


def open_fastmri(path: str | Path) -> FastMRIFile:
    """Open a fastMRI ``.h5`` lazily (metadata and header only); see :class:`FastMRIFile`."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    return FastMRIFile(path)


# --------------------------------------------------------------------------------------------- writers

def _column_mask(mask: np.ndarray, width: int, path: Path) -> np.ndarray:
    """Reduce a mask to ``(W,)`` if it is the same column mask everywhere; else :class:`UsageError`."""
    m = np.asarray(mask, dtype=bool)
    if m.shape[-1] != width:
        raise UsageError(f"mask of shape {m.shape} does not fit k-space W = {width}", path)
    flat = m.reshape(-1, width)
    if not np.all(flat == flat[0]):
        raise UsageError(
            f"the fastMRI layout stores only column masks (W,); this mask of shape {m.shape} varies along "
            f"other axes", path)
    return flat[0].copy()


def _num_low_frequency(mask: np.ndarray, center: int) -> int:
    """Number of contiguous sampled columns around ``center`` (fastMRI's ``num_low_frequency``)."""
    if not (0 <= center < mask.shape[0]) or not mask[center]:
        return 0
    lo = center
    while lo > 0 and mask[lo - 1]:
        lo -= 1
    hi = center
    while hi + 1 < mask.shape[0] and mask[hi + 1]:
        hi += 1
    return hi - lo + 1


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return value


def write_fastmri_kspace(
    path: str | Path,
    data: RawData,
    *,
    overwrite: bool = False,
    reference: str | None = "reconstruction_rss",
    acquisition: str | None = None,
) -> Path:
    """Write ``data`` as a fastMRI-layout multi-coil ``.h5`` (atomically); return the path.

    Datasets: ``kspace`` complex64 ``(slices, coils, H, W)`` chunked per slice; ``ismrmrd_header``
    (``data.header.xml`` kept verbatim when it matches the header's sizes and ``acquired_pe``, else a
    generated one, so that reading back gives the same header fields); the reference image
    ``data.reference`` as float32 under the name ``reference`` (None: not written); for a column mask,
    ``mask`` ``(W,)`` bool with attributes ``acceleration`` and ``num_low_frequency`` (test layout).
    File attributes: ``acquisition`` (argument, else ``header.acquisition``), ``max``/``norm`` of the
    reference (else from ``header.attrs``), ``patient_id`` if known, and the other ``header.attrs``.
    """
    path = Path(path)
    if reference is not None and reference not in REFERENCE_NAMES:
        raise UsageError(f"reference dataset name must be one of {REFERENCE_NAMES}, got {reference!r}", path)
    kspace = validate_kspace(data.kspace, path)
    _, coils, height, width = kspace.shape
    header = data.header
    if header.encoded_matrix[0] != height:
        raise UsageError(f"header encoded matrix x = {header.encoded_matrix[0]} but k-space H = {height}", path)
    xml = header_xml(header, width)

    mask = None
    if data.mask is not None:
        mask = _column_mask(data.mask, width, path)

    attrs: dict[str, Any] = {k: v for k, v in header.attrs.items() if v is not None}
    acq = acquisition if acquisition is not None else header.acquisition
    if acq is not None:
        attrs["acquisition"] = acq
    ref = None
    if reference is not None and data.reference is not None:
        ref = np.asarray(data.reference, dtype=np.float32)
        if ref.ndim != 3 or ref.shape[0] != kspace.shape[0]:
            raise UsageError(f"reference must be (slices={kspace.shape[0]}, h, w), got {ref.shape}", path)
        attrs["max"] = float(ref.max())
        attrs["norm"] = float(np.linalg.norm(ref))
    if mask is not None:
        start, end = header.acquired_pe if header.acquired_pe is not None else (0, width)
        sampled = int(mask[start:end].sum())
        attrs.setdefault("acceleration", float((end - start) / sampled) if sampled else 0.0)
        center = header.pe_center if header.pe_center is not None else width // 2
        attrs.setdefault("num_low_frequency", _num_low_frequency(mask, center))
    else:
        for key in ("acceleration", "num_low_frequency"):
            attrs.pop(key, None)

    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=kspace, chunks=(1, coils, height, width))
            f.create_dataset("ismrmrd_header", data=xml, dtype=h5py.string_dtype("utf-8"))
            if ref is not None:
                f.create_dataset(reference, data=ref)  # type: ignore[arg-type]
            if mask is not None:
                f.create_dataset("mask", data=mask)
            for key, value in attrs.items():
                f.attrs[key] = _attr_value(value)
    return path


def write_reconstruction(
    path: str | Path,
    reconstruction: np.ndarray,
    *,
    attrs: dict | None = None,
    datasets: dict[str, np.ndarray] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a reconstruction in the fastMRI submission layout (atomically); return the path.

    ``reconstruction``: real ``(slices, H, W)`` magnitude images, stored as float32 dataset
    ``reconstruction`` (what ``fastmri/evaluate.py`` reads with ``f["reconstruction"][()]``).
    ``datasets``: extra arrays (``mask``, ``uncertainty``, ...) stored under their names.
    ``attrs``: file attributes; dict/list values are JSON-encoded, None values are skipped.
    """
    path = Path(path)
    rec = np.asarray(reconstruction)
    if rec.ndim != 3:
        raise UsageError(f"reconstruction must be (slices, H, W), got shape {rec.shape}", path)
    if np.iscomplexobj(rec) or not (np.issubdtype(rec.dtype, np.floating) or np.issubdtype(rec.dtype, np.integer)):
        raise UsageError(f"reconstruction must be real magnitude images, got dtype {rec.dtype}", path)
    rec = rec.astype(np.float32, copy=False)
    if not np.all(np.isfinite(rec)):
        raise UsageError(f"reconstruction contains {int(np.count_nonzero(~np.isfinite(rec)))} NaN/Inf values", path)
    extra = dict(datasets or {})
    if "reconstruction" in extra:
        raise UsageError("'reconstruction' cannot also be an extra dataset", path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        try:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("reconstruction", data=rec)
                for name, value in extra.items():
                    f.create_dataset(name, data=np.asarray(value))
                for key, value in (attrs or {}).items():
                    if value is not None:
                        f.attrs[key] = _attr_value(value)
        except TypeError as exc:  # h5py cannot store this dtype (object arrays, ...)
            raise UsageError(f"cannot store in HDF5: {exc}", path) from None
    return path


def _decode_attr(value: Any) -> Any:
    value = _json_value(value)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def read_reconstruction(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a reconstruction file: the float32 ``(slices, H, W)`` array and its attributes (JSON decoded)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    with open_h5(path) as f:
        if "reconstruction" not in f or not isinstance(f["reconstruction"], h5py.Dataset):
            raise FormatError(f"no 'reconstruction' dataset; datasets: {sorted(f.keys()) or 'none'}", path)
        try:
            rec = np.asarray(f["reconstruction"][()])
            attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
        except _H5_READ_ERRORS as exc:
            raise CorruptFileError(f"cannot read 'reconstruction' (truncated or corrupt): {exc}", path) from None
    if rec.ndim != 3 or np.iscomplexobj(rec):
        raise DataError(f"'reconstruction' must be real (slices, H, W), got {rec.dtype} {rec.shape}", path)
    return rec.astype(np.float32, copy=False), attrs
