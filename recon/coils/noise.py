"""Noise prewhitening: make the coils' noise uncorrelated with unit variance.

With noise covariance ``Psi = L L^H`` (Cholesky), the whitening matrix is ``W = L^{-1}``: whitened data
``W y`` have noise covariance ``W Psi W^H = I``. Apply ``W`` to k-space (or coil images) along the coil axis,
and to sensitivity maps estimated from unwhitened data (``y = S x + n`` -> ``W y = (W S) x + W n``).
No receiver-bandwidth ratio scaling is applied: noise scans and data are assumed to share the bandwidth.
"""
from __future__ import annotations

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


def prewhiten_raw(raw: RawData) -> RawData:
    """A copy of ``raw`` with whitened k-space; its header's noise covariance becomes the identity.

    Raises :class:`DataError` naming the file when the header has no noise covariance or noise samples.
    """
    h = raw.header
    if not h.has_noise:
        raise DataError("no noise covariance or noise samples to prewhiten with", raw.path)
    try:
        w = whitening_matrix(covariance=h.noise_covariance) if h.noise_covariance is not None \
            else whitening_matrix(noise_samples=h.noise_samples)
    except (DataError, UsageError) as exc:
        raise DataError(exc.reason, raw.path) from None
    k = apply_coil_matrix(raw.kspace, w).numpy()
    eye = np.eye(raw.num_coils, dtype=np.complex64)
    samples = None if h.noise_samples is None else (w @ torch.from_numpy(np.asarray(h.noise_samples, np.complex64))).numpy()
    header = h.copy(noise_covariance=eye, noise_samples=samples, attrs={**h.attrs, "prewhitened": True})
    return RawData(k, header, raw.mask, raw.reference, raw.reference_name, raw.path)
