"""Siemens twix ``.dat`` (VB and VD/VE) -> ``(slices, coils, H, W)`` k-space, via ``twixtools``.

What is read and how it is mapped is specified in ``data_specs/twix.md``. In short:

* the ``image`` scans (twixtools' category: no noise, phase-correction, PAT-reference-only, feedback
  or navigator lines) of one measurement (``measurement=-1``: the last, the imaging scan of a
  multi-raid file) become k-space with H = ``Col`` (readout), W = ``Lin`` (phase encode),
  coils = ``Cha``;
* ``Ave`` is averaged and ``Seg`` combined by twixtools (each line's segments are averaged, so a
  line measured in one segment keeps its value); every other counter (``Sli``, ``Par``, ``Eco``,
  ``Phs``, ``Rep``, ``Set``, ``Ida``..``Ide``) is kept on the slice axis, ``Sli`` varying fastest;
  3D partitions (``Par``) are inverse-Fourier transformed (centred, orthonormal) into slices;
* readout oversampling is removed (twixtools, in the frequency domain) only when asked for and the
  protocol says the readout is 2x oversampled; reflected (EPI) lines are reversed by twixtools;
* ``noise`` scans become ``Header.noise_samples``;
* the phase-encode axis is zero-filled to the protocol's ``lPhaseEncodingLines`` and placed so that
  the MDH centre line lands at ``W // 2`` (our FFT convention); the acquired lines make the mask.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import CorruptFileError, DataError, MissingDependencyError, UsageError, require
from recon.io.calibration import calibration_summary, pat_attrs, read_twix_refscan
from recon.io.paths import check_input_file
from recon.io.types import Header, InMemoryRawFile, RawData, RawFile
from recon.io.geometry import sort_by_position, twix_geometry
import recon.io.epi as epi

__all__ = ["open_twix", "twix_version"]

# twixtools' dimension order of a twix_array (its ``dim_order``)
DIM_ORDER = ("Ide", "Idd", "Idc", "Idb", "Ida", "Seg", "Set", "Rep", "Phs", "Eco", "Par", "Sli", "Ave",
             "Lin", "Cha", "Col")
AVERAGED = ("Ave", "Seg")
_VD_RAID_HEADER_BYTES = 9736  # twixtools.hdr_def.MultiRaidFileHeader.itemsize


def twix_version(path: str | Path) -> str:
    """``"VD/VE"`` (multi-raid file) or ``"VB"`` from the file's first bytes, as twixtools decides.

    Raises :class:`CorruptFileError` for files too short or whose first bytes fit neither layout.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise CorruptFileError(f"not a Siemens twix file ({size} bytes)", path)
    first, second = np.frombuffer(head, dtype="<u4")
    if first < 10000 and second <= 64:  # twixtools.helpers.idea_version_check
        if second == 0 or size < _VD_RAID_HEADER_BYTES:
            raise CorruptFileError(
                f"not a Siemens twix file (VD/VE multi-raid header with {second} scans in {size} bytes)", path)
        return "VD/VE"
    if not 32 <= first < size:
        raise CorruptFileError(
            f"not a Siemens twix file (VB header length {first} does not fit the {size}-byte file)", path)
    return "VB"


@contextlib.contextmanager
def _quiet(messages: list[str]) -> Iterator[None]:
    """Run twixtools without letting it talk to the user: what it prints (stdout) and the Python warnings it
    raises (numpy ``RuntimeWarning`` overflows when a garbled MDH declares absurd sizes, issue 18 defect 10)
    are appended to ``messages`` (kept in the reader's ``extra``), never shown. A file they describe as broken
    is refused by the checks that follow, in one line."""
    buf = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(buf):
                yield
        finally:
            messages.extend(line.strip() for line in buf.getvalue().splitlines() if line.strip())
            for w in caught:
                text = f"{w.category.__name__}: {w.message}"
                if text not in messages:
                    messages.append(text)


