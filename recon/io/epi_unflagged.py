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

Segmented (multi-shot, interleaved) EPI: the readouts are grouped into shots by the MDH time stamps (a pause
of ``SHOT_GAP_TICKS`` x 2.5 ms or more between two readouts starts a new shot, :func:`shot_layout`). When
there are ``S > 1`` shots of ``E >= 2`` readouts each, the candidate reading puts readout ``e`` of shot ``i``
at ky line ``i + S e`` (the Pulseq tutorial's blip of ``S`` lines after each readout) and reverses the odd
readouts *of each shot* (:func:`line_order`); its odd/even phase is fitted from the ky-adjacent line pairs of
opposite polarity, which are the ``E - 1`` segment boundaries. A single shot is the ``S = 1`` case. Shots of
``MIN_TRAIN`` readouts or more are whole single-shot images (multi-slice EPI, or repetitions): each becomes
a slice of its own, read and fitted as single-shot EPI.

Ramp sampling cannot be regridded: the gradient waveform lives in the ``.seq`` file, not in the twix file.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from recon.io.epi import EpiCorrection, fit_odd_even_phase, ghost_correction, to_k, to_x
from recon.io.ghost import ghost_to_signal_ratio, object_mask

__all__ = ["is_pulseq", "reverse_odd", "shot_layout", "line_order", "alternation", "fit_reference_free",
           "fit_segment_boundaries", "correct_unflagged"]

THRESHOLD = 0.7
SHOT_GAP_TICKS = 3  # MDH TimeStamp ticks of 2.5 ms: readouts of one EPI train are < 2 ms apart, shots a TR
MIN_TRAIN = 32  # readouts in a shot from which it is a whole single-shot image, not a segment of one


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


def shot_layout(timestamps: np.ndarray | None, n_lines: int) -> tuple[int, int]:
    """``(shots, readouts per shot)`` from the readouts' MDH time stamps (ticks of 2.5 ms) in ADC order: a
    pause of ``SHOT_GAP_TICKS`` ticks or more starts a new shot. ``(1, n_lines)`` (one train) unless there
    are several shots, all of the same length of at least 2 readouts."""
    if timestamps is None or len(timestamps) != n_lines or n_lines < 2:
        return 1, n_lines
    ts = np.asarray(timestamps, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(ts) >= SHOT_GAP_TICKS) + 1]
    lengths = np.diff(np.r_[starts, n_lines])
    if starts.size > 1 and lengths[0] >= 2 and np.all(lengths == lengths[0]):
        return int(starts.size), int(lengths[0])
    return 1, n_lines


def line_order(shots: int, per_shot: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, reflected)`` of interleaved segmented EPI: ky line ``i + shots * e`` is ADC index
    ``i * per_shot + e`` (readout ``e`` of shot ``i``), reflected when ``e`` is odd. ``shots == 1`` is
    single-shot EPI: ADC order, every second readout reflected."""
    order = np.arange(shots * per_shot).reshape(shots, per_shot).T.reshape(-1)
    return order, np.repeat(np.arange(per_shot) % 2 == 1, shots)


def _read_lines(k: np.ndarray, order: np.ndarray, reflected: np.ndarray) -> np.ndarray:
    """x-space lines ``(L, C, N)`` in ky order, reflected readouts reversed (as :func:`reverse_odd`)."""
    out = k[order].copy()
    out[reflected] = out[reflected][..., ::-1]
    return to_x(out)


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


def fit_segment_boundaries(x: np.ndarray, reflected: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the odd/even phase of segmented EPI from x-space lines ``(L, C, N)`` in ky order: every
    pair of ky-adjacent lines of opposite polarity (the segment boundaries) gives ``neg * conj(pos)``."""
    edges = np.flatnonzero(reflected[1:] != reflected[:-1])
    if edges.size == 0:
        return 0.0, 0.0
    pos = [x[n] if not reflected[n] else x[n + 1] for n in edges]
    neg = [x[n + 1] if not reflected[n] else x[n] for n in edges]
    return fit_odd_even_phase(np.concatenate(pos), np.concatenate(neg))


def _apply(x: np.ndarray, a: float, b: float, reflected: np.ndarray | None = None) -> np.ndarray:
    """``x`` with positive lines times ``exp(+i phi / 2)`` and reflected ones (default: odd) ``exp(-i phi / 2)``."""
    cpos, cneg = ghost_correction(a, b, x.shape[-1])
    neg = (np.arange(x.shape[0]) % 2 == 1) if reflected is None else reflected
    out = x.copy()
    out[~neg] *= cpos
    out[neg] *= cneg
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


def _fit(x: np.ndarray, k: np.ndarray, reflected: np.ndarray, shots: int) -> tuple[float, float]:
    """The reference-free fit of one slice: ``x`` its candidate lines, ``k`` its stored readouts."""
    return fit_segment_boundaries(x, reflected) if shots > 1 else fit_reference_free(x, _central_rows(k))


def _detect(k: np.ndarray, order: np.ndarray, reflected: np.ndarray,
            shots: int) -> tuple[dict[str, float], float, float]:
    """Detection figures of the candidate reading of the first slice ``k`` ``(L, C, N)``, and its fit."""
    xs, xr = to_x(k), _read_lines(k, order, reflected)
    a, b = _fit(xr, k, reflected, shots)
    xc = _apply(xr, a, b, reflected)
    img_c = _image(xc)
    mask = object_mask(img_c)
    rows = _central_rows(k[order])
    figs = {"alternation_stored": alternation(xs, _central_rows(k)), "alternation_reversed": alternation(xc, rows),
            "ghost_to_signal_stored": _gsr(_image(xs), mask), "ghost_to_signal_reversed": _gsr(_image(xr), mask),
            "ghost_to_signal_corrected": _gsr(img_c, mask)}
    return {key: round(v, 4) for key, v in figs.items()}, a, b


