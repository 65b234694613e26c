"""EPI without scanner flags (Pulseq twix files): reflected lines and Nyquist ghost found from the data.

Specification: ``data_specs/epi.md`` ("EPI without flags"). A Pulseq sequence runs on the scanner's generic
interpreter: its twix file has no ``REFLECT`` flags, no ``PHASCOR`` navigators and no regrid protocol, and
its ``Lin`` counter is the ADC index (acquisition order). Whether it is EPI is decided from the data:

1. ``k`` is one slice's readouts ``(L, C, N)`` in acquisition order. The candidate reading reverses every
   second readout (odd ADC index) and fits the odd/even phase ``a + b x`` *reference-free* from the image
   lines themselves: products ``neg_n * conj(pos_{n-1})`` and ``neg_n * conj(pos_{n+1})`` of the 16
   strongest (central) lines, coil-summed, fitted by :func:`recon.io.epi.fit_odd_even_phase` (the two
   neighbours cancel the first-order ky phase between adjacent lines).
2. The candidate is EPI when it makes the lines smooth along ky and the image ghost-free:
   the *alternation* ``sum |X_{n+1} - X_n|^2 / sum (|X_{n+1}|^2 + |X_n|^2)`` of the central x-space lines
   drops below ``0.7`` x that of the stored lines **and** the ghost-to-signal ratio
   (:func:`recon.io.ghost.ghost_to_signal_ratio`) of the candidate image drops below ``0.7`` x that
   of the stored image (both measured with the candidate's object mask).
3. The fitted phase is kept only when it lowers the ghost-to-signal ratio of the reversed-only image
   (otherwise the lines are only reversed; ``phase_applied`` False).

Ramp sampling cannot be regridded: the gradient waveform lives in the ``.seq`` file, not in the twix file.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from recon.io.epi import EpiCorrection, fit_odd_even_phase, ghost_correction, to_k, to_x
from recon.io.ghost import ghost_to_signal_ratio, object_mask

__all__ = ["is_pulseq", "reverse_odd", "alternation", "fit_reference_free", "correct_unflagged"]

THRESHOLD = 0.7


def is_pulseq(hdr: dict[str, Any]) -> bool:
    """True for a twix protocol run by the Pulseq interpreter (``tSequenceFileName`` ``%CustomerSeq%\\pulseq...``
    or the special card names ``external.seq``)."""
    yaps = hdr.get("MeasYaps", {})
    name = str(yaps.get("tSequenceFileName", "")).lower()
    free = str((yaps.get("sWipMemBlock") or {}).get("tFree", "")).lower()
    return "pulseq" in name.rsplit("\\", 1)[-1] or free.endswith(".seq")


def reverse_odd(k: np.ndarray) -> np.ndarray:
    """``(L, C, N)`` copy with readouts ``1, 3, 5, ...`` reversed along N (Pulseq samples sit at the dwell
    centres, symmetric about the echo, so a plain reversal keeps k = 0 in place)."""
    out = k.copy()
    out[1::2] = out[1::2, :, ::-1]
    return out


def _central_rows(k: np.ndarray, n: int = 16) -> np.ndarray:
    peak = int(np.argmax(np.sum(np.abs(k) ** 2, axis=(1, 2))))
    lo = min(max(peak - n // 2, 0), max(k.shape[0] - n, 0))
    return np.arange(lo, min(lo + n, k.shape[0]))


def alternation(x: np.ndarray, rows: np.ndarray) -> float:
    """Energy of the line-to-line difference over the lines' energy, x-space ``(L, C, N)``, rows ``rows``."""
    s = x[rows]
    d = np.sum(np.abs(s[1:] - s[:-1]) ** 2)
    e = np.sum(np.abs(s[1:]) ** 2) + np.sum(np.abs(s[:-1]) ** 2)
    return float(d / e) if e > 0 else 1.0


