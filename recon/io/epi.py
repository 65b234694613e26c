"""EPI corrections of raw readouts: ramp-sampling regridding and Nyquist-ghost (odd/even echo) correction.

Specification: ``data_specs/epi.md``. Both act on readouts *before* the phase-encode Fourier transform,
on the full (oversampled) readout, in the order the scanner applies them:

1. **Ramp-sampling regridding.** The readout gradient is a trapezoid (Siemens ``alRegridMode`` 2) or a
   sinusoid-ramped trapezoid (mode 4) with ramp-up / flat-top / ramp-down times (us), sampled for
   ``aflRegridADCDuration`` us starting ``alRegridDelaySamplesTime`` us after the ramp starts. The k-space
   position of sample ``i`` (time ``delay + (i + 1/2) * dwell``) is the gradient's integral
   (:func:`ramp_trajectory`), in units of the uniform output grid spacing, centred on ``n_out // 2``. Each
   readout is interpolated onto the uniform grid by band-limited (sinc) interpolation, solved in the
   least-squares sense with a small Tikhonov term (:func:`regrid_matrix`), as Gadgetron's trapezoid
   EPI reconstruction does.
2. **Nyquist-ghost correction** from the phase-correction navigators (three readouts without phase
   encoding, alternating polarity). Readouts of each polarity are averaged, transformed to x-space, and
   the phase difference ``phi(x) = angle(sum_c neg_c(x) * conj(pos_c(x)))`` is fitted by ``a + b * x``
   (:func:`fit_odd_even_phase`: slope from the magnitude-weighted lag-1 autocorrelation, intercept from
   the weighted mean of the de-sloped phase, then one refit without the points more than 3 robust
   standard deviations off the line). Positive readouts are multiplied by ``exp(+i phi / 2)`` and
   negative (reflected) ones by ``exp(-i phi / 2)`` in x-space, per slice (Gadgetron's EPICorr model).

Arrays: a readout is ``(..., n)`` complex along its last axis; k-space is centred (index ``n // 2`` is
k = 0), transforms are centred and orthonormal, as everywhere in :mod:`recon.io`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RampSpec", "ramp_trajectory", "regrid_matrix", "regrid", "fit_odd_even_phase",
           "ghost_correction", "to_x", "to_k", "EpiCorrection"]


def to_x(k: np.ndarray, axis: int = -1) -> np.ndarray:
    """Centred orthonormal inverse FFT along ``axis`` (k-space readout -> x-space)."""
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=axis), axis=axis, norm="ortho"), axes=axis)


def to_k(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Centred orthonormal FFT along ``axis`` (x-space -> k-space readout)."""
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


@dataclass(frozen=True)
class RampSpec:
    """A ramp-sampled readout (times in microseconds).

    mode: 2 trapezoid, 4 sinusoidal ramps (Siemens ``alRegridMode``); 1 = no ramp sampling.
    rampup_us, flattop_us, rampdown_us: gradient lobe timing.
    delay_us: time from the start of the ramp-up to the start of the ADC.
    adc_us: ADC duration.
    n_out: samples of the uniform output grid (``alRegridDestSamples``).
    """

    mode: int
    rampup_us: float
    flattop_us: float
    rampdown_us: float
    delay_us: float
    adc_us: float
    n_out: int

    @classmethod
    def from_twix(cls, meas: dict[str, Any], n_col: int) -> "RampSpec | None":
        """The spec from a twix ``Meas`` protocol (None when it is missing or mode < 2)."""
        def first(key: str, default: float = 0.0) -> float:
            v = meas.get(key)
            if isinstance(v, (list, tuple)):
                v = v[0] if v else default
            return float(v) if isinstance(v, (int, float)) else default

        mode = int(first("alRegridMode", 1))
        if mode < 2:
            return None
        spec = cls(mode, first("alRegridRampupTime"), first("alRegridFlattopTime"),
                   first("alRegridRampdownTime"), first("alRegridDelaySamplesTime"),
                   first("aflRegridADCDuration"), int(first("alRegridDestSamples", n_col)) or n_col)
        if spec.adc_us <= 0 or spec.rampup_us + spec.flattop_us + spec.rampdown_us <= 0:
            return None
        return spec

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "rampup_us": self.rampup_us, "flattop_us": self.flattop_us,
                "rampdown_us": self.rampdown_us, "delay_us": self.delay_us, "adc_us": self.adc_us,
                "n_out": self.n_out}


def _gradient(spec: RampSpec, t: np.ndarray) -> np.ndarray:
    """Normalised readout gradient amplitude (flat top = 1) at times ``t`` (us) from the ramp start."""
    up, top, down = spec.rampup_us, spec.flattop_us, spec.rampdown_us
    g = np.ones_like(t)
    on_up, on_down = t < up, t > up + top
    u = np.clip(t / up, 0, 1) if up > 0 else np.ones_like(t)
    d = np.clip((t - up - top) / down, 0, 1) if down > 0 else np.ones_like(t)
    if spec.mode == 4:
        g = np.where(on_up, np.sin(np.pi / 2 * u), g)
        g = np.where(on_down, np.cos(np.pi / 2 * d), g)
    else:
        g = np.where(on_up, u, g)
        g = np.where(on_down, 1 - d, g)
    return g