def _notes(figs: dict[str, Any], use_phase: bool, shots: int, per_shot: int) -> list[str]:
    how = ("every second readout reversed" if shots == 1 else
           f"{shots} shots x {per_shot} readouts (from the time stamps), each shot a single-shot image on the slice "
           "axis in acquisition order (slices or repetitions: the file does not say which), every second readout "
           "of each shot reversed" if figs.get("shots_are_images") else
           f"segmented: {shots} shots x {per_shot} readouts (from the time stamps) interleaved, readout e of shot i "
           f"at ky line i + {shots} e, every second readout of each shot reversed")
    return ["unflagged EPI (Pulseq): " + how + " (detected from the data: line alternation "
            f"{figs['alternation_stored']:.3f} -> {figs['alternation_reversed']:.3f}, ghost-to-signal "
            f"{figs['ghost_to_signal_stored']:.3f} -> {figs['ghost_to_signal_corrected' if use_phase else 'ghost_to_signal_reversed']:.3f})",
            "no phase-correction navigators in the file: " + (
                "Nyquist ghost corrected per slice by a reference-free odd/even phase fit on the image lines"
                if use_phase else "the reference-free odd/even phase fit did not lower the ghost; lines only reversed"),
            "ramp sampling unknown (the gradient waveform is in the Pulseq .seq file, not the twix file): "
            "readouts not regridded"]


def _split_trains(arr: np.ndarray, k: np.ndarray, shots: int, per_shot: int, slice_axis: int | None
                  ) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """Shots of at least ``MIN_TRAIN`` readouts in a file without slice counters (``k`` one slice): each shot
    is a whole single-shot image. Returns the shots as slices ``(S, E, C, N)`` and the output shape (``S`` on
    ``slice_axis``, ``E`` lines), or None when the shots are segments of one image."""
    if shots < 2 or per_shot < MIN_TRAIN or k.shape[0] != 1 or slice_axis is None:
        return None
    axis = slice_axis % arr.ndim
    shape = tuple(shots if i == axis else n for i, n in enumerate(arr.shape[:-3])) + (per_shot, *arr.shape[-2:])
    return k.reshape(shots, per_shot, *k.shape[-2:]), shape


def correct_unflagged(arr: np.ndarray, timestamps: np.ndarray | None = None, slice_axis: int | None = None
                      ) -> tuple[np.ndarray, EpiCorrection | None, list[str], dict[str, Any]]:
    """Detect and correct unflagged EPI in a twixtools array ``(..., Lin, Cha, Col)`` (Lin = ADC order).

    ``timestamps``: the MDH time stamps of the ``Lin`` readouts (one slice; :func:`shot_layout`), which tell
    single-shot, segmented and multi-shot EPI apart: shots of fewer than ``MIN_TRAIN`` readouts are the
    interleaved segments of one image (:func:`line_order`); longer ones are single-shot images, one per
    slice or repetition (a Pulseq file does not say which), put on ``slice_axis`` of the returned array.
    The decision is made on the first slice (all share the sequence); each slice gets its own
    reference-free fit. Returns the array (unchanged when not EPI; lines in ky order when EPI), what was
    done (None when not EPI), notes, and the detection figures (``alternation_*``, ``ghost_to_signal_*``,
    ``shots``, ``readouts_per_shot``, ``shots_are_images``).
    """
    k = arr.reshape(-1, *arr.shape[-3:])
    if k.shape[1] < 8:
        return arr, None, [], {}
    shots, per_shot = shot_layout(timestamps, k.shape[1])
    split = _split_trains(arr, k, shots, per_shot, slice_axis)
    out_shape = arr.shape if split is None else split[1]
    if split is not None:
        k = split[0]
    layout = (shots, per_shot) if split is None else (1, per_shot)
    order, reflected = line_order(*layout)
    figs, _, _ = _detect(k[0], order, reflected, layout[0])
    figs.update(shots=shots, readouts_per_shot=per_shot, shots_are_images=split is not None)
    epi_like = (figs["alternation_reversed"] < THRESHOLD * figs["alternation_stored"]
                and figs["ghost_to_signal_corrected"] < THRESHOLD * figs["ghost_to_signal_stored"])
    if not epi_like:
        return arr, None, [], figs
    use_phase = figs["ghost_to_signal_corrected"] < figs["ghost_to_signal_reversed"]
    info = EpiCorrection(navigators=0, source="reference-free" if use_phase else "none",
                         detection={**figs, "phase_applied": use_phase})
    out = np.empty_like(k)
    for s in range(k.shape[0]):
        x = _read_lines(k[s], order, reflected)
        if use_phase:
            a_s, b_s = _fit(x, k[s], reflected, layout[0])
            x = _apply(x, a_s, b_s, reflected)
            info.ghost[s] = [a_s, b_s]
        out[s] = to_k(x)
    notes = _notes(figs, use_phase, shots, per_shot)
    return out.reshape(out_shape).astype(np.complex64), info, notes, figs
