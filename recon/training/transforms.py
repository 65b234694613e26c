"""From a fully sampled slice to a training example: mask drawn per example, masked k-space, target.

:class:`UndersampleTransform` returns a dict of tensors:

* ``kspace``: ``(C, H, W)`` complex64, the masked k-space on the data's scale;
* ``mask``: ``(1, 1, W)`` float32 column mask (``(1, H, W)`` for 2D masks);
* ``target``: ``(h, w)`` float32, the file's reference image (``reconstruction_rss``, the recon-size crop);
* ``maxval``: the volume maximum (the file's ``max`` attribute, else the reference's maximum), for SSIM/PSNR;
* ``fname``, ``slice``, ``acceleration``.

Masks: in ``train`` mode the mask of example ``i`` in epoch ``e`` is drawn with seed ``(seed, e, i)`` (a fresh
mask per example and epoch, reproducible, independent of the order of loading and of worker processes); in
``val`` mode it is seeded from the file name as fastMRI's ``SubsampleMask`` does, so every slice of a
volume, every epoch and every model see the same mask.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recon.errors import DataError
from recon.io.types import RawData
from recon.sampling import MASK_TYPES, ColumnMaskFunc, apply_mask, mask_from_options
from recon.training.dataset import Example


class UndersampleTransform:
    """Retrospective undersampling of a fully sampled slice (see module doc).

    Parameters
    ----------
    mask_type: a fastMRI column mask type or a 2D type (``poisson``, ``gaussian``), see ``recon.sampling``.
    accelerations, center_fractions: paired lists as fastMRI's mask functions take.
    seed: base seed of the training masks.
    mode: ``train`` (new mask per example and epoch) or ``val`` (mask seeded by file name).
    """

    def __init__(self, mask_type: str = "random", accelerations: tuple[float, ...] = (4, 8),
                 center_fractions: tuple[float, ...] = (0.08, 0.04), seed: int = 0, mode: str = "train"):
        self.mask_type = mask_type
        self.accelerations = list(accelerations)
        self.center_fractions = list(center_fractions)
        if mask_type in MASK_TYPES:
            ColumnMaskFunc(mask_type, self.center_fractions, self.accelerations)  # validates now
        self.seed = int(seed)
        self.mode = mode
        self.epoch = 0

    def mask_seed(self, example: Example) -> Any:
        if self.mode == "val":
            return example.path.name
        return (self.seed, self.epoch, example.index)

    def __call__(self, raw: RawData, example: Example) -> dict[str, Any]:
        if raw.reference is None:
            raise DataError("training needs a reference image (fastMRI 'reconstruction_rss')", example.path)
        if raw.is_undersampled:
            raise DataError("training needs fully sampled k-space", example.path)
        mask, info = mask_from_options(self.mask_type, raw.kspace.shape[-2:], self.accelerations,
                                       self.center_fractions, self.mask_seed(example))
        kspace, used = apply_mask(raw.kspace, mask, raw.header)
        used = np.asarray(used, dtype=np.float32)
        used = used.reshape(1, 1, -1) if used.ndim == 1 else used.reshape(1, *used.shape[-2:])
        target = np.asarray(raw.reference[0], dtype=np.float32)
        maxval = raw.header.attrs.get("max")
        maxval = float(maxval) if maxval is not None else float(target.max())
        return {
            "kspace": torch.from_numpy(np.ascontiguousarray(kspace[0])),
            "mask": torch.from_numpy(used),
            "target": torch.from_numpy(target),
            "maxval": maxval,
            "fname": example.path.name,
            "slice": example.slice,
            "acceleration": float(info.get("acceleration", 0) or 0),
        }
