"""Coil compression to fewer virtual coils: SVD/PCA (one matrix) and geometric (GCC, one per readout position).

* SVD (Buehrer et al. 2007; Huang et al. 2008): the virtual coils are the leading principal components of the
  coil covariance ``sum y y^H`` over all samples: one ``(n, C)`` matrix ``A`` for the whole data set.
* GCC (Zhang, Pauly, Levesque, MRM 69:571-582, 2013): after an inverse FFT along the fully sampled readout
  (H), a separate ``A(x)`` per readout position ``x`` from the covariance of a window of positions around
  ``x``; consecutive matrices are then aligned (``A(x) <- P A(x)`` with ``P`` the unitary closest to
  ``A(x-1) A(x)^H``) so that virtual coils vary smoothly along the readout, as parallel imaging needs.

Compression keeps the energy ``||A y||^2 / ||y||^2`` (reported); noise should be whitened first.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from recon.coils._tensor import ArrayLike, as_complex_tensor, with_slice_axis
from recon.errors import UsageError
from recon.operators.fft import fft2c, ifft2c


@dataclass
class CoilCompression:
    """A coil compression.

    Attributes
    ----------
    matrix: ``(n, C)`` (SVD) or ``(H, n, C)`` (GCC, one per readout position) complex64.
    num_virtual: ``n``.
    energy: fraction of the input energy the virtual coils keep (0..1).
    method: ``svd`` or ``gcc``.
    """

    matrix: torch.Tensor
    num_virtual: int
    energy: float
    method: str


def _choose_count(eigvals_desc: torch.Tensor, num_coils: int | None, energy: float | None) -> int:
    """Virtual coil count from a target number or an energy fraction (eigenvalues ``(..., C)``, largest first)."""
    c = eigvals_desc.shape[-1]
    if (num_coils is None) == (energy is None):
        raise UsageError("give exactly one of num_coils or energy")
    if num_coils is not None:
        if not 1 <= int(num_coils) <= c:
            raise UsageError(f"num_coils must be between 1 and {c}, got {num_coils}")
        return int(num_coils)
    if not 0.0 < float(energy) <= 1.0:  # type: ignore[arg-type]
        raise UsageError(f"energy must be in (0, 1], got {energy}")
    lam = eigvals_desc.clamp_min(0).reshape(-1, c).sum(0)
    frac = torch.cumsum(lam, 0) / lam.sum().clamp_min(1e-30)
    return int(min(c, int(torch.searchsorted(frac, torch.tensor([float(energy) - 1e-7], dtype=frac.dtype, device=frac.device)).item()) + 1))


def _kspace(kspace: ArrayLike) -> tuple[torch.Tensor, bool]:
    k = as_complex_tensor(kspace, "kspace", (3, 4))
    return with_slice_axis(k, 3)


def svd_compression(kspace: ArrayLike, num_coils: int | None = None, energy: float | None = None) -> CoilCompression:
    """SVD coil compression from all samples of ``kspace`` ``(S, C, H, W)`` (or a calibration region).

    Give the virtual coil count ``num_coils`` or the ``energy`` fraction to keep (smallest count reaching it).
    """
    k, _ = _kspace(kspace)
    c = k.shape[1]
    flat = k.transpose(0, 1).reshape(c, -1)
    cov = (flat @ flat.conj().T).to(torch.complex128)
    vals, vecs = torch.linalg.eigh(0.5 * (cov + cov.conj().T))
    vals, vecs = vals.flip(-1), vecs.flip(-1)
    n = _choose_count(vals, num_coils, energy)
    matrix = vecs[:, :n].conj().T.to(torch.complex64)  # (n, C): virtual = U^H y
    kept = float(vals[:n].clamp_min(0).sum() / vals.clamp_min(0).sum().clamp_min(1e-30))
    return CoilCompression(matrix, n, kept, "svd")


def _readout_hybrid(k: torch.Tensor) -> torch.Tensor:
    """Inverse centred FFT along the readout (H) only: ``(S, C, H, W)`` k-space -> ``(S, C, x, ky)``."""
    return ifft2c(k, dim=(-2,))


def gcc_compression(
    kspace: ArrayLike,
    num_coils: int | None = None,
    energy: float | None = None,
    window: int = 5,
    align: bool = True,
) -> CoilCompression:
    """Geometric coil compression along the readout (H) of ``kspace`` ``(S, C, H, W)``.

    Parameters
    ----------
    num_coils / energy: virtual coil count, or the energy fraction (the count is chosen on the mean
        spectrum over readout positions and then used at every position).
    window: readout positions pooled (centred, periodic) into each position's covariance; 1 = none.
    align: align consecutive matrices (Zhang et al.'s step 3); needed before GRAPPA/ESPIRiT on the result.
    """
    if window < 1:
        raise UsageError(f"window must be >= 1, got {window}")
    k, _ = _kspace(kspace)
    s, c, h, w = k.shape
    hyb = _readout_hybrid(k)  # (S, C, x, ky)
    per_x = hyb.permute(2, 1, 0, 3).reshape(h, c, s * w)  # (x, C, samples)
    cov = (per_x @ per_x.conj().transpose(-2, -1)).to(torch.complex128)  # (x, C, C)
    if window > 1:
        half = window // 2
        cov = sum(torch.roll(cov, shifts=d, dims=0) for d in range(-half, window - half))  # type: ignore[assignment]
    vals, vecs = torch.linalg.eigh(0.5 * (cov + cov.conj().transpose(-2, -1)))
    vals, vecs = vals.flip(-1), vecs.flip(-1)
    n = _choose_count(vals, num_coils, energy)
    mats = vecs[..., :n].conj().transpose(-2, -1)  # (x, n, C)
    if align and n > 0:
        aligned = [mats[0]]
        for x in range(1, h):
            m = aligned[-1] @ mats[x].conj().T  # (n, n)
            u, _, vh = torch.linalg.svd(m)
            aligned.append((u @ vh) @ mats[x])
        mats = torch.stack(aligned)
    mats = mats.to(torch.complex64)
    comp = torch.einsum("xnc,scxk->snxk", mats, hyb)
    kept = float(torch.sum(comp.abs() ** 2) / torch.sum(hyb.abs() ** 2).clamp_min(1e-30))
    return CoilCompression(mats, n, kept, "gcc")


def compress(kspace: ArrayLike, compression: CoilCompression) -> torch.Tensor:
    """Apply a compression: ``(S, C, H, W)`` -> ``(S, n, H, W)`` k-space (``(C, H, W)`` -> ``(n, H, W)``)."""
    k, added = _kspace(kspace)
    mat = compression.matrix.to(k.device)
    if mat.shape[-1] != k.shape[1]:
        raise UsageError(f"compression for {mat.shape[-1]} coils applied to {k.shape[1]} coils")
    if mat.dim() == 2:
        out = torch.einsum("nc,schw->snhw", mat, k)
    else:
        if mat.shape[0] != k.shape[2]:
            raise UsageError(f"GCC compression for readout length {mat.shape[0]} applied to readout {k.shape[2]}")
        out = fft2c(torch.einsum("xnc,scxk->snxk", mat, _readout_hybrid(k)), dim=(-2,))
    return out[0] if added else out


def svd_compress(kspace: ArrayLike, num_coils: int | None = None, energy: float | None = None) -> tuple[torch.Tensor, CoilCompression]:
    """SVD-compressed k-space and the compression used (see :func:`svd_compression`)."""
    cc = svd_compression(kspace, num_coils, energy)
    return compress(kspace, cc), cc


def gcc_compress(
    kspace: ArrayLike, num_coils: int | None = None, energy: float | None = None, window: int = 5, align: bool = True
) -> tuple[torch.Tensor, CoilCompression]:
    """GCC-compressed k-space and the compression used (see :func:`gcc_compression`)."""
    cc = gcc_compression(kspace, num_coils, energy, window, align)
    return compress(kspace, cc), cc