def _read_measurements(twixtools: Any, path: Path) -> tuple[list[dict], list[str]]:
    """Parse the file with twixtools; return its mapped measurements and twixtools' printed warnings."""
    messages: list[str] = []
    try:
        with _quiet(messages):
            scans = twixtools.read_twix(str(path), verbose=False, keep_acqend=True, parse_pmu=False,
                                        parse_geometry=False)
    except MemoryError:
        raise
    except Exception as exc:  # twixtools raises KeyError/ValueError/IndexError on foreign bytes
        raise CorruptFileError(f"not a readable Siemens twix file ({type(exc).__name__}: {exc})", path) from None
    size = path.stat().st_size
    for i, scan in enumerate(scans):
        raid = scan.get("raidfile_hdr")
        if raid is not None and int(raid["off_"]) + int(raid["len_"]) > size:
            raise CorruptFileError(
                f"truncated: measurement {i} ends at byte {int(raid['off_']) + int(raid['len_'])}, "
                f"the file has {size}", path)
        mdbs = scan.get("mdb", [])
        if not mdbs or not mdbs[-1].is_flag_set("ACQEND"):
            raise CorruptFileError(
                f"truncated or damaged: measurement {i} has no end-of-acquisition (ACQEND) record", path)
        if "Meas" not in scan.get("hdr", {}):
            raise CorruptFileError(f"measurement {i} has no protocol header", path)
    try:
        with _quiet(messages):
            mapped = twixtools.map_twix(scans, verbose=False)
    except Exception as exc:
        raise CorruptFileError(f"twix data could not be sorted ({type(exc).__name__}: {exc})", path) from None
    return mapped, messages


def _get(d: Any, *keys: Any, default: Any = None) -> Any:
    for k in keys:
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return default
    return d


def _protocol_name(hdr: dict) -> str | None:
    name = _get(hdr, "Meas", "tProtocolName") or _get(hdr, "MeasYaps", "tProtocolName")
    if not isinstance(name, str) or not name:
        return None
    if "+" in name and "-" in name:  # MeasYaps stores UTF-7 ('+AF8-' is '_')
        with contextlib.suppress(UnicodeError):
            name = name.encode("ascii").decode("utf-7")
    return name


def _protocol_attrs(hdr: dict, version: str) -> dict[str, Any]:
    """A few useful protocol values (JSON-serialisable), named with their units."""
    yaps = hdr.get("MeasYaps", {})
    out: dict[str, Any] = {"twix_version": version}
    tr = _get(yaps, "alTR", 0)
    if isinstance(tr, (int, float)) and tr > 0:
        out["TR_ms"] = tr / 1000.0
    n_te = int(_get(yaps, "lContrasts", default=1) or 1)
    te = [v / 1000.0 for v in (_get(yaps, "alTE", default=[]) or [])[:n_te] if isinstance(v, (int, float))]
    if te:
        out["TE_ms"] = te if len(te) > 1 else te[0]
    flip = _get(yaps, "adFlipAngleDegree", 0)
    if isinstance(flip, (int, float)):
        out["flip_angle_deg"] = float(flip)
    for key, src in (("field_strength_T", ("Meas", "flMagneticFieldStrength")),
                     ("system", ("Dicom", "ManufacturersModelName")),
                     ("software", ("Dicom", "SoftwareVersions")),
                     ("sequence", ("MeasYaps", "tSequenceFileName"))):
        v = _get(hdr, *src)
        if isinstance(v, (int, float, str)) and v != "":
            out[key] = float(v) if isinstance(v, (int, float)) else v
    return out