def fit_reference_free(x: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the odd/even phase from x-space lines ``(L, C, N)`` whose odd lines are the negative
    (reversed) ones, using each odd line of ``rows`` against both even neighbours."""
    pos, neg = [], []
    for n in rows:
        if n % 2 == 1 and 0 < n < x.shape[0] - 1:
            for m in (n - 1, n + 1):
                pos.append(x[m])
                neg.append(x[n])
    if not pos:
        return 0.0, 0.0
    return fit_odd_even_phase(np.concatenate(pos), np.concatenate(neg))


def _apply(x: np.ndarray, a: float, b: float) -> np.ndarray:
    cpos, cneg = ghost_correction(a, b, x.shape[-1])
    out = x.copy()
    out[0::2] *= cpos
    out[1::2] *= cneg
    return out


def _image(x: np.ndarray) -> np.ndarray:
    """RSS image ``(N, L)`` (H = readout) of x-space lines ``(L, C, N)``."""
    y = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(x, axes=0), axis=0, norm="ortho"), axes=0)
    return np.sqrt(np.sum(np.abs(y) ** 2, axis=1)).T


def _gsr(img: np.ndarray, mask: np.ndarray) -> float:
    try:
        return ghost_to_signal_ratio(img, mask)
    except ValueError:
        return float("nan")


def correct_unflagged(arr: np.ndarray) -> tuple[np.ndarray, EpiCorrection | None, list[str], dict[str, Any]]:
    """Detect and correct unflagged EPI in a twixtools array ``(..., Lin, Cha, Col)`` (Lin = ADC order).

    The decision is made on the first slice (all leading indices share the sequence); each slice gets its
    own reference-free fit. Returns the array (unchanged when not EPI), what was done (None when not EPI),
    notes, and the detection figures (``alternation_*``, ``ghost_to_signal_*``).
    """
    lead = arr.shape[:-3]
    k = arr.reshape(-1, *arr.shape[-3:])
    if k.shape[1] < 8:
        return arr, None, [], {}
    rows = _central_rows(k[0])
    xs, xr = to_x(k[0]), to_x(reverse_odd(k[0]))
    a, b = fit_reference_free(xr, rows)
    xc = _apply(xr, a, b)
    img_c = _image(xc)
    mask = object_mask(img_c)
    figs = {"alternation_stored": alternation(xs, rows), "alternation_reversed": alternation(xc, rows),
            "ghost_to_signal_stored": _gsr(_image(xs), mask), "ghost_to_signal_reversed": _gsr(_image(xr), mask),
            "ghost_to_signal_corrected": _gsr(img_c, mask)}
    figs = {key: round(v, 4) for key, v in figs.items()}
    epi_like = (figs["alternation_reversed"] < THRESHOLD * figs["alternation_stored"]
                and figs["ghost_to_signal_corrected"] < THRESHOLD * figs["ghost_to_signal_stored"])
    if not epi_like:
        return arr, None, [], figs
    use_phase = figs["ghost_to_signal_corrected"] < figs["ghost_to_signal_reversed"]
    info = EpiCorrection(navigators=0, source="reference-free" if use_phase else "none",
                         detection={**figs, "phase_applied": use_phase})
    out = np.empty_like(k)
    for s in range(k.shape[0]):
        x = to_x(reverse_odd(k[s]))
        if use_phase:
            a_s, b_s = fit_reference_free(x, _central_rows(k[s]))
            x = _apply(x, a_s, b_s)
            info.ghost[s] = [a_s, b_s]
        out[s] = to_k(x)
    notes = ["unflagged EPI (Pulseq): every second readout reversed (detected from the data: line alternation "
             f"{figs['alternation_stored']:.3f} -> {figs['alternation_reversed']:.3f}, ghost-to-signal "
             f"{figs['ghost_to_signal_stored']:.3f} -> {figs['ghost_to_signal_corrected' if use_phase else 'ghost_to_signal_reversed']:.3f})",
             "no phase-correction navigators in the file: " + (
                 "Nyquist ghost corrected per slice by a reference-free odd/even phase fit on the image lines"
                 if use_phase else "the reference-free odd/even phase fit did not lower the ghost; lines only reversed"),
             "ramp sampling unknown (the gradient waveform is in the Pulseq .seq file, not the twix file): "
             "readouts not regridded"]
    return out.reshape(*lead, *arr.shape[-3:]).astype(np.complex64), info, notes, figs