def ramp_trajectory(spec: RampSpec, n_col: int, oversample: int = 64) -> np.ndarray:
    """k-space position of each of the ``n_col`` acquired samples, in output-grid units, shape ``(n_col,)``.

    The position is the gradient's time integral from the start of the ramp-up (computed on a fine
    grid, ``oversample`` points per dwell), shifted so that the middle of the acquired k-range is 0 and
    scaled so that the whole ADC window spans ``n_out`` grid steps, matching the uniform grid
    ``arange(n_out) - n_out // 2`` used by :func:`regrid_matrix` (a readout without ramps maps sample
    ``i`` onto grid point ``i - n // 2`` exactly).
    """
    dwell = spec.adc_us / n_col
    t_fine = spec.delay_us + dwell * (np.arange(n_col * oversample + 1) / oversample)
    g = _gradient(spec, t_fine)
    area = np.concatenate([[0.0], np.cumsum((g[1:] + g[:-1]) / 2) * dwell / oversample])
    t_samples_idx = (np.arange(n_col) + 0.5) * oversample
    k = np.interp(t_samples_idx, np.arange(t_fine.size), area)
    total = area[-1]
    k = (k - total / 2) * (spec.n_out / total)
    # without ramps sample i then sits exactly at grid point i - n // 2 (k = 0 on sample n // 2)
    return k - 0.5 * (n_col % 2 == 0)


def regrid_matrix(traj: np.ndarray, n_out: int, tikhonov: float = 1e-3) -> np.ndarray:
    """``(n_out, n_col)`` real matrix mapping ramp-sampled readouts to the uniform grid.

    ``A[i, j] = sinc(traj[i] - (j - n_out // 2))`` interpolates band-limited uniform samples onto the
    acquired positions; the returned matrix is its Tikhonov-regularised pseudo-inverse
    ``(A^T A + lam I)^-1 A^T`` with ``lam = tikhonov * trace(A^T A) / n_out``.
    """
    grid = np.arange(n_out) - n_out // 2
    a = np.sinc(traj[:, None] - grid[None, :])
    ata = a.T @ a
    lam = tikhonov * np.trace(ata) / n_out
    return np.linalg.solve(ata + lam * np.eye(n_out), a.T)


