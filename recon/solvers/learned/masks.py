"""Deprecated: the sampling masks of one file's slices are :meth:`recon.sampling.SamplingMask.first_slice` and
:meth:`recon.sampling.SamplingMask.per_slice`; these aliases go in the next release."""
from __future__ import annotations

import warnings

import numpy as np

from recon.io.types import RawData
from recon.sampling import SamplingMask


def slice_mask(raw: RawData) -> np.ndarray:
    """Deprecated: ``SamplingMask.first_slice(raw).array``."""
    warnings.warn("recon.solvers.learned.masks.slice_mask is deprecated and will be removed in the next release; "
                  "use recon.sampling.SamplingMask.first_slice(raw).array", DeprecationWarning, stacklevel=2)
    return SamplingMask.first_slice(raw).array


def slice_masks(raw: RawData) -> np.ndarray:
    """Deprecated: ``SamplingMask.per_slice(raw).array``."""
    warnings.warn("recon.solvers.learned.masks.slice_masks is deprecated and will be removed in the next release; "
                  "use recon.sampling.SamplingMask.per_slice(raw).array", DeprecationWarning, stacklevel=2)
    return SamplingMask.per_slice(raw).array