def _dwell_times(hdr: dict, version: str, n_col: int, n_col_out: int, noise_samples_per_line: int | None,
                 notes: list[str]) -> dict[str, float]:
    """``dwell_time_us`` of the k-space samples as read and ``noise_dwell_time_us`` of the noise lines (each
    only when known), for the prewhitening's bandwidth ratio (``data_specs/twix.md``, "Noise scans").

    Data: the protocol's ``sRXSPEC.alDwellTime[0]`` (ns, per acquired sample) times ``n_col / n_col_out``
    (oversampling removal and EPI regridding keep the readout duration on fewer samples). Noise: the MDH
    carries no dwell time; as siemens_to_ismrmrd (what Gadgetron reads twix through) does, an ``AdjCoilSens``
    protocol has 5 us and VD/VE noise lines ``floor(76800 / samples) / 10`` us; VB: unknown (ratio 1).
    """
    out: dict[str, float] = {}
    dwell = _get(hdr, "MeasYaps", "sRXSPEC", "alDwellTime", 0)
    if not isinstance(dwell, (int, float)) or dwell <= 0:
        dwell = _get(hdr, "Meas", "alDwellTime", 0)
    if isinstance(dwell, (int, float)) and dwell > 0 and n_col_out > 0:
        out["dwell_time_us"] = float(dwell) / 1000.0 * n_col / n_col_out
    if noise_samples_per_line:
        name = _protocol_name(hdr) or ""
        if "adjcoilsens" in name.lower():
            out["noise_dwell_time_us"] = 5.0
        elif version != "VB":
            out["noise_dwell_time_us"] = int(76800.0 / noise_samples_per_line) / 10.0
        else:
            notes.append("noise dwell time unknown for VB files: prewhitening bandwidth ratio 1")
    return out


def _centre_pad(arr: np.ndarray, axis: int, size: int, centre: int | None) -> tuple[np.ndarray, int]:
    """Zero-fill ``arr`` along ``axis`` to at least ``size`` and so that index ``centre`` lands at ``n // 2``.

    Returns the padded array and the number of samples added in front.
    """
    n = arr.shape[axis]
    after = max(size - n, 0)
    n_total = n + after
    front = 0
    if centre is not None and 0 < centre < n_total:
        if centre < n_total // 2:
            front = n_total - 2 * centre
        elif centre > n_total // 2:
            after += 2 * centre - n_total
    if front == 0 and after == 0:
        return arr, 0
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (front, after)
    return np.pad(arr, pad), front


@dataclass
class _Encoding:
    """Header parsing: what the reader takes from the protocol (``MeasYaps``/``Meas``) and the first readout."""

    base_res: int  # sKSpace.lBaseResolution (0: not in the protocol)
    pe_lines: int  # sKSpace.lPhaseEncodingLines (0: not in the protocol)
    os_factor: float  # Meas.flReadoutOSFactor (0: not in the protocol)
    n_col: int  # samples per stored readout (Col)
    centre_col: int  # MDH CenterCol of the first image readout
    full_col: int  # samples of the full (oversampled) readout: 2 * base_res, or n_col
    asymmetric: bool  # asymmetric echo (readout partial Fourier): zero-filled to full_col
    oversampled: bool  # the readout is 2x oversampled
    remove: bool  # readout oversampling removed (asked for, oversampled, even n_col, symmetric echo)


def _open_measurement(path: Path, measurement: int) -> tuple[str, int, dict, dict[str, Any], list[str]]:
    """``(twix version, number of measurements, the chosen measurement, its scan categories, twixtools'
    messages)``; the categories (``image``, ``noise``, ``phasecorr``, ``refscan``, ...) are twixtools'
    sorting of the scans, each with an ``mdb_list``."""
    version = twix_version(path)
    try:
        twixtools = require("twixtools", None, "reading Siemens twix files")
    except MissingDependencyError as exc:
        raise MissingDependencyError(exc.reason, path) from None
    measurements, messages = _read_measurements(twixtools, path)
    if not measurements:
        raise CorruptFileError("no measurement in the file", path)
    try:
        meas = measurements[measurement]
    except IndexError:
        raise UsageError(f"measurement {measurement} does not exist: the file has {len(measurements)}", path) from None
    categories = {k: v for k, v in meas.items() if hasattr(v, "mdb_list")}
    if "image" not in categories:
        raise DataError(f"no image data in measurement {measurement} (found: {sorted(categories) or 'nothing'})", path)
    return version, len(measurements), meas, categories, messages


