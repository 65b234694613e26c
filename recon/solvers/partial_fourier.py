"""Partial-Fourier completion for the direct methods: POCS (default), homodyne, or zero filling.

A partial-Fourier acquisition samples one side of k-space fully and the other only up to a short distance
past the centre, along the phase encode (twix ``ucPhasePartialFourier``, MRD encoding limits off-centre) or
the readout (asymmetric echo). :func:`detect` finds the sampled extent from the data (``RawData.mask`` and
the nonzero readout samples), so every reader is covered; the headers' fractions are reported beside it.

* ``pocs`` (Haacke et al. 1991): the phase of the low-resolution image from the symmetric centre band
  (Hann-weighted) is imposed on the image, its k-space outside the sampled region kept, the sampled region
  reset to the data; ``iterations`` times (default 10).
* ``homodyne`` (Noll et al. 1991): the sampled k-space weighted 2 on the unpaired side, 1 in the symmetric
  band, the image demodulated by the low-resolution phase, the real part kept.
* ``zero``: the unsampled part stays zero.

All act per coil on complex k-space ``(..., H, W)`` (centred orthonormal FFTs, ``recon.io.fourier``); the
direct methods then combine coils by RSS. The iterative and learned methods do not call this: there the
missing part is simply unsampled k-space, which their data-consistency models already handle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.errors import UsageError
from recon.io.fourier import fft2c, ifft2c
from recon.sampling import SamplingMask

__all__ = ["MODES", "PartialFourier", "detect", "complete", "pocs", "homodyne", "partial_fourier_method"]

MODES = ("pocs", "homodyne", "zero")
POCS_ITERATIONS = 10


@dataclass
class PartialFourier:
    """Sampled extents ``[start, stop)`` along H (readout) and W (phase encode) of a ``(H, W)`` grid."""

    shape: tuple[int, int]
    readout: tuple[int, int]
    phase: tuple[int, int]

    def _partial(self, axis: int) -> bool:
        lo, hi = (self.readout, self.phase)[axis]
        n = self.shape[axis]
        c = n // 2
        left, right = c - lo, hi - 1 - c
        return abs(left - right) > max(2, 0.05 * n) and min(left, right) > 0

    @property
    def partial_readout(self) -> bool:
        return self._partial(0)

    @property
    def partial_phase(self) -> bool:
        return self._partial(1)

    @property
    def is_partial(self) -> bool:
        return self.partial_readout or self.partial_phase

    def fraction(self, axis: int, full: tuple[int, int] | None = None) -> float:
        lo, hi = (self.readout, self.phase)[axis]
        a, b = full if full is not None else (0, self.shape[axis])
        return (hi - lo) / max(b - a, 1)

    def regions(self) -> tuple[np.ndarray, np.ndarray]:
        """(sampled region, symmetric band) as boolean ``(H, W)``; axes that are not partial count as whole."""
        masks, syms = [], []
        for axis, (lo, hi) in enumerate((self.readout, self.phase)):
            n = self.shape[axis]
            m = np.zeros(n, dtype=bool)
            s = np.zeros(n, dtype=bool)
            if self._partial(axis):
                c = n // 2
                d = min(c - lo, hi - 1 - c)
                m[lo:hi] = True
                s[c - d:c + d + 1] = True
            else:
                m[:] = True
                s[:] = True
            masks.append(m)
            syms.append(s)
        return masks[0][:, None] & masks[1][None, :], syms[0][:, None] & syms[1][None, :]

    def summary(self) -> dict[str, Any]:
        return {"readout": list(self.readout) if self.partial_readout else None,
                "phase_encode": list(self.phase) if self.partial_phase else None}


def _extent(flags: np.ndarray) -> tuple[int, int]:
    idx = np.flatnonzero(flags)
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, flags.size)


def detect(raw: Any) -> PartialFourier:
    """The sampled extents of ``raw`` (a :class:`~recon.io.types.RawData`): lines from its mask (or the
    header's ``acquired_pe``), readout samples from the nonzero k-space."""
    k = np.asarray(raw.kspace)
    h, w = k.shape[-2:]
    if raw.mask is not None and np.ndim(raw.mask) == 1:
        lines = np.asarray(raw.mask, dtype=bool)
    elif raw.mask is not None:
        lines = np.asarray(raw.mask, dtype=bool).reshape(-1, w).any(axis=0)
    else:
        lines = np.zeros(w, dtype=bool)
        a, b = raw.header.acquired_pe if raw.header.acquired_pe is not None else (0, w)
        lines[a:b] = True
    samples = np.abs(k).reshape(-1, h, w).max(axis=(0, 2)) > 0
    return PartialFourier((h, w), _extent(samples), _extent(lines))


def _hann_band(sym: np.ndarray) -> np.ndarray:
    """A separable Hann window over the symmetric band (the low-resolution phase filter), ``(H, W)``."""
    win = np.ones(sym.shape, dtype=np.float32)
    for axis in (0, 1):
        band = sym.any(axis=1 - axis)
        idx = np.flatnonzero(band)
        v = np.zeros(sym.shape[axis], dtype=np.float32)
        if idx.size and idx.size < sym.shape[axis]:
            v[idx] = np.hanning(idx.size + 2)[1:-1]
        else:
            v[:] = 1.0
        win *= v[:, None] if axis == 0 else v[None, :]
    return win


def _low_res_phase(kspace: np.ndarray, sym: np.ndarray) -> np.ndarray:
    return np.exp(1j * np.angle(ifft2c(kspace * _hann_band(sym)))).astype(np.complex64)


def pocs(kspace: np.ndarray, region: np.ndarray, sym: np.ndarray, iterations: int = POCS_ITERATIONS) -> np.ndarray:
    """POCS-completed k-space ``(..., H, W)`` (complex64); ``region``/``sym`` boolean ``(H, W)``."""
    k0 = np.asarray(kspace, dtype=np.complex64) * region
    phase = _low_res_phase(k0, sym)
    k = k0
    for _ in range(int(iterations)):
        image = np.abs(ifft2c(k)) * phase
        k = np.where(region, k0, fft2c(image)).astype(np.complex64)
    return k


def homodyne(kspace: np.ndarray, region: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """Homodyne image ``(..., H, W)`` (real part after demodulation, float32; may be negative)."""
    k0 = np.asarray(kspace, dtype=np.complex64) * region
    # weight 2 where the conjugate point is not sampled, 1 where both are (the symmetric band), 0 elsewhere
    conj = np.roll(region[::-1, ::-1], (1 - region.shape[0] % 2, 1 - region.shape[1] % 2), axis=(0, 1))
    weight = np.where(region & conj, 1.0, np.where(region, 2.0, 0.0)).astype(np.float32)
    phase = _low_res_phase(k0, sym)
    return np.real(ifft2c(k0 * weight) * np.conj(phase)).astype(np.float32)


def complete(kspace: np.ndarray, pf: PartialFourier, mode: str = "pocs") -> np.ndarray:
    """Coil images ``(..., C, H, W)`` complex (pocs, zero) or real (homodyne) of partial-Fourier k-space."""
    if mode not in MODES:
        raise UsageError(f"--partial-fourier must be one of {', '.join(MODES)}, got {mode!r}")
    region, sym = pf.regions()
    if mode == "zero" or not pf.is_partial:
        return ifft2c(np.asarray(kspace, np.complex64) * region)
    if mode == "pocs":
        return ifft2c(pocs(kspace, region, sym))
    return homodyne(kspace, region, sym)


def _line_mask(raw: Any) -> np.ndarray:
    """``(W,)``: the phase-encode lines of ``raw`` (an asymmetric echo's ``(H, W)`` mask reduced to its lines)."""
    w = raw.kspace.shape[-1]
    if raw.mask is None:
        return np.ones(w, dtype=bool)
    m = np.asarray(raw.mask, dtype=bool)
    return m if m.ndim == 1 else m.reshape(-1, w).any(axis=0)


def partial_fourier_method(raw: Any, method: str, mode: str = "pocs", **options: Any) -> np.ndarray:
    """``(1|S, H, W)`` float32 magnitude of a direct method (``zero-filled``, ``grappa``, ``sense``) with the
    partial-Fourier part completed by ``mode``.

    zero-filled: the measured coil k-space; grappa: the GRAPPA-filled coil k-space (lines synthesised only
    inside the sampled extent); sense: the SENSE image's k-space (one virtual coil). Then :func:`complete`
    per coil and RSS.
    """

    # deferred: loads torch, tqdm, which importing recon.solvers.partial_fourier does not
    from recon.solvers.reconstruct import reconstruct

    pf = detect(raw)
    device = options.pop("device", None)
    if method == "zero-filled":
        k = raw.kspace * SamplingMask.of_raw(raw).array
    elif method == "grappa":
        # deferred: loads torch, tqdm, which importing recon.solvers.partial_fourier does not
        from recon.solvers.grappa import grappa
        # deferred: loads torch, tqdm, which importing recon.solvers.partial_fourier does not
        from recon.solvers.reconstruct import GRAPPA_KERNEL, GRAPPA_REG

        lam = options.pop("lam", None)
        mask = _line_mask(raw)
        res = grappa(raw.kspace, mask, kernel_size=GRAPPA_KERNEL, reg=GRAPPA_REG if lam is None else float(lam),
                     fill_range=pf.phase, device=device, calibration=raw.calibration,
                     calibration_mask=raw.calibration_mask)
        k = res.extras["kspace"].cpu().numpy()
    elif method == "sense":
        res = reconstruct(raw, "sense", device=device, **options)
        k = fft2c(res.complex_image)[:, None]
    else:
        raise UsageError(f"partial-Fourier completion is for zero-filled, grappa and sense, not {method!r}")
    images = complete(np.asarray(k), pf, mode)
    return np.sqrt((np.abs(images) ** 2).sum(axis=1)).astype(np.float32)
