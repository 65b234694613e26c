"""``mask_from_options``: the mask the CLI's ``--mask-type/--accel/--center-fraction/--seed`` ask for.

One dispatcher over the column masks (:mod:`recon.sampling.fastmri_masks`) and the 2D masks
(:mod:`recon.sampling.masks2d`), so that neither mask module imports the other.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from recon.sampling.fastmri_masks import ColumnMaskFunc
from recon.sampling.masks2d import MASK2D_TYPES, mask2d_from_options
from recon.sampling.seeds import Seed, normalize_seed


def mask_from_options(
    mask_type: str,
    shape_or_width: int | Sequence[int],
    accelerations: float | Sequence[float],
    center_fractions: float | Sequence[float],
    seed: Seed = None,
    *,
    offset: int | None = None,
    allow_any_combination: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The mask for the CLI's ``--mask-type/--accel/--center-fraction/--seed``.

    Parameters
    ----------
    mask_type: a fastMRI type (:data:`MASK_TYPES`), or ``poisson`` / ``gaussian`` for 2D masks.
    shape_or_width: k-space shape ``(..., H, W)`` (2D masks need it) or the width ``W``.
    accelerations, center_fractions: a value or lists (one pair drawn per call, as fastMRI).
    seed: None (a random seed is drawn and recorded in ``info``), an int, or a file name (fastMRI's
        per-volume seed, ``tuple(map(ord, name))``; the same mask for every slice of a file).

    Returns
    -------
    ``(mask, info)``: bool ``(W,)`` for column masks, ``(H, W)`` for 2D masks; ``info`` records the mask type,
    the centre fraction and acceleration actually drawn, the centre line count, the offset, the seed and the
    achieved acceleration (JSON-serialisable, to store as attributes of an output).
    """
    if seed is None:
        seed = secrets.randbelow(2**31)
    norm = normalize_seed(seed)
    seed_info: Any = norm if isinstance(norm, int) else seed if isinstance(seed, str) else list(norm or ())
    if mask_type in MASK2D_TYPES:
        mask, info = mask2d_from_options(mask_type, shape_or_width, accelerations, center_fractions, norm)
    else:
        func = ColumnMaskFunc(mask_type, center_fractions, accelerations, allow_any_combination)
        mask, info = func.sample(shape_or_width, offset=offset, seed=norm)
    info["seed"] = seed_info
    return mask, info