def _parse_encoding(hdr: dict, scan: Any, remove_oversampling: bool, notes: list[str]) -> _Encoding:
    """Header parsing: protocol matrix and readout oversampling, and whether the oversampling is removed."""
    yaps = hdr.get("MeasYaps", {})
    base_res = int(_get(yaps, "sKSpace", "lBaseResolution", default=0) or 0)
    pe_lines = int(_get(yaps, "sKSpace", "lPhaseEncodingLines", default=0) or 0)
    os_factor = float(_get(hdr, "Meas", "flReadoutOSFactor", default=0) or 0)
    n_col = int(scan.base_size["Col"])
    centre_col = int(scan.mdb_list[0].mdh.CenterCol) if scan.mdb_list else n_col // 2
    full_col = 2 * base_res if (os_factor == 2.0 and base_res > 0) else n_col
    asymmetric = 0 < centre_col and centre_col != n_col // 2 and n_col < full_col  # asymmetric echo (readout partial Fourier)
    oversampled = os_factor == 2.0 or (os_factor == 0 and base_res > 0 and n_col == 2 * base_res)
    remove = bool(remove_oversampling and oversampled and n_col % 2 == 0 and not asymmetric)
    if asymmetric:
        notes.append(f"asymmetric echo: {n_col} of {full_col} readout samples (centre sample {centre_col}); "
                     "zero-filled to the full readout, oversampling kept")
    elif remove_oversampling and not remove:
        notes.append(f"readout oversampling not removed: the protocol gives factor {os_factor or 'none'} "
                     f"for {n_col}-sample readouts")
    return _Encoding(base_res, pe_lines, os_factor, n_col, centre_col, full_col, asymmetric, oversampled, remove)


def _read_image(scan: Any, categories: dict[str, Any], hdr: dict, enc: _Encoding, epi_correction: bool,
                messages: list[str], notes: list[str], path: Path) -> tuple[np.ndarray, Any, int]:
    """Acquisition sorting and reading: the ``image`` scans as twixtools' 16-dim array in ``DIM_ORDER``
    (``Ave``/``Seg`` averaged to size 1, ``(..., Lin, Cha, Col)`` complex64), EPI-corrected when asked for,
    an asymmetric echo zero-filled to the full readout.

    Returns ``(array, EPI correction info or None, readout samples zero-filled in front of the echo)``.
    """
    for dim in DIM_ORDER:
        scan.flags["average"][dim] = dim in AVERAGED

    epi_mode = epi_correction and ("phasecorr" in categories or
                                   epi.RampSpec.from_twix(hdr.get("Meas", {}), enc.n_col) is not None)
    scan.flags["remove_os"] = enc.remove and not epi_mode  # EPI: removed after regridding (recon.io.epi)
    scan.flags["regrid"] = False
    scan.flags["squeeze_singletons"] = False
    scan.flags["squeeze_ave_dims"] = False
    scan.flags["zf_missing_lines"] = False
    scan.flags["skip_empty_lead"] = False
    try:
        with _quiet(messages):
            arr = scan[:]  # full 16-dim array in DIM_ORDER, Ave and Seg of size 1
    except MemoryError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"twix image data could not be read ({type(exc).__name__}: {exc})", path) from None
    arr = np.asarray(arr, dtype=np.complex64).reshape(scan.shape)
    epi_info = None
    if epi_mode:
        pc = categories["phasecorr"].mdb_list if "phasecorr" in categories else []
        arr, epi_info, epi_notes = epi.apply_twix(arr, scan.mdb_list, pc, hdr.get("Meas", {}), DIM_ORDER,
                                                  AVERAGED, correct=True, remove_os=enc.remove)
        notes.extend(epi_notes)
    elif epi_correction and not enc.asymmetric and not any(m.is_flag_set("REFLECT") for m in scan.mdb_list):
        # deferred: loads scipy, which importing recon.io.twix does not
        from recon.io.epi_unflagged import correct_unflagged, is_pulseq

        if is_pulseq(hdr):  # no EPI flags at all: reflected lines and ghost found from the data
            arr, epi_info, epi_notes, _ = correct_unflagged(arr, _line_timestamps(scan, arr.shape[-3]),
                                                          slice_axis=DIM_ORDER.index("Sli"))
            notes.extend(epi_notes)
    ro_front = 0
    if enc.asymmetric and not epi_mode:  # the echo centre (MDH CenterCol) lands at H // 2 of the full readout
        full_col, n_col = enc.full_col, enc.n_col
        ro_front = min(max(full_col // 2 - enc.centre_col, 0), full_col - n_col)
        arr = np.pad(arr, [(0, 0)] * (arr.ndim - 1) + [(ro_front, full_col - n_col - ro_front)])
    return arr, epi_info, ro_front


def _line_timestamps(scan: Any, n_lin: int) -> np.ndarray | None:
    """``(n_lin,)`` MDH time stamps (2.5 ms ticks) of the image readouts by ``Lin`` counter; None unless every
    line was read exactly once (a Pulseq file: ``Lin`` = ADC index), which is what shot grouping needs."""
    stamps = np.full(n_lin, -1, dtype=np.int64)
    for mdb in scan.mdb_list:
        lin = int(mdb.mdh.Counter.Lin)
        if lin >= n_lin or stamps[lin] >= 0:
            return None
        stamps[lin] = int(mdb.mdh.TimeStamp)
    return stamps if np.all(stamps >= 0) else None


def _acquired_lines(scan: Any, n_lin: int) -> np.ndarray:
    """``(n_lin,)`` bool: the ``Lin`` counters of the image readouts (which lines hold data, before padding)."""
    acquired_lines = np.zeros(n_lin, dtype=bool)
    for mdb in scan.mdb_list:
        lin = int(mdb.mdh.Counter.Lin)
        if lin < n_lin:
            acquired_lines[lin] = True
    return acquired_lines


def _partitions_to_slices(arr: np.ndarray, scan: Any, yaps: dict, sizes: dict[str, int],
                          notes: list[str]) -> np.ndarray:
    """3D: partitions (``Par``, zero-filled to ``lPartitions`` around the centre partition) -> slices by a
    centred orthonormal inverse FFT along ``Par``; updates ``sizes["Par"]``. 2D arrays are returned as they are."""
    par_axis = DIM_ORDER.index("Par")
    if sizes["Par"] > 1:
        centre_par = int(scan.kspace_center_par)
        arr, _ = _centre_pad(arr, par_axis, int(_get(yaps, "sKSpace", "lPartitions", default=0) or 0),
                             centre_par if centre_par > 0 else None)
        arr = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(arr, axes=par_axis), axis=par_axis, norm="ortho"),
                              axes=par_axis).astype(np.complex64)
        sizes["Par"] = arr.shape[par_axis]
        notes.append(f"3D: {sizes['Par']} partitions inverse-Fourier transformed into slices")
    return arr


