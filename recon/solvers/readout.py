"""Readout-oversampling removal before a reconstruction, as a scanner does it.

With a mask that is constant along the readout (column masks: each acquired phase-encode line is a whole
readout), the reconstruction problem decouples over image rows: cropping the readout field of view in image
space (centred orthonormal FFTs along H, so the data's scale is kept) and transforming back gives exactly the
k-space of the cropped image, sampled by the same columns. Iterative solvers then work on half the pixels of
2x-oversampled data (fastMRI's 640-row k-space) and the result, centre-cropped to the header's recon size, is
on the same output grid. The learned solvers always did this (their networks were trained without
oversampling); the classical iterative methods do it too (issue 17).
"""
from __future__ import annotations

import numpy as np

from recon.io.types import RawData


def remove_readout_oversampling(kspace: np.ndarray, mask: np.ndarray, height: int
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Crop the readout (H) of ``(S, C, H, W)`` k-space to ``height`` in image space (centred orthonormal FFTs
    along H, so the data's scale is kept), as a scanner's readout-oversampling removal does.

    Only for masks constant along H (``(S|1, H|1, W)`` column masks: each acquired line is a whole readout, so
    cropping commutes with the mask); otherwise, or when ``height >= H``, returns the inputs unchanged. The
    bundled networks were trained on k-space without readout oversampling; on a 2x oversampled grid the object
    fills half the field of view and they lose 2-3 dB (measured on Colin 27 simulations).
    Returns ``(kspace (S, C, height, W), mask (S|1, 1, W))``.
    """
    h = kspace.shape[-2]
    if not 0 < height < h:
        return kspace, mask
    if mask.shape[-2] != 1:
        if not (mask == mask[..., :1, :]).all():
            return kspace, mask  # a 2D mask: the readout is not fully sampled
        mask = mask[..., :1, :]
    image = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=-2), axis=-2, norm="ortho"), axes=-2)
    top = (h - height) // 2  # the centre-crop convention of recon.arrays.center_crop_or_pad
    image = image[..., top:top + height, :]
    cropped = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=-2), axis=-2, norm="ortho"), axes=-2)
    return cropped.astype(np.complex64), mask


def _column_view(mask: np.ndarray | None, width: int) -> np.ndarray:
    """A RawData mask (``(W,)``, ``(H, W)``, ``(S, H, W)`` or None) as ``(S|1, H|1, W)``."""
    if mask is None:
        return np.ones((1, 1, width), dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 1:
        return m[None, None]
    if m.ndim == 2:
        return m[None]
    return m.reshape(m.shape[0], m.shape[-2], width)


def crop_readout_oversampling(raw: RawData) -> RawData:
    """``raw`` with its readout cropped to the header's recon height when that is smaller than the k-space's
    and the mask is constant along the readout (:func:`remove_readout_oversampling`); else ``raw`` itself.

    The mask keeps its meaning: None stays None (fully sampled, or sampled where nonzero), a column mask
    becomes ``(S|1, 1, W)``.
    """
    height = int(raw.header.recon_size[0])
    if not 0 < height < raw.kspace.shape[-2]:
        return raw
    mask = _column_view(raw.mask, raw.kspace.shape[-1])
    kspace, cropped_mask = remove_readout_oversampling(raw.kspace, mask, height)
    if kspace is raw.kspace:
        return raw
    new_mask = None if raw.mask is None else cropped_mask
    cal = None
    if raw.calibration is not None:  # reference lines: whole readouts too, cropped the same way
        cal, _ = remove_readout_oversampling(raw.calibration, np.ones((1, 1, raw.kspace.shape[-1]), dtype=bool), height)
    return RawData(kspace, raw.header, new_mask, raw.reference, raw.reference_name, raw.path,
                   cal, raw.calibration_mask if cal is not None else None)