def regrid(data: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply :func:`regrid_matrix` along the last axis: ``(..., n_col) -> (..., n_out)`` complex64."""
    return np.einsum("...j,ij->...i", data, matrix.astype(np.float64)).astype(np.complex64)


def fit_odd_even_phase(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Fit ``phi(x) = a + b * x`` to the phase of ``neg * conj(pos)`` in x-space.

    pos, neg: ``(coils, n)`` x-space navigators of each polarity (coil-summed after the product).
    x is the sample index minus ``n // 2``. Returns ``(a, b)`` in radians and radians per sample.
    Samples weighted by magnitude; those below 10% of the peak do not count; one robust refit.
    """
    prod = np.sum(neg * np.conj(pos), axis=0)
    n = prod.size
    x = np.arange(n) - n // 2
    mag = np.abs(prod)
    use = mag >= 0.1 * mag.max() if mag.max() > 0 else np.ones(n, dtype=bool)
    for _ in range(2):
        w = np.where(use, mag, 0.0)
        lag = np.sum((prod[1:] * np.conj(prod[:-1]))[use[1:] & use[:-1]])
        b = float(np.angle(lag)) if abs(lag) > 0 else 0.0
        a = float(np.angle(np.sum(w * prod * np.exp(-1j * b * x))))
        resid = np.angle(prod * np.exp(-1j * (a + b * x)))
        sd = 1.4826 * np.median(np.abs(resid[use])) if use.any() else 0.0
        keep = use & (np.abs(resid) <= max(3 * sd, 1e-6))
        if keep.sum() < 4 or np.array_equal(keep, use):
            break
        use = keep
    return a, b


@dataclass
class EpiCorrection:
    """What was done to an EPI acquisition (for ``recon info`` and output attributes)."""

    ramp: dict[str, Any] | None = None
    ghost: dict[str, list[float]] = field(default_factory=dict)  # slice -> [a rad, b rad/sample]
    navigators: int = 0
    source: str = "navigators"  # where the ghost phase came from: "navigators" or "reference-free"
    detection: dict[str, Any] | None = None  # unflagged EPI: the figures that decided it (epi_unflagged)

    def as_dict(self) -> dict[str, Any]:
        out = {"ramp_regridding": self.ramp, "navigators": self.navigators, "ghost_phase_source": self.source,
               "ghost_phase_per_slice": {str(k): [round(v, 6) for v in ab] for k, ab in self.ghost.items()}}
        if self.detection is not None:
            out["detection"] = self.detection
        return out


def ghost_correction(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """x-space multipliers ``(for positive readouts, for negative readouts)``, each ``(n,)`` complex64."""
    x = np.arange(n) - n // 2
    phi = a + b * x
    return np.exp(0.5j * phi).astype(np.complex64), np.exp(-0.5j * phi).astype(np.complex64)


# ------------------------------------------------------------------------------------------ twix


def _reflect_map(mdb_list: Any, shape: tuple[int, ...], dim_order: tuple[str, ...],
                 averaged: tuple[str, ...]) -> np.ndarray:
    """Boolean ``shape[:-2]``: True where the readout landing there was reflected (negative polarity)."""
    out = np.zeros(shape[:-2], dtype=bool)
    dims = dim_order[:-2]
    for mdb in mdb_list:
        if not mdb.is_flag_set("REFLECT"):
            continue
        c = mdb.mdh.Counter
        idx = tuple(0 if d in averaged else int(getattr(c, d)) for d in dims)
        if all(i < n for i, n in zip(idx, out.shape)):
            out[idx] = True
    return out


def apply_twix(arr: np.ndarray, image_mdbs: Any, phasecorr_mdbs: Any, meas: dict[str, Any],
               dim_order: tuple[str, ...], averaged: tuple[str, ...], *, correct: bool,
               remove_os: bool, regrid_ramps: bool = True) -> tuple[np.ndarray, EpiCorrection | None, list[str]]:
    """Ramp regridding + ghost correction + readout-oversampling removal of a twixtools array.

    arr: the full array in twixtools' ``dim_order`` (``..., Lin, Cha, Col``), reflected readouts
        already reversed by twixtools, oversampling *not* removed.
    image_mdbs / phasecorr_mdbs: the image and phase-correction MDBs (their counters and REFLECT flags).
    correct: False = ``--no-epi-correction`` (only the oversampling removal is done).
    regrid_ramps: False = ghost correction only (the ramp-ignoring comparison of the sharpness target).
    Returns the new array (``Col`` possibly changed), what was done, and notes.
    """
    notes: list[str] = []
    n_col = arr.shape[-1]
    info = EpiCorrection() if correct else None
    spec = RampSpec.from_twix(meas, n_col) if correct and regrid_ramps else None
    matrix = None
    if spec is not None:
        matrix = regrid_matrix(ramp_trajectory(spec, n_col), spec.n_out)
        arr = regrid(arr, matrix)
        info.ramp = spec.as_dict()  # type: ignore[union-attr]
        notes.append(f"ramp-sampled readout regridded onto {spec.n_out} uniform samples "
                     f"(alRegridMode {spec.mode}, ramps {spec.rampup_us:g}/{spec.rampdown_us:g} us, "
                     f"flat top {spec.flattop_us:g} us)")
    x = to_x(arr)
    n = x.shape[-1]
    if correct and phasecorr_mdbs:
        sli_axis = dim_order.index("Sli")
        navs: dict[int, dict[bool, list[np.ndarray]]] = {}
        for mdb in phasecorr_mdbs:
            d = np.asarray(mdb.data, dtype=np.complex64)
            if d.ndim != 2 or d.shape[-1] != n_col:
                continue
            neg = bool(mdb.is_flag_set("REFLECT"))
            if neg:
                d = d[:, ::-1]
            navs.setdefault(int(mdb.mdh.Counter.Sli), {}).setdefault(neg, []).append(d)
        reflect = _reflect_map(image_mdbs, arr.shape, dim_order, averaged)
        fits: dict[int, tuple[float, float]] = {}
        for sli, by_pol in sorted(navs.items()):
            if True not in by_pol or False not in by_pol:
                continue
            pos, neg = (np.mean(by_pol[p], axis=0) for p in (False, True))
            if matrix is not None:
                pos, neg = regrid(pos, matrix), regrid(neg, matrix)
            fits[sli] = fit_odd_even_phase(to_x(pos), to_x(neg))
        if fits:
            info.navigators = sum(len(v) for p in navs.values() for v in p.values())  # type: ignore[union-attr]
            for sli, (a, b) in fits.items():
                if sli >= arr.shape[sli_axis]:
                    continue
                cpos, cneg = ghost_correction(a, b, n)
                sel = [slice(None)] * (arr.ndim - 2)
                sel[sli_axis] = sli
                sub = x[tuple(sel)]  # view (..., Cha, Col) of this slice
                r = reflect[tuple(sel)][..., None, None]
                sub *= np.where(r, cneg, cpos)
                info.ghost[sli] = [a, b]  # type: ignore[union-attr]
            notes.append(f"Nyquist ghost corrected per slice from {info.navigators} phase-correction "  # type: ignore[union-attr]
                         f"navigators (constant + linear odd/even phase)")
        else:
            notes.append("phase-correction navigators of both polarities not found: no ghost correction")
    elif not correct:
        notes.append("EPI correction off (--no-epi-correction): no ramp regridding, no ghost correction")
    if remove_os:
        half = n // 2
        # twixtools' scale: its unnormalised-FFT crop leaves 1/sqrt(2) of the orthonormal image
        x = x[..., (n - half) // 2:(n - half) // 2 + half] * np.float32(np.sqrt(half / n))
    return to_k(x).astype(np.complex64), info, notes