def _fill_phase_encode(arr: np.ndarray, scan: Any, sizes: dict[str, int], pe_lines: int,
                       acquired_lines: np.ndarray,
                       notes: list[str]) -> tuple[np.ndarray, np.ndarray, tuple[int, int], int]:
    """Phase encode: zero-fill ``Lin`` to the protocol's ``pe_lines`` and put the centre line at W // 2.

    Returns ``(array, line mask (W,) bool, acquired_pe [start, end), lines added in front)``.
    """
    lin_axis = DIM_ORDER.index("Lin")
    centre_lin = int(scan.kspace_center_lin)
    centre_known = 0 < centre_lin < max(sizes["Lin"], pe_lines)
    n_lin = sizes["Lin"]
    target = max(n_lin, pe_lines) if centre_known else n_lin
    if not centre_known:
        notes.append(f"k-space centre line not in the MDH; assumed at W // 2 = {n_lin // 2}")
    arr, front = _centre_pad(arr, lin_axis, target, centre_lin if centre_known else None)
    w = arr.shape[lin_axis]
    line_mask = np.zeros(w, dtype=bool)
    line_mask[front:front + n_lin] = acquired_lines
    acquired_pe = (front, front + max(target, n_lin))
    return arr, line_mask, acquired_pe, front


def _assemble_kspace(arr: np.ndarray, scan: Any, sizes: dict[str, int],
                     notes: list[str]) -> tuple[np.ndarray, dict[str, int], Any]:
    """Assembly: ``(..., Lin, Cha, Col)`` -> k-space ``(slices, Cha, Col, Lin)``, every counter but Lin/Cha/Col
    on the slice axis (``Sli`` fastest), slices in spatial order when the MDH geometry gives one.

    Returns ``(kspace, the counters of size > 1 on the slice axis, Geometry or None)``.
    """
    lin_axis = DIM_ORDER.index("Lin")
    w = arr.shape[lin_axis]
    n_cha, n_col_out = arr.shape[-2], arr.shape[-1]
    kspace = arr.reshape(-1, w, n_cha, n_col_out).transpose(0, 2, 3, 1)
    slice_dims = {d: int(sizes[d]) for d in DIM_ORDER[:lin_axis] if sizes[d] > 1}

    geometry = twix_geometry(scan.mdb_list, sizes, DIM_ORDER, AVERAGED)
    if geometry is not None and len(geometry) == kspace.shape[0]:  # slices in spatial order (interleaving)
        order = sort_by_position(geometry)
        if np.any(order != np.arange(order.size)):
            kspace, geometry = kspace[order], geometry.take(order)
            notes.append("slices sorted by position along the slice normal")
    else:
        geometry = None
    return kspace, slice_dims, geometry


