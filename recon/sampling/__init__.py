"""Sampling: fastMRI column masks, 2D variable-density masks, non-Cartesian trajectories, density compensation.

A mask is owned by :class:`SamplingMask` (shape for a k-space, device, 1D/2D, acquired lines per the header,
fastMRI's tensor layout, operator weights); ``acquired_mask``, ``to_fastmri_tensor`` and ``to_torch_mask`` are
deprecated aliases of its methods.

Conventions: masks act on our ``(slices, coils, H, W)`` k-space (column masks ``(W,)`` over phase encode,
2D masks ``(H, W)``); trajectories are in radians/pixel in ``[-pi, pi)`` (``trajectories.to_cycles`` for
SigPy's cycles); density weights are k-space areas in radians^2.
"""
from recon.sampling.density import pipe_menon_dcf, radial_ramp_dcf
from recon.sampling.fastmri_masks import (
    MASK_TYPES,
    ColumnMaskFunc,
    acquired_mask,
    apply_mask,
    to_fastmri_tensor,
    to_torch_mask,
)
from recon.sampling.mask import SamplingMask
from recon.sampling.options import mask_from_options
from recon.sampling.seeds import normalize_seed, seed_from_name
from recon.sampling.masks2d import MASK2D_TYPES, calibration_box, gaussian_mask, poisson_disc_mask
from recon.sampling.trajectories import (
    GOLDEN_ANGLE_DEG,
    GOLDEN_ANGLE_RAD,
    check_trajectory,
    from_cycles,
    radial,
    radial_angles,
    spiral,
    to_cycles,
)

ALL_MASK_TYPES: tuple[str, ...] = MASK_TYPES + MASK2D_TYPES
"""Every ``--mask-type`` the CLI accepts."""

__all__ = [
    "SamplingMask", "ALL_MASK_TYPES", "MASK_TYPES", "MASK2D_TYPES", "ColumnMaskFunc", "mask_from_options", "apply_mask",
    "acquired_mask", "seed_from_name", "normalize_seed", "to_fastmri_tensor", "to_torch_mask",
    "poisson_disc_mask", "gaussian_mask", "calibration_box", "radial", "radial_angles", "spiral",
    "check_trajectory", "to_cycles", "from_cycles", "GOLDEN_ANGLE_DEG", "GOLDEN_ANGLE_RAD",
    "radial_ramp_dcf", "pipe_menon_dcf",
]
