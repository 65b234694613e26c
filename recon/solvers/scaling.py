"""Automatic data scaling, as BART ``pics`` does it, so that one default lambda fits every dataset.

From the magnitude of the adjoint (zero-filled SENSE) image ``|A^H y|``, per slice: the median ``p50``, the
90th percentile ``p90`` and the maximum ``pmax``. The scale is ``p90`` unless the top decile is spread out
(``pmax - p90 >= 2 (p90 - p50)``: a few very bright pixels), in which case it is ``pmax``. The solvers
divide the k-space by the scale, so the image they see has its bright tissue at about 1, and multiply
the solution by it afterwards: outputs stay on the data's scale, and ``scale(c y) = c scale(y)``
makes every reconstruction exactly homogeneous in the data.
"""
from __future__ import annotations

import torch


def bart_scale(image: torch.Tensor) -> torch.Tensor:
    """Per-image robust signal level of ``image`` ``(..., H, W)`` (complex or real): shape ``(...)``, float32.

    Zero where the image is identically zero (callers then leave the data unscaled).
    """
    mag = image.abs() if image.is_complex() else image.abs()
    flat = mag.reshape(mag.shape[:-2] + (-1,)).to(torch.float32)
    q = torch.quantile(flat, torch.tensor([0.5, 0.9], device=flat.device, dtype=flat.dtype), dim=-1)
    p50, p90 = q[0], q[1]
    pmax = flat.amax(dim=-1)
    return torch.where(pmax - p90 < 2 * (p90 - p50), p90, pmax)


def safe_scale(scale: torch.Tensor) -> torch.Tensor:
    """``scale`` with zeros (empty data) replaced by 1."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))