def _noise_samples(categories: dict[str, Any], n_cha: int, notes: list[str]) -> tuple[np.ndarray | None, int | None]:
    """``(noise scans (Cha, samples) complex64 concatenated in file order, samples per noise line)``, or
    (None, None) without usable noise scans."""
    noise = None
    if "noise" in categories:
        blocks = [np.asarray(m.data) for m in categories["noise"].mdb_list]
        if blocks and all(b.ndim == 2 and b.shape[0] == n_cha for b in blocks):
            noise = np.concatenate(blocks, axis=1).astype(np.complex64)
        else:
            notes.append("noise scans ignored: their channel count differs from the image data")
    return noise, (blocks[0].shape[-1] if noise is not None else None)


def _twix_header(hdr: dict, version: str, enc: _Encoding, shape: tuple[int, int, int, int], n_z: int,
                 acquired_pe: tuple[int, int], noise: np.ndarray | None, geometry: Any, slice_dims: dict[str, int],
                 dwell_attrs: dict[str, float], epi_info: Any, notes: list[str]) -> Header:
    """The :class:`Header` of k-space of ``shape`` ``(slices, Cha, H, W)``: recon matrix and fields of view (mm)
    from the protocol's slice (``sSliceArray.asSlice[0]``) when its matrix describes the readouts."""
    yaps = hdr.get("MeasYaps", {})
    _, n_cha, n_col_out, w = shape
    slice0 = _get(yaps, "sSliceArray", "asSlice", 0, default={}) or {}
    ro_fov = float(slice0.get("dReadoutFOV", 0.0) or 0.0)
    pe_fov = float(slice0.get("dPhaseFOV", 0.0) or 0.0)
    thick = float(slice0.get("dThickness", 0.0) or 0.0)
    h_factor = (2 if (enc.oversampled and not enc.remove) else 1)
    base_res = enc.base_res
    protocol_fits = base_res > 0 and n_col_out == h_factor * base_res
    if protocol_fits:
        recon_x = base_res
        recon_y = int(round(base_res * pe_fov / ro_fov)) if ro_fov > 0 and pe_fov > 0 else w
        recon_y = recon_y if 0 < recon_y <= w else w
        recon_fov = (ro_fov, pe_fov, thick)
        encoded_fov = (ro_fov * h_factor, pe_fov * w / recon_y if recon_y else pe_fov, thick)
    else:
        recon_x, recon_y = n_col_out, w
        recon_fov = encoded_fov = (0.0, 0.0, 0.0)
        notes.append(f"protocol matrix (lBaseResolution {base_res}) does not describe the {n_col_out}-sample "
                     "readouts (e.g. a Pulseq sequence); recon matrix = data matrix, FOV unknown")
    return Header(
        encoded_matrix=(n_col_out, w, n_z), recon_matrix=(recon_x, recon_y, n_z), num_coils=n_cha,
        encoded_fov_mm=encoded_fov, recon_fov_mm=recon_fov, pe_center=w // 2, acquired_pe=acquired_pe,
        acquisition=_protocol_name(hdr), noise_samples=noise, format="twix", geometry=geometry,
        attrs={**_protocol_attrs(hdr, version), "slice_axis": slice_dims or {"Sli": 1},
               "readout_oversampling_removed": enc.remove, **dwell_attrs,
               **({"asymmetric_echo": True} if enc.asymmetric and epi_info is None else {})},
    )


