"""Mask seeds: fastMRI's per-volume seed from a file name, and the seed forms ``RandomState.seed`` takes.

Shared by the column masks (:mod:`recon.sampling.fastmri_masks`) and the 2D masks (:mod:`recon.sampling.masks2d`).
"""
from __future__ import annotations

from pathlib import PurePath
from typing import Union

import numpy as np

from recon.errors import UsageError

Seed = Union[None, int, tuple[int, ...], str]


def seed_from_name(name: str | PurePath) -> tuple[int, ...]:
    """fastMRI's per-volume seed: the code points of the file's base name, ``tuple(map(ord, name))``.

    fastMRI's ``SliceDataset`` hands the transforms ``fname.name`` (no folders), so a full path is reduced to
    its base name first; ``"file1000001.h5"`` and ``"/data/knee/file1000001.h5"`` give the same seed.
    """
    base = PurePath(str(name)).name
    if not base:
        raise UsageError(f"seed: cannot derive a seed from the empty file name {str(name)!r}")
    return tuple(map(ord, base))


def normalize_seed(seed: Seed) -> int | tuple[int, ...] | None:
    """Turn a user seed into what ``RandomState.seed`` takes: None, a non-negative int, or a tuple of ints.

    A ``str`` is a file name (see :func:`seed_from_name`); a decimal string such as ``"42"`` is the int 42.
    """
    if seed is None:
        return None
    if isinstance(seed, str):
        s = seed.strip()
        if s.isdigit():
            return int(s)
        return seed_from_name(seed)
    if isinstance(seed, (bool, np.bool_)):
        raise UsageError(f"seed must be an int, a file name or None, got {seed!r}")
    if isinstance(seed, (int, np.integer)):
        if seed < 0 or seed >= 2**32:
            raise UsageError(f"seed must be in [0, 2**32), got {seed}")
        return int(seed)
    if isinstance(seed, tuple) and all(isinstance(v, (int, np.integer)) and 0 <= v < 2**32 for v in seed) and seed:
        return tuple(int(v) for v in seed)
    raise UsageError(f"seed must be an int, a file name or None, got {seed!r}")
