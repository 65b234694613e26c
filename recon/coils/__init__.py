"""Coil tools (torch, complex64, CPU/GPU, batched over slices).

* :func:`espirit` / :func:`espirit_maps`: ESPIRiT sensitivity maps (BART ``ecalib`` defaults).
* :func:`walsh_maps` / :func:`walsh_combine`: Walsh adaptive combination.
* :func:`whitening_matrix`, :func:`prewhiten`, :func:`prewhiten_raw`, :func:`prewhitening_for`: noise
  prewhitening (with the noise/data bandwidth ratio, :func:`noise_bandwidth_ratio`).
* :func:`svd_compress`, :func:`gcc_compress`: coil compression (PCA, geometric along the readout).
* :func:`rss`, :func:`sense_combine`: coil combination.

Shapes: k-space / coil images ``(S, C, H, W)`` (or ``(C, H, W)``), maps ``(S, [M,] C, H, W)``;
H = readout, W = phase encode (``data_specs/conventions.md``).
"""
from recon.coils.calibration import calibration_region, detect_calibration_size
from recon.coils.combine import rss, sense_combine
from recon.coils.compression import (
    CoilCompression,
    compress,
    gcc_compress,
    gcc_compression,
    svd_compress,
    svd_compression,
)
from recon.coils.espirit_calibration import EspiritResult, espirit, espirit_maps
from recon.coils.noise import (
    Prewhitening,
    apply_coil_matrix,
    apply_prewhitening,
    noise_bandwidth_ratio,
    noise_covariance,
    prewhiten,
    prewhiten_raw,
    prewhitening_for,
    whitening_matrix,
)
from recon.coils.walsh import walsh_combine, walsh_maps

__all__ = [
    "CoilCompression", "EspiritResult", "Prewhitening", "apply_coil_matrix", "apply_prewhitening", "calibration_region", "compress",
    "detect_calibration_size", "espirit", "espirit_maps", "gcc_compress", "gcc_compression",
    "noise_bandwidth_ratio", "noise_covariance", "prewhiten", "prewhiten_raw", "prewhitening_for", "rss", "sense_combine", "svd_compress",
    "svd_compression", "walsh_combine", "walsh_maps", "whitening_matrix",
]
