"""Walsh's adaptive coil combination (Walsh, Gmitro, Marcellin, MRM 43:682-690, 2000).

Per pixel, the coil map is the dominant eigenvector of the local signal correlation matrix
``R(r) = sum_{r' in window(r)} y(r') y(r')^H`` (``C x C``), estimated from the coil images themselves.
Assumes prewhitened data (see :mod:`recon.coils.noise`); otherwise it is the unwhitened variant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from recon.coils._tensor import ArrayLike, as_complex_tensor, with_slice_axis
from recon.coils.espirit_calibration import normalize_phase
from recon.errors import UsageError
from recon.coils.calibration import region_start
from recon.operators.fft import ifft2c


def local_correlation(images: torch.Tensor, window: int) -> torch.Tensor:
    """``(S, H, W, C, C)`` box-filtered (``window x window``, zero outside the image) ``y y^H`` of ``(S, C, H, W)``."""
    s, c, h, w = images.shape
    outer = images[:, :, None] * images[:, None, :].conj()  # (S, C, C, H, W)
    real = torch.view_as_real(outer).permute(0, 1, 2, 5, 3, 4).reshape(s, c * c * 2, h, w)
    smooth = F.avg_pool2d(real, window, stride=1, padding=window // 2, count_include_pad=False)
    smooth = smooth.reshape(s, c, c, 2, h, w).permute(0, 4, 5, 1, 2, 3).contiguous()
    return torch.view_as_complex(smooth)


def walsh_maps(coil_images: ArrayLike, window: int = 7, phase: str = "rotate") -> torch.Tensor:
    """Walsh coil maps ``(S, C, H, W)`` (or ``(C, H, W)``), unit norm per pixel.

    Parameters
    ----------
    coil_images: ``(S, C, H, W)`` or ``(C, H, W)`` complex coil images (e.g. ``ifft2c`` of the calibration
        region zero-padded, or of fully sampled k-space).
    window: odd side of the square smoothing window, in pixels.
    phase: ``rotate`` (phase relative to the image's first principal coil component), ``first`` or ``none``.
    """
    if window < 1 or window % 2 == 0:
        raise UsageError(f"window must be an odd positive number of pixels, got {window}")
    x = as_complex_tensor(coil_images, "coil_images", (3, 4))
    x, added = with_slice_axis(x, 3)
    r = local_correlation(x, window)
    r = 0.5 * (r + r.conj().transpose(-2, -1))
    _, vecs = torch.linalg.eigh(r)
    maps = vecs[..., -1].permute(0, 3, 1, 2)[:, None]  # (S, 1, C, H, W)
    ref = None
    if phase == "rotate":
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        ref = torch.linalg.eigh(flat @ flat.conj().transpose(-2, -1))[1][..., -1]
    maps = normalize_phase(maps, phase, ref)[:, 0]  # type: ignore[arg-type]
    return maps[0] if added else maps


def walsh_combine(coil_images: ArrayLike, window: int = 7) -> torch.Tensor:
    """Adaptive combination ``sum_c conj(S_c) y_c`` with Walsh maps: ``(S, C, H, W)`` -> ``(S, H, W)`` complex."""
    x = as_complex_tensor(coil_images, "coil_images", (3, 4))
    maps = walsh_maps(x, window)
    return torch.sum(maps.conj() * x, dim=-3)


def walsh_calibration_maps(kspace: ArrayLike, calib_size: tuple[int, int], window: int = 15) -> torch.Tensor:
    """Walsh maps ``(S, C, H, W)`` of the low-resolution coil images of a centred calibration box.

    ``kspace`` ``(S, C, H, W)``; ``calib_size`` ``(h, w)`` of the fully sampled centre. The fallback of
    :func:`recon.solvers.reconstruct.estimate_maps` when the centre holds too few lines for ESPIRiT.
    """
    k = as_complex_tensor(kspace, "kspace", (4,))
    _, _, hh, ww = k.shape
    ch, cw = (int(v) for v in calib_size)
    a, b = region_start(hh, ch), region_start(ww, cw)
    low = torch.zeros_like(k)
    low[..., a:a + ch, b:b + cw] = k[..., a:a + ch, b:b + cw]
    return walsh_maps(ifft2c(low), window=window)
