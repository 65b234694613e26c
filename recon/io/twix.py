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
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import CorruptFileError, DataError, MissingDependencyError, UsageError, require
from recon.io.calibration import calibration_summary, pat_attrs, read_twix_refscan
from recon.io.paths import check_input_file
from recon.io.types import Header, InMemoryRawFile, RawData, RawFile

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
    """
    path = check_input_file(path)
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
    hdr = meas["hdr"]
    scan = categories["image"]
    notes: list[str] = []

    # --- readout oversampling ------------------------------------------------------------------
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

    for dim in DIM_ORDER:
        scan.flags["average"][dim] = dim in AVERAGED
    import recon.io.epi as epi

    epi_mode = epi_correction and ("phasecorr" in categories or
                                   epi.RampSpec.from_twix(hdr.get("Meas", {}), n_col) is not None)
    scan.flags["remove_os"] = remove and not epi_mode  # EPI: removed after regridding (recon.io.epi)
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
                                                  AVERAGED, correct=True, remove_os=remove)
        notes.extend(epi_notes)
    elif epi_correction and not asymmetric and not any(m.is_flag_set("REFLECT") for m in scan.mdb_list):
        from recon.io.epi_unflagged import correct_unflagged, is_pulseq

        if is_pulseq(hdr):  # no EPI flags at all: reflected lines and ghost found from the data
            arr, epi_info, epi_notes, _ = correct_unflagged(arr)
            notes.extend(epi_notes)
    if asymmetric and not epi_mode:  # the echo centre (MDH CenterCol) lands at H // 2 of the full readout
        ro_front = min(max(full_col // 2 - centre_col, 0), full_col - n_col)
        arr = np.pad(arr, [(0, 0)] * (arr.ndim - 1) + [(ro_front, full_col - n_col - ro_front)])
    sizes = dict(zip(DIM_ORDER, arr.shape))

    # --- which lines hold data (before padding) --------------------------------------------------
    acquired_lines = np.zeros(sizes["Lin"], dtype=bool)
    for mdb in scan.mdb_list:
        lin = int(mdb.mdh.Counter.Lin)
        if lin < sizes["Lin"]:
            acquired_lines[lin] = True

    # --- 3D: partitions -> slices by an inverse FFT along Par ------------------------------------
    par_axis = DIM_ORDER.index("Par")
    if sizes["Par"] > 1:
        centre_par = int(scan.kspace_center_par)
        arr, _ = _centre_pad(arr, par_axis, int(_get(yaps, "sKSpace", "lPartitions", default=0) or 0),
                             centre_par if centre_par > 0 else None)
        arr = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(arr, axes=par_axis), axis=par_axis, norm="ortho"),
                              axes=par_axis).astype(np.complex64)
        sizes["Par"] = arr.shape[par_axis]
        notes.append(f"3D: {sizes['Par']} partitions inverse-Fourier transformed into slices")

    # --- phase encode: zero-fill to the protocol and put the centre line at W // 2 --------------
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

    # --- (..., Lin, Cha, Col) -> (slices, Cha, Col, Lin) --------------------------------------------
    n_cha, n_col_out = arr.shape[-2], arr.shape[-1]
    kspace = arr.reshape(-1, w, n_cha, n_col_out).transpose(0, 2, 3, 1)
    slice_dims = {d: int(sizes[d]) for d in DIM_ORDER[:lin_axis] if sizes[d] > 1}
    from recon.io.geometry import sort_by_position, twix_geometry

    geometry = twix_geometry(scan.mdb_list, sizes, DIM_ORDER, AVERAGED)
    if geometry is not None and len(geometry) == kspace.shape[0]:  # slices in spatial order (interleaving)
        order = sort_by_position(geometry)
        if np.any(order != np.arange(order.size)):
            kspace, geometry = kspace[order], geometry.take(order)
            notes.append("slices sorted by position along the slice normal")
    else:
        geometry = None

    # --- noise scans ----------------------------------------------------------------------------
    noise = None
    if "noise" in categories:
        blocks = [np.asarray(m.data) for m in categories["noise"].mdb_list]
        if blocks and all(b.ndim == 2 and b.shape[0] == n_cha for b in blocks):
            noise = np.concatenate(blocks, axis=1).astype(np.complex64)
        else:
            notes.append("noise scans ignored: their channel count differs from the image data")
    dwell_attrs = _dwell_times(hdr, version, n_col, n_col_out, blocks[0].shape[-1] if noise is not None else None,
                               notes)

    # --- header -----------------------------------------------------------------------------------
    slice0 = _get(yaps, "sSliceArray", "asSlice", 0, default={}) or {}
    ro_fov = float(slice0.get("dReadoutFOV", 0.0) or 0.0)
    pe_fov = float(slice0.get("dPhaseFOV", 0.0) or 0.0)
    thick = float(slice0.get("dThickness", 0.0) or 0.0)
    h_factor = (2 if (oversampled and not remove) else 1)
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
    n_z = int(sizes["Par"])
    header = Header(
        encoded_matrix=(n_col_out, w, n_z), recon_matrix=(recon_x, recon_y, n_z), num_coils=n_cha,
        encoded_fov_mm=encoded_fov, recon_fov_mm=recon_fov, pe_center=w // 2, acquired_pe=acquired_pe,
        acquisition=_protocol_name(hdr), noise_samples=noise, format="twix", geometry=geometry,
        attrs={**_protocol_attrs(hdr, version), "slice_axis": slice_dims or {"Sli": 1},
               "readout_oversampling_removed": remove, **dwell_attrs,
               **({"asymmetric_echo": True} if asymmetric and epi_info is None else {})},
    )
    a, b = acquired_pe
    mask = None if line_mask[a:b].all() else line_mask
    if asymmetric and epi_info is None:  # the zero-filled readout samples are unsampled k-space, not zeros
        ro = np.zeros(n_col_out, dtype=bool)
        ro[ro_front:ro_front + n_col] = True
        mask = ro[:, None] & (line_mask if mask is not None else np.ones(w, dtype=bool))[None, :]

    # --- what is not used -----------------------------------------------------------------------
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

    calibration = cal_lines = None
    if "refscan" in categories and not asymmetric:
        got = read_twix_refscan(categories["refscan"], DIM_ORDER, remove, front, w, kspace.shape[0])
        if got is None:
            notes.append(f"{len(categories['refscan'].mdb_list)} 'refscan' lines do not fit the image grid; ignored")
        else:
            calibration, cal_lines = got
            notes = [n for n in notes if "'refscan' lines ignored" not in n]
    data = RawData(kspace, header, mask=mask, path=path, calibration=calibration, calibration_mask=cal_lines)
    extra: dict[str, Any] = {
        "twix_version": version,
        "measurement": f"{measurement % len(measurements) + 1} of {len(measurements)}",
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
        extra["epi_reversed_lines"] = n_reflect if n_reflect or epi_info is None else (
            "every second readout (detected, no REFLECT flags)")
    if epi_info is not None:
        extra["epi_correction"] = epi_info.as_dict()
        header.attrs["epi_correction"] = epi_info.as_dict()
    if messages:
        extra["twixtools_messages"] = messages
    return InMemoryRawFile(data, "twix", extra)
