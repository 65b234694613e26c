"""Automatic data scaling, as BART ``pics`` does it, so that one default lambda fits every dataset.

From the magnitude of the adjoint (zero-filled SENSE) image ``|A^H y|``, per slice: the median ``p50``, the
90th percentile ``p90`` and the maximum ``pmax``. The scale is ``p90`` unless the top decile is spread out
(``pmax - p90 >= 2 (p90 - p50)``: a few very bright pixels), in which case it is ``pmax``. The solvers
divide the k-space by the scale, so the image they see has its bright tissue at about 1, and multiply
the solution by it afterwards: outputs stay on the data's scale, and ``scale(c y) = c scale(y)``
makes every reconstruction exactly homogeneous in the data.
"""
from __future__ import annotations

import numpy as np
import torch


def bart_scale(image: torch.Tensor) -> torch.Tensor:
    """Per-image robust signal level of ``image`` ``(..., H, W)`` (complex or real): shape ``(...)``, float32.

    Zero where the image is identically zero (callers then leave the data unscaled).
    """
    mag = image.abs() if image.is_complex() else image.abs()
    flat = mag.reshape(mag.shape[:-2] + (-1,)).to(torch.float32)
    p50, p90 = _quantiles(flat, (0.5, 0.9))
    pmax = flat.amax(dim=-1)
    return torch.where(pmax - p90 < 2 * (p90 - p50), p90, pmax)


def _quantiles(flat: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """``torch.quantile(flat, qs, dim=-1)`` (linear interpolation), the same numbers, from the two order
    statistics around each rank (``kthvalue``) instead of a full sort: 2.7 against 4.4 ms (one core) for one
    256 x 256 image (a 40-iteration L1-wavelet solve: ~160 ms). Non-finite values: ``torch.quantile`` itself."""
    n = flat.shape[-1]
    q = torch.tensor(qs, dtype=flat.dtype, device=flat.device)
    if n == 0 or not bool(torch.isfinite(flat).all()):
        return list(torch.quantile(flat, q, dim=-1))
    ranks = q * (n - 1)  # as torch.quantile: rank in the input's precision, floor/ceil, lerp by the remainder
    below, above = ranks.long().tolist(), ranks.ceil().long().tolist()
    stats = _order_statistics(flat, sorted(set(below) | set(above)))
    return [torch.lerp(stats[b], stats[a], ranks[i] - b) for i, (b, a) in enumerate(zip(below, above))]


def _order_statistics(flat: torch.Tensor, ks: list[int]) -> dict[int, torch.Tensor]:
    """``{k: the k-th smallest value along the last axis}`` (0-based) of ``flat`` ``(..., n)``. On the CPU one
    ``numpy.partition`` for all ``k`` (one pass instead of one ``kthvalue`` per rank: 256^2 floats, 4 ranks,
    0.4 against 2.7 ms); elsewhere ``kthvalue`` on the device (no host round trip)."""
    if flat.device.type == "cpu":
        part = np.partition(flat.detach().numpy(), ks, axis=-1)
        return {k: torch.from_numpy(np.ascontiguousarray(part[..., k])) for k in ks}
    return {k: flat.kthvalue(k + 1, dim=-1).values for k in ks}


def safe_scale(scale: torch.Tensor) -> torch.Tensor:
    """``scale`` with zeros (empty data) replaced by 1."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))
