"""The one in-memory form of raw MRI data, shared by every reader and writer.

Conventions (stated once here and in ``data_specs/conventions.md``)
-------------------------------------------------------------------
* k-space is a complex64 array of shape ``(slices, coils, H, W)``: fastMRI's own layout, where
  **H (axis -2) is the readout (frequency-encode, "x") direction** and **W (axis -1) is the
  phase-encode ("y") direction**. Single-coil data have ``coils == 1``. Cartesian masks act on W.
* The readout keeps any oversampling the scanner acquired (fastMRI knee: H = 640 for a 320 recon);
  reconstructions are centre-cropped to the header's recon matrix ``(recon_matrix[0], recon_matrix[1])``
  at the end, exactly as fastMRI's ``reconstruction_rss`` is.
* Fourier transforms are centred and orthonormal: ``image = fftshift(ifft2(ifftshift(k), norm="ortho"))``
  over (H, W), and the forward transform likewise, so that ``||image|| == ||kspace||``.
* Images are ``(slices, H, W)``; magnitude reconstructions are float32 on the scale of the data.

Every other format is mapped onto this layout by its reader (see ``data_specs/``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import DataError

Triple = tuple[int, int, int]
FloatTriple = tuple[float, float, float]


@dataclass
class Header:
    """What a raw file says about its acquisition.

    Matrix sizes are ``(x, y, z)`` as in ISMRMRD: ``x`` is the readout (array axis H), ``y`` the
    phase encode (array axis W), ``z`` the partition / slice-encode direction (1 for 2D).

    Attributes
    ----------
    encoded_matrix: (x, y, z) size of the encoded k-space grid, readout oversampling included.
    encoded_fov_mm: (x, y, z) field of view of the encoded grid, in mm.
    recon_matrix: (x, y, z) size of the image the scanner would reconstruct (the crop of the output).
    recon_fov_mm: (x, y, z) field of view of the reconstructed image, in mm.
    num_coils: number of receive channels.
    pe_center: index along W of the k-space centre line, or None if unknown (then W // 2).
    acquired_pe: ``[start, end)`` of the phase-encode lines that can have been acquired along W; lines
        outside are zero padding (fastMRI's ``padding_left``/``padding_right``). None = all of W.
    acquisition: acquisition / contrast name (fastMRI ``acquisition`` attribute, e.g. ``CORPD_FBK``;
        MRD protocol or sequence name; twix protocol name).
    noise_covariance: ``(coils, coils)`` complex64 noise covariance, when the file has one.
    noise_samples: ``(coils, samples)`` complex64 noise-only samples (noise scans), when the file has them.
    xml: the original XML header (ISMRMRD), when there is one.
    format: the reader that made this header: ``fastmri``, ``mrd``, ``twix``, ``bart``, ``memory``.
    attrs: every other file attribute worth keeping (fastMRI's ``acceleration``, ``num_low_frequency``,
        ``max``, ``norm``, ``patient_id``; twix protocol values; ...). JSON-serialisable values.
    geometry: :class:`recon.io.geometry.Geometry` of each slice-axis entry (patient position and
        orientation, contrast counters), from MRD/twix headers; None when the file has none.
    """

    encoded_matrix: Triple
    recon_matrix: Triple
    num_coils: int
    encoded_fov_mm: FloatTriple = (0.0, 0.0, 0.0)
    recon_fov_mm: FloatTriple = (0.0, 0.0, 0.0)
    pe_center: int | None = None
    acquired_pe: tuple[int, int] | None = None
    acquisition: str | None = None
    noise_covariance: np.ndarray | None = None
    noise_samples: np.ndarray | None = None
    xml: str | None = None
    format: str = "memory"
    attrs: dict[str, Any] = field(default_factory=dict)
    geometry: Any = None  # recon.io.geometry.Geometry: per-entry patient position/orientation (LPS), or None

    @property
    def readout_oversampling(self) -> float:
        """Encoded over recon field of view along the readout (2.0 for fastMRI; 1.0 if unknown)."""
        if self.encoded_fov_mm[0] > 0 and self.recon_fov_mm[0] > 0:
            return float(self.encoded_fov_mm[0] / self.recon_fov_mm[0])
        if self.recon_matrix[0] > 0:
            return float(self.encoded_matrix[0] / self.recon_matrix[0])
        return 1.0

    @property
    def recon_size(self) -> tuple[int, int]:
        """(H, W) of the output image: the centre crop applied to reconstructions."""
        return int(self.recon_matrix[0]), int(self.recon_matrix[1])

    @property
    def has_noise(self) -> bool:
        return self.noise_covariance is not None or self.noise_samples is not None

    def copy(self, **changes: Any) -> "Header":
        return replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for ``recon info`` and output attributes)."""
        return {
            "format": self.format,
            "encoded_matrix": list(self.encoded_matrix),
            "encoded_fov_mm": [float(v) for v in self.encoded_fov_mm],
            "recon_matrix": list(self.recon_matrix),
            "recon_fov_mm": [float(v) for v in self.recon_fov_mm],
            "readout_oversampling": self.readout_oversampling,
            "num_coils": self.num_coils,
            "pe_center": self.pe_center,
            "acquired_pe": list(self.acquired_pe) if self.acquired_pe is not None else None,
            "acquisition": self.acquisition,
            "noise": (
                "covariance" if self.noise_covariance is not None
                else f"{self.noise_samples.shape[-1]} samples" if self.noise_samples is not None
                else None
            ),
            **({"dwell_time_us": {k.replace("_dwell_time_us", "").replace("dwell_time_us", "data"): self.attrs[k]
                                  for k in ("dwell_time_us", "noise_dwell_time_us") if k in self.attrs}}
               if self.has_noise else {}),
            "has_xml": self.xml is not None,
            **({"geometry": self.geometry.summary()} if self.geometry is not None else {}),
        }


@dataclass
class RawData:
    """Multi-coil Cartesian k-space with its sampling mask and header.

    Attributes
    ----------
    kspace: ``(slices, coils, H, W)`` complex64; H = readout, W = phase encode; unsampled points are 0.
    header: the acquisition header.
    mask: sampling mask, boolean, broadcastable to ``(slices, 1, H, W)``: ``(W,)`` for a column mask
        (fastMRI), ``(H, W)`` for a 2D mask, ``(slices, H, W)`` per slice. None = fully sampled
        (every point of ``header.acquired_pe``).
    reference: ``(slices, h, w)`` float32 reference image from the file (fastMRI ``reconstruction_rss``
        or ``reconstruction_esc``), or None.
    reference_name: which dataset ``reference`` came from.
    path: the file it was read from, if any.
    calibration: ``(slices, coils, H, W)`` complex64 parallel-imaging reference (calibration) lines on the
        same grid as ``kspace`` (twix ``refscan``, MRD ``ACQ_IS_PARALLEL_CALIBRATION[_AND_IMAGING]``), zero
        elsewhere; None when the file has none. See ``recon/io/calibration.py``.
    calibration_mask: ``(W,)`` boolean: the phase-encode lines ``calibration`` holds.
    """

    kspace: np.ndarray
    header: Header
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None
    reference_name: str | None = None
    path: Path | None = None
    calibration: np.ndarray | None = None
    calibration_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.kspace = validate_kspace(self.kspace, self.path)
        if self.mask is not None:
            self.mask = np.asarray(self.mask).astype(bool)
            try:
                np.broadcast_shapes(self.mask.shape, self.kspace.shape[:1] + self.kspace.shape[2:])
            except ValueError:
                try:
                    np.broadcast_shapes(self.mask.shape, self.kspace.shape)
                except ValueError:
                    raise DataError(
                        f"mask of shape {self.mask.shape} does not fit k-space of shape {self.kspace.shape}",
                        self.path,
                    ) from None
            if not self.mask.any():  # nothing acquired: every method would return zeros (issue 18 defect 4)
                raise DataError(NO_SAMPLED_LINE, self.path)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.kspace.shape)  # type: ignore[return-value]

    @property
    def num_slices(self) -> int:
        return self.kspace.shape[0]

    @property
    def num_coils(self) -> int:
        return self.kspace.shape[1]

    @property
    def is_undersampled(self) -> bool:
        """True when a mask leaves out acquirable samples."""
        if self.mask is None:
            return False
        full = np.ones(self.kspace.shape[-1], dtype=bool)
        if self.header.acquired_pe is not None:
            a, b = self.header.acquired_pe
            full[:a] = False
            full[b:] = False
        m = np.broadcast_to(self.mask, self.mask.shape[:-1] + full.shape)
        return bool(np.any(~m[..., full]))

    def sample_mask(self) -> np.ndarray:
        """Deprecated: ``recon.sampling.SamplingMask.of_raw(raw).array``. The mask as a boolean array
        broadcastable to ``(slices, 1, H, W)`` (all True if unknown)."""
        _deprecated("RawData.sample_mask()", "recon.sampling.SamplingMask.of_raw(raw).array")
        if self.mask is None:
            return np.ones((1, 1, 1, self.kspace.shape[-1]), dtype=bool)
        return _with_kspace_axes(self.mask)

    def slices(self, index: int | slice) -> "RawData":
        """A view of some slices (``index`` an int keeps the slice axis)."""
        sel = slice(index, index + 1) if isinstance(index, (int, np.integer)) else index
        mask = self.mask
        if mask is not None and mask.ndim >= 3:
            mask = mask[sel]
        ref = self.reference[sel] if self.reference is not None else None
        cal = self.calibration[sel] if self.calibration is not None else None
        return RawData(self.kspace[sel], self.header, mask, ref, self.reference_name, self.path,
                       cal, self.calibration_mask)


def stack_slices(slices: list[RawData]) -> RawData | None:
    """Slices of one file as one :class:`RawData` ``(n, C, H, W)`` (what a batched solver takes), or None when
    they cannot be stacked: different headers' grids, masks that differ, reference lines on some only.

    The mask must be one per volume (the same array for every slice, as a fastMRI column mask is); the
    reference images are concatenated when every slice has one.
    """
    first = slices[0]
    if len(slices) == 1:
        return first
    if any(r.kspace.shape[1:] != first.kspace.shape[1:] or r.header is not first.header for r in slices):
        return None
    masks = [r.mask for r in slices]
    if any((m is None) != (masks[0] is None) for m in masks):
        return None
    if masks[0] is not None and (masks[0].ndim >= 3 and masks[0].shape[0] != 1 or any(
            m.shape != masks[0].shape or not np.array_equal(m, masks[0]) for m in masks[1:])):
        return None
    cals = [r.calibration for r in slices]
    if any((c is None) != (cals[0] is None) for c in cals):
        return None
    if cals[0] is not None and any(not np.array_equal(r.calibration_mask, first.calibration_mask) for r in slices):
        return None
    refs = [r.reference for r in slices]
    reference = np.concatenate(refs, axis=0) if all(x is not None for x in refs) else None
    return RawData(np.concatenate([r.kspace for r in slices], axis=0), first.header, masks[0], reference,
                   first.reference_name if reference is not None else None, first.path,
                   None if cals[0] is None else np.concatenate(cals, axis=0), first.calibration_mask)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"recon.io.types.{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=3)


def expand_mask(mask: Any) -> Any:
    """Deprecated: ``recon.sampling.SamplingMask(mask).for_kspace().array``. A mask ``(W,)``, ``(H, W)`` or
    ``(S, H, W)`` (numpy or torch) as ``(1|S, 1, 1|H, W)``; other ranks are returned unchanged."""
    _deprecated("expand_mask", "recon.sampling.SamplingMask(mask).for_kspace().array")
    return _with_kspace_axes(mask)


def _with_kspace_axes(mask: Any) -> Any:
    """The io layer's own copy of :meth:`recon.sampling.SamplingMask.for_kspace` (io sits below sampling and
    cannot import it): ``(W,)``, ``(H, W)``, ``(S, H, W)`` -> broadcastable to ``(S, C, H, W)``; for the
    deprecated helpers above and the BART writer only."""
    if mask.ndim == 1:
        return mask.reshape(1, 1, 1, -1)
    if mask.ndim == 2:
        return mask[None, None]
    if mask.ndim == 3:
        return mask[:, None]
    return mask


#: the one message for a sampling mask that samples nothing, whichever reader finds it
NO_SAMPLED_LINE = "the sampling mask has no sampled line: nothing was acquired"


def validate_kspace(kspace: Any, path: Path | str | None = None) -> np.ndarray:
    """Check rank, dtype and finiteness; return a complex64 ``(slices, coils, H, W)`` array.

    Raises :class:`DataError` naming the file for anything else.
    """
    arr = np.asarray(kspace)
    if arr.ndim != 4:
        raise DataError(f"k-space must have 4 axes (slices, coils, H, W), got shape {arr.shape}", path)
    if not (np.iscomplexobj(arr) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"k-space must be complex, got dtype {arr.dtype}", path)
    if 0 in arr.shape:
        raise DataError(f"k-space has an empty axis: shape {arr.shape}", path)
    arr = arr.astype(np.complex64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise DataError(f"k-space contains {bad} NaN/Inf values", path)
    return arr


class RawFile:
    """A raw-data file opened for reading, slice by slice.

    Readers subclass this; formats small enough to read whole use :class:`InMemoryRawFile`.
    Use as a context manager or call :meth:`close`.

    Attributes
    ----------
    path: the file.
    format: reader name (``fastmri``, ``mrd``, ``twix``, ``bart``).
    header: the parsed header.
    shape: ``(slices, coils, H, W)`` of the k-space.
    """

    path: Path
    format: str
    header: Header
    shape: tuple[int, int, int, int]

    @property
    def num_slices(self) -> int:
        return self.shape[0]

    def read_slices(self, index: int | slice | None = None) -> RawData:
        """Read some slices (all when ``index`` is None) into memory."""
        raise NotImplementedError

    def read(self) -> RawData:
        return self.read_slices(None)

    def info(self) -> dict[str, Any]:
        """What ``recon info`` prints: a JSON-serialisable dict."""
        return {"path": str(self.path), "format": self.format, "shape": list(self.shape),
                "slices": self.shape[0], "coils": self.shape[1], **self.header.summary()}

    def close(self) -> None:
        pass

    def __enter__(self) -> "RawFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InMemoryRawFile(RawFile):
    """A :class:`RawFile` over data already read into memory (MRD, twix, BART readers use this)."""

    def __init__(self, data: RawData, format: str, extra_info: dict[str, Any] | None = None):
        self.data = data
        self.path = data.path if data.path is not None else Path("<memory>")
        self.format = format
        self.header = data.header
        self.shape = data.shape
        self._extra = extra_info or {}

    def read_slices(self, index: int | slice | None = None) -> RawData:
        return self.data if index is None else self.data.slices(index)

    def info(self) -> dict[str, Any]:
        out = super().info()
        m = self.data.mask
        out["sampling"] = describe_mask(m, self.header) if m is not None else "fully sampled"
        out.update(self._extra)
        return out


def describe_mask(mask: np.ndarray, header: Header) -> str:
    """A short human description of a sampling mask (acceleration over the acquirable region)."""
    m = np.asarray(mask, dtype=bool)
    if header.acquired_pe is not None and m.shape[-1] >= header.acquired_pe[1]:
        a, b = header.acquired_pe
        m = m[..., a:b]
    frac = float(m.mean()) if m.size else 0.0
    kind = "column mask" if m.ndim == 1 else f"{m.ndim}D mask"
    accel = f"{1.0 / frac:.2f}x" if frac > 0 else "inf"
    return f"{kind}, {frac * 100:.1f}% sampled (acceleration {accel})"
