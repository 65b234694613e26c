"""Derived twix files written from a real fully sampled one (twixtools ``write_twix``), for tests and benchmarks.

* :func:`derive_pat` drops phase-encode lines for acceleration R with the reference lines flagged as the
  scanner flags them: ``separate`` = every R-th line as imaging data plus ``n_ref`` centre lines repeated as
  extra ``PATREFSCAN`` scans; ``integrated`` = every R-th line plus the centre ``n_ref`` lines kept in the image
  and flagged ``PATREFSCAN`` + ``PATREFANDIMASCAN``. ``sPat.lAccelFactPE`` in the protocol is set to R.
* :func:`derive_partial_fourier` removes the first lines (phase encode) or the first readout samples (columns,
  an asymmetric echo) for 5/8, 6/8, 7/8 partial Fourier and sets ``sKSpace.ucPhasePartialFourier`` /
  ``ucReadoutPartialFourier`` (Siemens codes 2, 4, 8 = 5/8, 6/8, 7/8; 16 = off).

Header edits are same-length byte replacements inside the raw protocol (``hdr_str``), so the header
length stays valid. Needs ``twixtools``; only VD/VE files (``write_twix`` writes VE only).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["derive_pat", "derive_partial_fourier", "PF_CODES"]

#: Siemens ``sKSpace.uc*PartialFourier`` codes
PF_CODES = {0.5: 1, 0.625: 2, 0.75: 4, 0.875: 8, 1.0: 16}


def _read(src: str | Path) -> dict:
    # deferred: loads twixtools, which importing recon.io.twix_derive does not
    import twixtools

    scans = twixtools.read_twix(str(src), verbose=False, keep_acqend=True, parse_pmu=False, parse_geometry=False)
    return scans[-1]


def _set_yaps(scan: dict, key: str, value: int) -> None:
    """Set ``key = value`` in the protocol's MeasYaps (ASCCONV) text: a same-length replacement."""
    raw = bytes(scan["hdr_str"])
    pattern = re.compile(re.escape(key.encode()) + rb"(\t = \t)(\S+)")
    def repl(m: re.Match) -> bytes:
        old = m.group(2)
        new = str(value).encode()
        if len(new) > len(old):
            raise ValueError(f"{key}: {value} does not fit in the {len(old)} characters of {old!r}")
        return key.encode() + m.group(1) + new.rjust(len(old), b"0")
    out, n = pattern.subn(repl, raw)
    if n == 0:
        raise ValueError(f"{key} not in the protocol")
    scan["hdr_str"] = np.frombuffer(out, dtype=scan["hdr_str"].dtype).copy()


def _write(scan: dict, dst: str | Path) -> Path:
    # deferred: loads twixtools, which importing recon.io.twix_derive does not
    import twixtools

    dst = Path(dst)
    if dst.exists():
        dst.unlink()
    twixtools.write_twix([scan], str(dst), version_is_ve=True)
    return dst


def _image_mdbs(scan: dict) -> tuple[list, list]:
    data = [m for m in scan["mdb"] if not m.is_flag_set("ACQEND") and not m.is_flag_set("SYNCDATA")]
    rest = [m for m in scan["mdb"] if m.is_flag_set("ACQEND")]
    return data, rest


def pat_lines(n_lines: int, centre: int, accel: int, n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """(imaging lines, reference lines) as boolean ``(n_lines,)``: every R-th line through ``centre``, and the
    ``n_ref`` lines centred on ``centre``."""
    lines = np.arange(n_lines)
    imaging = (lines - centre) % accel == 0
    ref = (lines >= centre - n_ref // 2) & (lines < centre - n_ref // 2 + n_ref)
    return imaging, ref


def derive_pat(src: str | Path, dst: str | Path, accel: int, n_ref: int = 24, mode: str = "separate") -> Path:
    """Write ``dst``: ``src`` accelerated by ``accel`` with ``n_ref`` reference lines (``separate``/``integrated``)."""
    if mode not in ("separate", "integrated"):
        raise ValueError(f"mode must be separate or integrated, got {mode!r}")
    scan = _read(src)
    data, rest = _image_mdbs(scan)
    n_lines = max(int(m.mdh.Counter.Lin) for m in data) + 1
    centre = int(data[0].mdh.CenterLin)
    imaging, ref = pat_lines(n_lines, centre, accel, n_ref)
    out = []
    if mode == "separate":  # the reference scan comes first, as on the scanner
        for m in data:
            if ref[int(m.mdh.Counter.Lin)]:
                r = m.convert_to_local()
                r.add_flag("PATREFSCAN")
                out.append(r)
        out += [m for m in data if imaging[int(m.mdh.Counter.Lin)]]
    else:
        for m in data:
            lin = int(m.mdh.Counter.Lin)
            if ref[lin]:
                m = m.convert_to_local()
                m.add_flag("PATREFSCAN")
                m.add_flag("PATREFANDIMASCAN")
                out.append(m)
            elif imaging[lin]:
                out.append(m)
    scan["mdb"] = out + rest
    _set_yaps(scan, "sPat.lAccelFactPE", accel)
    return _write(scan, dst)


def derive_partial_fourier(src: str | Path, dst: str | Path, fraction: float, axis: str = "phase") -> Path:
    """Write ``dst``: ``src`` with ``fraction`` (5/8, 6/8 or 7/8) partial Fourier along ``phase`` or ``readout``.

    Phase: the first lines (``Lin`` < centre - (fraction - 1/2) * lines) are removed. Readout: the first
    columns are removed from every line (``CenterCol`` and ``CutOff`` updated), as an asymmetric echo.
    """
    code = PF_CODES.get(float(fraction))
    if code is None or fraction >= 1 or fraction <= 0.5:
        raise ValueError(f"fraction must be 5/8, 6/8 or 7/8, got {fraction}")
    scan = _read(src)
    data, rest = _image_mdbs(scan)
    if axis == "phase":
        n_lines = max(int(m.mdh.Counter.Lin) for m in data) + 1
        first = int(round(n_lines * (1 - fraction)))
        scan["mdb"] = [m for m in data if int(m.mdh.Counter.Lin) >= first] + rest
        _set_yaps(scan, "sKSpace.ucPhasePartialFourier", code)
    elif axis == "readout":
        out = []
        for m in data:
            m = m.convert_to_local()
            n_col = int(m.mdh.SamplesInScan)
            cut = int(round(n_col * (1 - fraction)))
            m.data = np.ascontiguousarray(np.atleast_2d(m.data)[:, cut:])  # updates SamplesInScan
            m.mdh.CenterCol = int(m.mdh.CenterCol) - cut
            out.append(m)
        scan["mdb"] = out + rest
        _set_yaps(scan, "sKSpace.ucReadoutPartialFourier", code)
    else:
        raise ValueError(f"axis must be phase or readout, got {axis!r}")
    return _write(scan, dst)
