"""Noise prewhitening: make the coils' noise uncorrelated with unit variance.

With noise covariance ``Psi = L L^H`` (Cholesky), the whitening matrix is ``W = L^{-1}``: whitened data
``W y`` have noise covariance ``W Psi W^H = I``. Apply ``W`` to k-space (or coil images) along the coil axis,
and to sensitivity maps estimated from unwhitened data (``y = S x + n`` -> ``W y = (W S) x + W n``).

Bandwidth ratio (:func:`noise_bandwidth_ratio`, as Gadgetron's noise adjust): white noise variance per sample
scales with the receiver bandwidth ``1 / dwell``, so noise scans taken with dwell ``t_noise`` describe data of
dwell ``t_data`` up to the factor ``t_noise / t_data``. :func:`prewhitening_for` therefore scales ``W`` by
``sqrt(t_data / t_noise)`` (the *bandwidth ratio* ``t_data / t_noise`` = noise bandwidth over data bandwidth),
after which the *data's* noise covariance is the identity. The dwell times come from the header attributes
``dwell_time_us`` (of the k-space samples as read, after any readout-oversampling removal) and
``noise_dwell_time_us`` (the readers fill them: ``data_specs/conventions.md``, "Noise prewhitening"); when
either is unknown the ratio is 1 and the result says so. Gadgetron's further constant
``sqrt(2 * relativeReceiverNoiseBandwidth)`` (SNR units, Kellman & McVeigh 2005) is not applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recon.coils._tensor import ArrayLike, as_complex_tensor
from recon.errors import DataError, UsageError
from recon.io.types import RawData


def noise_covariance(noise_samples: ArrayLike) -> torch.Tensor:
    """Sample covariance ``(C, C)`` of noise-only samples ``(C, N)``: ``n n^H / N`` (zero-mean noise assumed)."""
    n = as_complex_tensor(noise_samples, "noise_samples", (2,))
    if n.shape[1] < n.shape[0]:
        raise DataError(
            f"noise_samples has {n.shape[1]} samples for {n.shape[0]} coils: need at least as many samples as coils"
        )
    return (n @ n.conj().T) / n.shape[1]


def whitening_matrix(covariance: ArrayLike | None = None, noise_samples: ArrayLike | None = None) -> torch.Tensor:
    """Whitening matrix ``W = L^{-1}`` ``(C, C)`` from a noise covariance ``(C, C)`` or noise samples ``(C, N)``.

    Raises :class:`UsageError` if neither or both are given, :class:`DataError` if the covariance is not
    Hermitian positive definite.
    """
    if (covariance is None) == (noise_samples is None):
        raise UsageError("whitening_matrix needs exactly one of covariance or noise_samples")
    if covariance is None:
        psi = noise_covariance(noise_samples)
    else:
        psi = as_complex_tensor(covariance, "covariance", (2,))
        if psi.shape[0] != psi.shape[1]:
            raise UsageError(f"covariance must be square (C, C), got shape {tuple(psi.shape)}")
    herm_err = float(torch.linalg.matrix_norm(psi - psi.conj().T)) / max(float(torch.linalg.matrix_norm(psi)), 1e-30)
    if herm_err > 1e-4:
        raise DataError(f"noise covariance is not Hermitian (relative asymmetry {herm_err:.2g})")
    psi = 0.5 * (psi + psi.conj().T)
    chol, info = torch.linalg.cholesky_ex(psi.to(torch.complex128))
    if int(info) != 0:
        raise DataError("noise covariance is not positive definite (Cholesky failed); a coil may be dead or duplicated")
    eye = torch.eye(psi.shape[0], dtype=torch.complex128, device=psi.device)
    return torch.linalg.solve_triangular(chol, eye, upper=False).to(torch.complex64)


def apply_coil_matrix(x: ArrayLike, matrix: ArrayLike, coil_dim: int = -3) -> torch.Tensor:
    """``out[..., d, ...] = sum_c matrix[d, c] x[..., c, ...]`` along ``coil_dim``.

    ``x`` is k-space / coil images ``(S, C, H, W)`` or ``(C, H, W)``, or maps ``(S, [M,] C, H, W)``;
    ``matrix`` is ``(D, C)``: a whitening matrix, or a coil compression matrix.
    """
    t = as_complex_tensor(x, "x", (2, 3, 4, 5))
    m = as_complex_tensor(matrix, "matrix", (2,), t.device)
    if m.shape[1] != t.shape[coil_dim]:
        raise UsageError(f"matrix of shape {tuple(m.shape)} does not fit {t.shape[coil_dim]} coils (shape {tuple(t.shape)})")
    moved = t.movedim(coil_dim, -1)
    return (moved @ m.T).movedim(-1, coil_dim)


def prewhiten(kspace: ArrayLike, covariance: ArrayLike | None = None, noise_samples: ArrayLike | None = None) -> torch.Tensor:
    """Whitened k-space ``(S, C, H, W)`` (or ``(C, H, W)``) from a noise covariance or noise samples."""
    return apply_coil_matrix(kspace, whitening_matrix(covariance, noise_samples))


def noise_bandwidth_ratio(header: Any) -> tuple[float, str | None]:
    """``(t_data / t_noise, note)``: the bandwidth ratio from the header's ``dwell_time_us`` and
    ``noise_dwell_time_us`` attributes; ``(1.0, why)`` when either is missing or not a positive number."""
    attrs = getattr(header, "attrs", None) or {}
    t_data, t_noise = attrs.get("dwell_time_us"), attrs.get("noise_dwell_time_us")
    try:
        t_data, t_noise = float(t_data), float(t_noise)
    except (TypeError, ValueError):
        missing = [n for n, v in (("data", t_data), ("noise", t_noise)) if v is None]
        return 1.0, f"bandwidth ratio 1 assumed: {' and '.join(missing) or 'a'} dwell time unknown"
    if not (np.isfinite(t_data) and np.isfinite(t_noise) and t_data > 0 and t_noise > 0):
        return 1.0, f"bandwidth ratio 1 assumed: dwell times {t_data} (data) / {t_noise} (noise) us not usable"
    return t_data / t_noise, None


@dataclass(frozen=True)
class Prewhitening:
    """The whitening applied to a file's data: ``matrix`` = ``sqrt(bandwidth_ratio) * L^{-1}`` (``(C, C)``
    complex64), ``unscaled`` = ``L^{-1}``, and what :meth:`record` writes into outputs."""

    matrix: torch.Tensor
    unscaled: torch.Tensor
    bandwidth_ratio: float
    note: str | None = None
    dwell_time_us: float | None = None
    noise_dwell_time_us: float | None = None

    def record(self) -> dict[str, Any]:
        """JSON-serialisable: ``{"prewhitened": True, "bandwidth_ratio", "dwell_time_us",
        "noise_dwell_time_us", "note"}`` (the last three only when known)."""
        out: dict[str, Any] = {"prewhitened": True, "bandwidth_ratio": float(self.bandwidth_ratio)}
        for key in ("dwell_time_us", "noise_dwell_time_us", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def prewhitening_for(header: Any, path: Any = None, *, bandwidth_correction: bool = True) -> Prewhitening:
    """The :class:`Prewhitening` of a header with noise (covariance or samples), bandwidth ratio applied
    unless ``bandwidth_correction=False``. :class:`DataError` naming ``path`` without noise or for an unusable
    covariance."""
    if not header.has_noise:
        raise DataError("no noise covariance or noise samples to prewhiten with", path)
    try:
        w = whitening_matrix(covariance=header.noise_covariance) if header.noise_covariance is not None \
            else whitening_matrix(noise_samples=header.noise_samples)
    except (DataError, UsageError) as exc:
        raise DataError(exc.reason, path) from None
    ratio, note = noise_bandwidth_ratio(header) if bandwidth_correction else (1.0, "bandwidth correction off")
    attrs = getattr(header, "attrs", None) or {}
    dwell = {k: float(attrs[k]) for k in ("dwell_time_us", "noise_dwell_time_us")
             if isinstance(attrs.get(k), (int, float))}
    scaled = (w * float(np.sqrt(ratio))).to(torch.complex64)
    return Prewhitening(scaled, w, float(ratio), note, dwell.get("dwell_time_us"), dwell.get("noise_dwell_time_us"))


def apply_prewhitening(raw: RawData, pw: Prewhitening) -> RawData:
    """A copy of ``raw`` whitened with ``pw``; its header's noise covariance becomes the identity (the data's
    noise after whitening) and its noise samples ``L^{-1} n`` (identity covariance up to sampling error)."""
    h = raw.header
    if pw.matrix.shape[1] != raw.num_coils:
        raise DataError(f"noise has {pw.matrix.shape[1]} coils, the data {raw.num_coils}", raw.path)
    k = apply_coil_matrix(raw.kspace, pw.matrix).numpy()
    eye = np.eye(raw.num_coils, dtype=np.complex64)
    samples = None if h.noise_samples is None else \
        (pw.unscaled @ torch.from_numpy(np.asarray(h.noise_samples, np.complex64))).numpy()
    header = h.copy(noise_covariance=eye, noise_samples=samples,
                    attrs={**h.attrs, "prewhitened": True, "noise_bandwidth_ratio": pw.bandwidth_ratio})
    cal = None if raw.calibration is None else apply_coil_matrix(raw.calibration, pw.matrix).numpy()  # same coils
    return RawData(k, header, raw.mask, raw.reference, raw.reference_name, raw.path, cal, raw.calibration_mask)


def prewhiten_raw(raw: RawData, *, bandwidth_correction: bool = True) -> RawData:
    """A copy of ``raw`` with whitened k-space (bandwidth ratio applied, :func:`prewhitening_for`); its
    header's noise covariance becomes the identity.

    Raises :class:`DataError` naming the file when the header has no noise covariance or noise samples.
    """
    return apply_prewhitening(raw, prewhitening_for(raw.header, raw.path, bandwidth_correction=bandwidth_correction))