def _sampling_mask(line_mask: np.ndarray, acquired_pe: tuple[int, int], enc: _Encoding, epi_info: Any,
                   n_col_out: int, ro_front: int) -> np.ndarray | None:
    """None (every acquirable line sampled), the line mask ``(W,)``, or for an asymmetric echo ``(H, W)``."""
    w = line_mask.shape[0]
    a, b = acquired_pe
    mask = None if line_mask[a:b].all() else line_mask
    if enc.asymmetric and epi_info is None:  # the zero-filled readout samples are unsampled k-space, not zeros
        ro = np.zeros(n_col_out, dtype=bool)
        ro[ro_front:ro_front + enc.n_col] = True
        mask = ro[:, None] & (line_mask if mask is not None else np.ones(w, dtype=bool))[None, :]
    return mask


def _unused_notes(categories: dict[str, Any], scan: Any, hdr: dict, sizes: dict[str, int], epi_info: Any,
                  notes: list[str]) -> None:
    """Notes on what is not used (or combined): phase-correction lines, ramp sampling, other categories."""
    if "phasecorr" in categories and epi_info is None:
        notes.append(f"{len(categories['phasecorr'].mdb_list)} EPI phase-correction lines not in the image; "
                     "Nyquist-ghost correction not performed")
    if any(m.is_flag_set("REFLECT") for m in scan.mdb_list):
        notes.append("reflected (EPI) lines reversed by twixtools")
    regrid_mode = _get(hdr, "Meas", "alRegridMode", 0)
    if isinstance(regrid_mode, list):
        regrid_mode = regrid_mode[0] if regrid_mode else 0
    if isinstance(regrid_mode, (int, float)) and regrid_mode > 1 and (epi_info is None or epi_info.ramp is None):
        notes.append(f"ramp-sampled readout (alRegridMode {int(regrid_mode)}) not regridded")
    for cat in ("refscan", "phasestab", "refphasestab0", "refphasestab1", "fidnav"):
        if cat in categories:
            notes.append(f"{len(categories[cat].mdb_list)} '{cat}' lines ignored")
    if sizes["Seg"] > 1 or int(scan.base_size["Seg"]) > 1:
        notes.append(f"{int(scan.base_size['Seg'])} segments combined")
    if int(scan.base_size["Ave"]) > 1:
        notes.append(f"{int(scan.base_size['Ave'])} averages averaged")


