"""Axial slices of the Colin 27 T1 brain volume, bundled as ``recon/data/colin27_t1.npz``.

Orientation (so that a slice displays upright with ``imshow``)
--------------------------------------------------------------
The source NIfTI (``ch2.nii.gz``, 181 x 217 x 181, 1 mm, RAS+ voxel axes) was reordered once into
``volume[z, h, w]`` with

* ``z`` (181): axial slice index, inferior -> superior (NIfTI k; voxel 71 is MNI z = 0),
* ``h`` (217): anterior -> posterior (row 0 is the front of the head: the brain is upright),
* ``w`` (181): patient right -> patient left (radiological convention: patient's right on the image left),

i.e. ``volume[z, h, w] = nifti[180 - w, 216 - h, z]``. In our k-space convention H is the readout, so
these images simulate an axial acquisition with anterior-posterior readout and left-right phase encode.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recon.errors import UsageError
from recon.arrays import center_crop_or_pad
from recon.data import colin27_path

#: axial slices through the brain (lateral ventricles, basal ganglia) used for the bundled sample
SAMPLE_SLICES: tuple[int, ...] = (80, 88, 96)
#: voxel size of the bundled volume in mm (H, W, slice)
VOXEL_MM: tuple[float, float, float] = (1.0, 1.0, 1.0)


def load_colin27(
    slices: Sequence[int] | slice | None = None,
    *,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Axial slices of the Colin 27 T1 volume as magnitude images.

    Parameters
    ----------
    slices: axial slice indices (0 = most inferior, 180 = most superior); None = all 181.
    shape: ``(H, W)`` to centre-pad (zeros) or centre-crop each slice to; None keeps 217 x 181.

    Returns
    -------
    ``(S, H, W)`` float32 in [0, 1] (the uint8 intensities / 255), upright, radiological (see module doc).
    """
    with np.load(colin27_path()) as f:
        volume = f["volume"]
    if slices is None:
        slices = slice(None)
    if isinstance(slices, slice):
        picked = volume[slices]
    else:
        idx = np.asarray(list(slices), dtype=int)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < -volume.shape[0] or idx.max() >= volume.shape[0]:
            raise UsageError(f"Colin 27 slice indices must lie in [0, {volume.shape[0]}), got {list(slices)}")
        picked = volume[idx]
    images = picked.astype(np.float32) / 255.0
    if shape is not None:
        images = np.ascontiguousarray(center_crop_or_pad(images, (int(shape[0]), int(shape[1]))))
    return images
