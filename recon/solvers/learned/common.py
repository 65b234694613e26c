"""Shared pieces of the unrolled networks: mask shapes, input scaling, the calibration region (their CG is
:func:`recon.solvers.cg.conjugate_gradient` with ``differentiable=True``)."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recon.operators.fft import ifft2c
from recon.sampling import SamplingMask

#: the zero-filled RSS image is divided by this quantile of its magnitude before the network (and the output
#: multiplied back): a robust scale that ignores a few bright pixels
SCALE_QUANTILE = 0.99


def as_mask(mask: torch.Tensor | np.ndarray | None, kspace: torch.Tensor) -> torch.Tensor:
    """Deprecated: ``SamplingMask.for_network(mask, kspace)``, a float mask ``(B or 1, 1, H, W)`` for k-space
    ``(B, C, H, W)`` (None = every point sampled)."""
    warnings.warn("recon.solvers.learned.common.as_mask is deprecated and will be removed in the next release; "
                  "use recon.sampling.SamplingMask.for_network(mask, kspace)", DeprecationWarning, stacklevel=2)
    return SamplingMask.for_network(mask, kspace)


def robust_scale(coil_images: torch.Tensor) -> torch.Tensor:
    """Per-example scale ``(B, 1, 1, 1)``: the :data:`SCALE_QUANTILE` quantile of the RSS of ``(B, C, H, W)``
    coil images (1 where the images are all zero). Not differentiated through."""
    with torch.no_grad():
        rss = torch.sqrt((coil_images.abs() ** 2).sum(1)).flatten(1)  # (B, H*W)
        if rss.shape[1] > 4_000_000:  # torch.quantile's size limit: subsample evenly
            rss = rss[:, :: rss.shape[1] // 4_000_000 + 1]
        q = torch.quantile(rss.float(), SCALE_QUANTILE, dim=1)
        q = torch.where(q > 0, q, torch.ones_like(q))
    return q.reshape(-1, 1, 1, 1).to(coil_images.real.dtype)


def _centre_run(line: torch.Tensor) -> tuple[int, int]:
    """``[start, end)`` of the run of nonzeros in a 1D mask that contains its centre (empty if unsampled)."""
    n = line.shape[0]
    c = n // 2
    on = (line > 0).cpu().numpy()
    if not on[c]:
        return c, c
    lo = c
    while lo > 0 and on[lo - 1]:
        lo -= 1
    hi = c + 1
    while hi < n and on[hi]:
        hi += 1
    return lo, hi


def calibration_mask(mask: torch.Tensor) -> torch.Tensor:
    """The fully sampled centre of each example's mask, ``(B|1, 1, H, W)`` float: the box spanned by the
    sampled run through the centre along W (in the centre row) and along H (in the centre column). For a
    fastMRI column mask this is every row of the centre columns (the ACS lines)."""
    out = torch.zeros_like(mask)
    h, w = mask.shape[-2:]
    for i in range(mask.shape[0]):
        w0, w1 = _centre_run(mask[i, 0, h // 2])
        h0, h1 = _centre_run(mask[i, 0, :, w // 2])
        out[i, 0, h0:h1, w0:w1] = 1.0
    return out


def scaled_inputs(kspace: torch.Tensor, mask: Any, maps: torch.Tensor | None,
                  sens_net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  calibration: tuple[torch.Tensor, Any] | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What every unrolled model starts from: ``(y, m, scale, maps)``.

    ``m`` the mask as :meth:`SamplingMask.for_network` gives it, ``y = kspace * m / scale`` ``(B, C, H, W)`` with ``scale``
    :func:`robust_scale` of its zero-filled images, ``maps`` ``(B, C, H, W)`` as given or from ``sens_net(y, m)``,
    in ``y``'s dtype (given maps phase-aligned by :func:`align_map_phase`). Multiply the model's output by ``scale`` to return to the data's scale.
    ``calibration``: ``(kspace, mask)`` for the sensitivity network instead of ``(kspace, mask)``: the image
    k-space with the file's reference lines filled in (:func:`recon.io.calibration.calibration_kspace`).
    """
    m = SamplingMask.for_network(mask, kspace)
    y = kspace * m
    scale = robust_scale(ifft2c(y))
    y = y / scale
    if maps is None and calibration is not None:
        mc = SamplingMask.for_network(calibration[1], kspace)
        maps = sens_net(calibration[0] * mc / scale, mc)
    elif maps is None:
        maps = sens_net(y, m)
    else:
        maps = align_map_phase(maps.to(y.dtype), y, m)
    return y, m, scale, maps.to(y.dtype)


def align_map_phase(maps: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Given maps ``(B|1, C, H, W)`` (e.g. ESPIRiT, whose phase is relative to a reference coil) times the
    per-pixel phase of the low-resolution SENSE image ``sum_c conj(S_c) ifft2c(y_c * calibration)``.

    The learned maps carry the object's phase (they are calibration images over their RSS), so the image the
    networks see is nearly real and positive; given maps leave the object's phase in the image, which the
    bundled weights never saw (VarNet with ESPIRiT maps: 15.4 dB on a sample slice at 4x against 26.9 with
    its own maps; 26.6 after this alignment). A per-pixel unit phase on the maps does not change the SENSE
    model's magnitude image, so the result is independent of the maps' phase convention. Pixels where the
    low-resolution image is zero (outside the calibration, or no calibration region) keep their phase.
    """
    low = ifft2c(y * calibration_mask(m))  # (B, C, H, W)
    combined = (maps.conj() * low).sum(1, keepdim=True)
    phase = torch.where(combined.abs() > 0, torch.sgn(combined), torch.ones_like(combined))
    return maps * phase
