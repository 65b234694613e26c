"""Multi-coil Cartesian k-space from real magnitude images: coils, background phase, noise, oversampling.

The forward model, per slice ``s`` and coil ``c`` (conventions: ``data_specs/conventions.md``)::

    x_s      = image_s * exp(i * phase_s)                      (H, W) clean complex image
    k_{s,c}  = fft2c( pad_H( S_c * x_s ) ) + n_{s,c}           (H * oversampling, W)

* ``S_c``: :func:`recon.simulate.coils.coil_sensitivities` on the (H, W) recon grid (``sum_c |S_c|^2 = 1``).
* ``pad_H``: readout oversampling, zero padding along H (the readout) to ``H * readout_oversampling``
  as a scanner's oversampled readout does; the header's *encoded* matrix is the padded size and its
  *recon* matrix the original one, so a reconstruction centre-cropped to the recon size is on the input grid.
* ``n``: complex Gaussian noise, per-channel standard deviation ``sigma = mean_signal / snr`` where
  ``mean_signal`` is the mean of ``|image|`` over the object (pixels above 10 % of the volume's maximum),
  over all slices. ``E|n|^2 = sigma^2`` (real and imaginary parts each ``sigma / sqrt(2)``); because the FFT
  is orthonormal, the noise has the same standard deviation in each coil image. Coils may be correlated
  (``noise_correlation``); the covariance used is returned and stored in the header.

The reference is fastMRI's ``reconstruction_rss``: the root sum of squares of the inverse FFT of the
noisy, fully sampled k-space, centre-cropped to the recon size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.errors import UsageError
from recon.arrays import center_crop_or_pad, rss
from recon.io.fourier import fft2c, ifft2c
from recon.io.types import Header, RawData
from recon.simulate.coils import coil_noise, coil_sensitivities, noise_covariance, smooth_phase

#: pixels above this fraction of the maximum count as object when measuring the mean signal for the SNR
OBJECT_THRESHOLD = 0.1


@dataclass
class SimulatedData:
    """The result of :func:`simulate_multicoil`.

    Attributes
    ----------
    raw: the k-space ``(S, C, H_enc, W)`` complex64 with its header; ``reference`` = ``reconstruction_rss``
        ``(S, H, W)`` float32 of the noisy fully sampled data.
    maps: ``(C, H, W)`` complex64 true coil sensitivities on the recon grid.
    images: ``(S, H, W)`` complex64 clean images (input magnitude times the background phase).
    noise_std: per-channel complex noise standard deviation ``sigma`` (same units as the images).
    noise_covariance: ``(C, C)`` complex64 noise covariance used (``sigma^2`` on the diagonal).
    """

    raw: RawData
    maps: np.ndarray
    images: np.ndarray
    noise_std: float
    noise_covariance: np.ndarray


def mean_signal(images: np.ndarray, threshold: float = OBJECT_THRESHOLD) -> float:
    """Mean of ``|images|`` over pixels above ``threshold`` times the maximum (the object)."""
    mag = np.abs(images)
    peak = float(mag.max())
    if peak <= 0:
        return 0.0
    return float(mag[mag > threshold * peak].mean())


def _checked_inputs(images: np.ndarray, snr: float | None, readout_oversampling: int) -> tuple[np.ndarray, int]:
    """``images`` as ``(S, H, W)`` real finite magnitudes and the integer readout oversampling, else UsageError."""
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise UsageError(f"images must have shape (slices, H, W), got {np.shape(images)}")
    if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number):
        raise UsageError(f"images must be real magnitude images, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise UsageError("images contain NaN/Inf")
    oversampling = int(readout_oversampling)
    if oversampling < 1 or oversampling != readout_oversampling:
        raise UsageError(f"readout_oversampling must be a positive integer, got {readout_oversampling}")
    if snr is not None and not float(snr) > 0:
        raise UsageError(f"snr must be positive (or None for no noise), got {snr}")
    return x, oversampling


def _simulated_header(size: tuple[int, int], oversampling: int, num_coils: int,
                      voxel_size_mm: tuple[float, float, float], acquisition: str, cov: np.ndarray,
                      simulation: dict[str, Any]) -> Header:
    """The header of simulated k-space: recon matrix ``size`` (H, W), readout ``oversampling`` x H encoded,
    fields of view from ``voxel_size_mm`` (H, W, thickness; mm), noise covariance ``cov`` ``(C, C)``."""
    h, w = size
    h_enc = h * oversampling
    dx, dy, dz = (float(v) for v in voxel_size_mm)
    return Header(
        encoded_matrix=(h_enc, w, 1),
        recon_matrix=(h, w, 1),
        num_coils=num_coils,
        encoded_fov_mm=(h_enc * dx, w * dy, dz),
        recon_fov_mm=(h * dx, w * dy, dz),
        acquisition=acquisition,
        noise_covariance=cov,
        attrs={
            "simulated": True,
            "simulation": simulation,
        },
    )


def simulate_multicoil(
    images: np.ndarray,
    *,
    num_coils: int = 8,
    snr: float | None = 30.0,
    seed: int = 0,
    readout_oversampling: int = 1,
    phase: bool = True,
    noise_correlation: float = 0.0,
    voxel_size_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    acquisition: str = "AXT1_SIM",
    maps: np.ndarray | None = None,
) -> SimulatedData:
    """Simulate fully sampled multi-coil k-space from real magnitude images.

    Parameters
    ----------
    images: ``(S, H, W)`` (or ``(H, W)``) real, non-negative magnitude images; H is the readout.
    num_coils: number of receive channels.
    snr: ``mean_signal / sigma`` (see module doc); None or ``inf`` for noiseless k-space.
    seed: seeds the background phase and the noise (same seed, same data).
    readout_oversampling: integer factor by which the readout (H) is zero-padded before the FFT.
    phase: multiply each slice by a smooth random polynomial phase (:func:`smooth_phase`).
    noise_correlation: ``rho`` of the coil noise covariance ``sigma^2 rho^|i-j|``, in [0, 1).
    voxel_size_mm: (H, W, slice thickness) in mm; sets the header's fields of view.
    acquisition: the header's acquisition name.
    maps: ``(C, H, W)`` complex coil sensitivities to use instead of the birdcage maps (e.g. ESPIRiT maps of
        a real scan resampled to ``(H, W)``); ``num_coils`` is then ``C``.
    """
    x, oversampling = _checked_inputs(images, snr, readout_oversampling)

    rng = np.random.default_rng(seed)
    s, h, w = x.shape
    clean = x.astype(np.complex64)
    if phase:
        for i in range(s):
            clean[i] *= np.exp(1j * smooth_phase((h, w), rng)).astype(np.complex64)

    if maps is None:
        maps = coil_sensitivities(num_coils, (h, w))
    else:
        maps = np.asarray(maps).astype(np.complex64)
        if maps.ndim != 3 or maps.shape[1:] != (h, w) or not np.all(np.isfinite(maps)):
            raise UsageError(f"maps must be finite (coils, {h}, {w}), got shape {maps.shape}")
        num_coils = maps.shape[0]
    h_enc = h * oversampling
    coil_images = center_crop_or_pad(maps[None] * clean[:, None], (h_enc, w))  # zero-pads H symmetrically
    kspace = fft2c(coil_images).astype(np.complex64)

    sigma = 0.0 if snr is None or np.isinf(snr) else mean_signal(x) / float(snr)
    cov = noise_covariance(num_coils, sigma, noise_correlation)
    if sigma > 0:
        kspace += coil_noise(kspace.shape, cov, rng)

    reference = center_crop_or_pad(rss(ifft2c(kspace), axis=1), (h, w)).astype(np.float32)
    simulation = {
        "snr": None if sigma == 0 else float(snr),
        "noise_std": sigma,
        "noise_correlation": float(noise_correlation),
        "seed": int(seed),
        "readout_oversampling": oversampling,
        "phase": bool(phase),
        "coils": "sigpy.mri.birdcage_maps",
    }
    header = _simulated_header((h, w), oversampling, int(num_coils), voxel_size_mm, acquisition, cov, simulation)
    raw = RawData(kspace, header, reference=reference, reference_name="reconstruction_rss")
    return SimulatedData(raw=raw, maps=maps, images=clean, noise_std=sigma, noise_covariance=cov)
