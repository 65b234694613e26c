"""Metrics of a reconstruction against the input's reference, for ``reconstruct_file`` / ``recon run``.

The reference of a slice is the file's own (fastMRI ``reconstruction_rss`` / ``reconstruction_esc``), or,
when a fully sampled input is undersampled retrospectively and has none, the RSS of its fully sampled
k-space centre-cropped to the recon size (what ``reconstruction_rss`` is). The metrics are those ``recon eval``
reports for the written file: fastMRI's definitions after fastMRI's crop (:func:`fastmri_crop_size`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recon.io import read_raw
from recon.arrays import center_crop_or_pad, rss
from recon.io.fourier import ifft2c
from recon.io.types import RawData
from recon.metrics.fidelity import fastmri_crop_size, volume_metrics


def reference_slice(raw: RawData, crop: tuple[int, int], *, fully_sampled_rss: bool = False) -> np.ndarray | None:
    """The reference ``(slices, h, w)`` float32 of ``raw`` (read before any retrospective undersampling).

    ``raw.reference`` when the file has one; else, if ``fully_sampled_rss``, the RSS of ``raw.kspace`` (which
    must then be the fully sampled k-space) centre-cropped to ``crop``; else None.
    """
    if raw.reference is not None:
        return np.asarray(raw.reference, dtype=np.float32)
    if not fully_sampled_rss:
        return None
    return np.asarray(center_crop_or_pad(rss(ifft2c(raw.kspace), axis=1), crop), dtype=np.float32)


def reference_volume(path: str | Path) -> np.ndarray:
    """The reference ``(S, h, w)`` float32 of a whole file, as ``reconstruct_file`` scores a retrospective
    undersampling of it: its ``reconstruction_rss`` when it has one, else the RSS of its fully sampled k-space
    centre-cropped to the header's recon size (:func:`reference_slice` over the whole volume)."""
    raw = read_raw(path)
    ref = reference_slice(raw, raw.header.recon_size, fully_sampled_rss=True)
    assert ref is not None
    return ref


def reference_metrics(reconstruction: np.ndarray, references: Sequence[np.ndarray | None]) -> dict[str, float] | None:
    """``{"nmse", "psnr", "ssim"}`` of ``reconstruction`` ``(S, h, w)`` against the concatenated per-slice
    ``references``, as ``recon eval`` computes them; None when a slice has no reference or the shapes cannot
    be compared (the reconstruction is smaller than fastMRI's crop of the reference)."""
    if not references or any(r is None for r in references):
        return None
    ref = np.concatenate([np.asarray(r) for r in references], axis=0)
    rec = np.asarray(reconstruction, dtype=np.float32)  # what is written: compare the stored values
    size = fastmri_crop_size(ref.shape)
    if ref.ndim != 3 or rec.shape[0] != ref.shape[0] or rec.shape[-2] < size[0] or rec.shape[-1] < size[1]:
        return None
    if min(size) < 7 or not float(ref.max()) > 0:
        return None
    return volume_metrics(ref, rec, crop=size)