def _refscan(categories: dict[str, Any], enc: _Encoding, front: int, w: int, n_slices: int,
             notes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """The PAT reference (``refscan``) lines on the image grid: ``(calibration (slices, Cha, H, W), its line
    mask (W,), the notes)`` or None/None when there are none or they do not fit."""
    calibration = cal_lines = None
    if "refscan" in categories and not enc.asymmetric:
        got = read_twix_refscan(categories["refscan"], DIM_ORDER, enc.remove, front, w, n_slices)
        if got is None:
            notes.append(f"{len(categories['refscan'].mdb_list)} 'refscan' lines do not fit the image grid; ignored")
        else:
            calibration, cal_lines = got
            notes = [n for n in notes if "'refscan' lines ignored" not in n]
    return calibration, cal_lines, notes


def _twix_info(data: RawData, version: str, measurement: int, n_meas: int, categories: dict[str, Any],
               slice_dims: dict[str, int], notes: list[str], yaps: dict, scan: Any, epi_info: Any,
               messages: list[str]) -> dict[str, Any]:
    """``RawFile.info()`` extras (scans per category, notes, PAT, EPI); adds the PAT (and EPI) attributes to
    ``data.header.attrs``."""
    header = data.header
    extra: dict[str, Any] = {
        "twix_version": version,
        "measurement": f"{measurement % n_meas + 1} of {n_meas}",
        "scans": {k: len(v.mdb_list) for k, v in categories.items()},
        "slice_axis": slice_dims or {"Sli": 1},
        "notes": notes,
    }
    extra.update(pat_attrs(yaps))
    extra.update(calibration_summary(data))
    header.attrs.update(pat_attrs(yaps))
    n_reflect = sum(1 for m in scan.mdb_list if m.is_flag_set("REFLECT"))
    if epi_info is not None or n_reflect or "phasecorr" in categories:
        # the EPI correction data the file carries (also listed when the correction is off)
        extra["epi_navigators"] = len(categories["phasecorr"].mdb_list) if "phasecorr" in categories else 0
        shots = ((epi_info.detection or {}).get("shots", 1) if epi_info is not None else 1)
        extra["epi_reversed_lines"] = n_reflect if n_reflect or epi_info is None else (
            f"every second readout{' of each of the ' + str(shots) + ' shots' if shots > 1 else ''} "
            "(detected, no REFLECT flags)")
    if epi_info is not None:
        extra["epi_correction"] = epi_info.as_dict()
        header.attrs["epi_correction"] = epi_info.as_dict()
    if messages:
        extra["twixtools_messages"] = messages
    return extra


def open_twix(path: str | Path, *, remove_oversampling: bool = True, measurement: int = -1,
              epi_correction: bool = True) -> RawFile:
    """Read one measurement of a Siemens twix file into memory as a :class:`RawFile`.

    Parameters
    ----------
    path: the ``.dat`` file (VB, or VD/VE multi-raid).
    remove_oversampling: halve the readout (H) when the protocol says it is 2x oversampled.
    measurement: which measurement of a multi-raid file (-1: the last, the imaging scan).
    epi_correction: EPI ramp-sampling regridding and Nyquist-ghost correction (``recon.io.epi``) when the
        protocol has ramp sampling or the file has phase-correction navigators (``--no-epi-correction``).

    The k-space is ``(slices, coils, H, W)`` complex64 on the scanner's scale; see ``data_specs/twix.md``.
    Steps: header parsing (:func:`_parse_encoding`), acquisition sorting and reading (twixtools' categories,
    :func:`_read_image`), partitions and phase-encode filling, assembly (:func:`_assemble_kspace`), noise,
    header, mask, reference lines.
    """
    path = check_input_file(path)
    version, n_meas, meas, categories, messages = _open_measurement(path, measurement)
    hdr = meas["hdr"]
    scan = categories["image"]
    notes: list[str] = []
    yaps = hdr.get("MeasYaps", {})
    enc = _parse_encoding(hdr, scan, remove_oversampling, notes)
    arr, epi_info, ro_front = _read_image(scan, categories, hdr, enc, epi_correction, messages, notes, path)
    sizes = dict(zip(DIM_ORDER, arr.shape))
    acquired_lines = _acquired_lines(scan, sizes["Lin"])
    arr = _partitions_to_slices(arr, scan, yaps, sizes, notes)
    arr, line_mask, acquired_pe, front = _fill_phase_encode(arr, scan, sizes, enc.pe_lines, acquired_lines, notes)
    w = arr.shape[DIM_ORDER.index("Lin")]
    n_cha, n_col_out = arr.shape[-2], arr.shape[-1]
    kspace, slice_dims, geometry = _assemble_kspace(arr, scan, sizes, notes)
    noise, noise_line = _noise_samples(categories, n_cha, notes)
    dwell_attrs = _dwell_times(hdr, version, enc.n_col, n_col_out, noise_line, notes)
    header = _twix_header(hdr, version, enc, kspace.shape, int(sizes["Par"]), acquired_pe, noise, geometry,
                          slice_dims, dwell_attrs, epi_info, notes)
    mask = _sampling_mask(line_mask, acquired_pe, enc, epi_info, n_col_out, ro_front)
    _unused_notes(categories, scan, hdr, sizes, epi_info, notes)
    calibration, cal_lines, notes = _refscan(categories, enc, front, w, kspace.shape[0], notes)
    data = RawData(kspace, header, mask=mask, path=path, calibration=calibration, calibration_mask=cal_lines)
    extra = _twix_info(data, version, measurement, n_meas, categories, slice_dims, notes, yaps, scan, epi_info,
                       messages)
    return InMemoryRawFile(data, "twix", extra)
