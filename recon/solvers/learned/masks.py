"""The sampling masks of one file's slices as the learned solvers take them (fully sampled: every acquired line)."""
from __future__ import annotations

import numpy as np

from recon.io.types import RawData


def slice_mask(raw: RawData) -> np.ndarray:
    """The sampling mask of one slice, ``(W,)`` or ``(H, W)`` bool; for fully sampled data every acquired line
    (the header's ``acquired_pe``; zero-padded phase encodes are not sampled). A per-slice mask gives the
    first slice's: :func:`slice_masks` gives every slice's."""
    from recon.sampling import acquired_mask

    w = raw.kspace.shape[-1]
    if raw.mask is None:
        return acquired_mask(np.ones(w, dtype=bool), raw.header, w)
    m = np.asarray(raw.mask, dtype=bool)
    if m.ndim == 3:
        m = m[0]
    return m


def slice_masks(raw: RawData) -> np.ndarray:
    """The sampling masks of every slice, ``(S|1, H|1, W)`` bool (one mask per slice, or one for all); for
    fully sampled data every acquired line (the header's ``acquired_pe``)."""
    from recon.sampling import acquired_mask

    w = raw.kspace.shape[-1]
    if raw.mask is None:
        return acquired_mask(np.ones((1, 1, w), dtype=bool), raw.header, w)
    m = np.asarray(raw.mask, dtype=bool)
    if m.ndim == 1:
        return m[None, None]
    if m.ndim == 2:
        return m[None]
    return m.reshape(m.shape[0], m.shape[-2], w)  # (S, 1, W) or (S, H, W)
