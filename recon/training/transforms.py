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
from recon.sampling.seeds import seed_from_name
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


def _slice_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """One slice's sampling mask as ``(W,)`` or ``(H, W)`` bool (a per-slice ``(1, H, W)`` loses its axis)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 3:
        m = m[0]
    if m.shape[-1] != width:
        raise DataError(f"mask of shape {m.shape} does not match k-space width {width}")
    return m


class SelfSupervisedTransform:
    """SSDU examples (Yaman et al., MRM 2020): training from undersampled k-space alone, no reference.

    The slice's *acquired* samples are the file's own mask when the file is undersampled (fastMRI test layout:
    zero-filled ``kspace`` + ``mask``), or, for a fully sampled file, a mask drawn once per example (seeded by
    ``(seed, index)`` in ``train`` mode, by the file name in ``val`` mode; the same every epoch, like a real
    acquisition) whose unsampled part is then never seen. The reference image is never read for training.

    Sample units and splits are those of scan-specific adaptation (:mod:`recon.solvers.learned.adapt`):

    * ``train`` mode: per example and epoch (seed ``(seed, epoch, index)``), a disjoint **DC** set (given to the
      network; the calibration region always in it) and **loss** set (``loss_fraction`` of the acquired samples
      outside the calibration region), covering the acquired samples;
    * ``val`` mode: a fixed **self-validation** set (``validation_fraction`` of the acquired samples outside the
      calibration region, seeded by file name and slice) as ``loss``, the rest as ``dc``.

    Items: ``kspace`` ``(C, H, W)`` complex64 (acquired samples only), ``mask`` (all acquired), ``dc`` and
    ``loss``, each ``(1, Hm, W)`` float32 (``Hm = 1`` for column masks, ``H`` for 2D masks); ``target`` ``(h, w)``
    float32 or None (``val`` mode only, when the file has a reference), ``maxval`` (None without a reference),
    ``fname``, ``slice``, ``acceleration``.
    """

    def __init__(self, mask_type: str = "random", accelerations: tuple[float, ...] = (4, 8),
                 center_fractions: tuple[float, ...] = (0.08, 0.04), seed: int = 0, mode: str = "train",
                 loss_fraction: float | None = None, validation_fraction: float | None = None):
        # deferred: loads recon.solvers.learned, which importing recon.training.transforms does not
        from recon.solvers.learned.adapt import LOSS_FRACTION, VALIDATION_FRACTION

        self.undersample = UndersampleTransform(mask_type, accelerations, center_fractions, seed, "val")
        self.seed = int(seed)
        self.mode = mode
        self.epoch = 0
        self.loss_fraction = LOSS_FRACTION if loss_fraction is None else float(loss_fraction)
        self.validation_fraction = VALIDATION_FRACTION if validation_fraction is None else float(validation_fraction)

    def acquisition(self, raw: RawData, example: Example) -> tuple[np.ndarray, np.ndarray, float]:
        """``(kspace (1, C, H, W), slice mask (W,)|(H, W), acceleration)`` of the acquired samples."""
        width = raw.kspace.shape[-1]
        if raw.is_undersampled:
            m = _slice_mask(raw.mask, width)
            kspace, used = apply_mask(raw.kspace, m, raw.header)
            return kspace, np.asarray(used, dtype=bool), float(m.size / max(int(m.sum()), 1))
        u = self.undersample
        seed = example.path.name if self.mode == "val" else (self.seed, example.index)
        mask, info = mask_from_options(u.mask_type, raw.kspace.shape[-2:], u.accelerations, u.center_fractions, seed)
        kspace, used = apply_mask(raw.kspace, mask, raw.header)
        return kspace, _slice_mask(used, width), float(info.get("acceleration", 0) or 0)

    def __call__(self, raw: RawData, example: Example) -> dict[str, Any]:
        # deferred: loads recon.solvers.learned, which importing recon.training.transforms does not
        from recon.solvers.learned.adapt import draw_dc_loss, make_split, sample_grid

        kspace, mask, acceleration = self.acquisition(raw, example)
        acquired = sample_grid(mask)
        if self.mode == "val":
            rng = np.random.default_rng([*seed_from_name(example.path.name), int(example.slice)])
            split = make_split(mask, rng, self.validation_fraction)
            dc, loss = split.train, split.validation
        else:
            rng = np.random.default_rng([self.seed, int(self.epoch), int(example.index)])
            split = make_split(mask, rng, 0.0)
            dc, loss = draw_dc_loss(split, rng, self.loss_fraction)
        target = maxval = None
        if self.mode == "val" and raw.reference is not None:
            target = torch.from_numpy(np.asarray(raw.reference[0], dtype=np.float32))
            m = raw.header.attrs.get("max")
            maxval = float(m) if m is not None else float(target.max())

        def grid(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a.astype(np.float32)[None])

        return {"kspace": torch.from_numpy(np.ascontiguousarray(kspace[0])), "mask": grid(acquired),
                "dc": grid(dc), "loss": grid(loss), "target": target, "maxval": maxval,
                "fname": example.path.name, "slice": example.slice, "acceleration": acceleration}
