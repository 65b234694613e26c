"""The fully sampled k-space centre used for calibration (ESPIRiT, GRAPPA-style kernels, coil compression).

Regions are centred on the k-space centre ``(H // 2, W // 2)`` (``data_specs/conventions.md``): a region of
size ``n`` along an axis of length ``N`` covers indices ``[N // 2 - n // 2, N // 2 - n // 2 + n)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recon.errors import DataError, UsageError
from recon.sampling import SamplingMask


def region_start(length: int, size: int) -> int:
    """First index of a centred region of ``size`` samples on an axis of ``length`` samples."""
    return length // 2 - size // 2


def sampled_pattern(kspace: torch.Tensor, mask: Any = None) -> torch.Tensor:
    """Boolean ``(H, W)``: the points sampled in *every* slice.

    Parameters
    ----------
    kspace: ``(S, C, H, W)`` complex k-space.
    mask: None (use the nonzero samples of ``kspace``), or a boolean mask broadcastable to ``(S, 1, H, W)``:
        ``(W,)`` column mask, ``(H, W)``, ``(S, H, W)`` or ``(S, 1, H, W)``.
    """
    s, _, h, w = kspace.shape
    if mask is None:
        nonzero = (kspace != 0).any(dim=1)  # (S, H, W)
        return nonzero.all(dim=0)
    m = SamplingMask(mask).for_kspace().to(kspace.device, torch.bool)
    try:
        full = torch.broadcast_to(m, (s, 1, h, w)) if m.dim() <= 4 else None
    except RuntimeError:
        full = None
    if full is None:
        raise UsageError(f"mask of shape {tuple(np.shape(mask))} does not fit k-space of shape {tuple(kspace.shape)}")
    return full[:, 0].all(dim=0)


def detect_calibration_size(pattern: torch.Tensor) -> tuple[int, int]:
    """Largest centred fully sampled rectangle ``(h, w)`` in a boolean ``(H, W)`` pattern.

    Grows a centred box one sample at a time along each axis, alternately, while every point in it is
    sampled. Returns ``(0, 0)`` when the centre point itself is not sampled.
    """
    pat = pattern.cpu().numpy().astype(bool)
    hh, ww = pat.shape
    if not pat[hh // 2, ww // 2]:
        return 0, 0
    h = w = 1

    def full(nh: int, nw: int) -> bool:
        a, b = region_start(hh, nh), region_start(ww, nw)
        return bool(pat[a:a + nh, b:b + nw].all())

    grew = True
    while grew:
        grew = False
        if h < hh and full(h + 1, w):
            h += 1
            grew = True
        if w < ww and full(h, w + 1):
            w += 1
            grew = True
    return h, w


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value  # type: ignore[misc]
        return int(a), int(b)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be an int or a pair (h, w), got {value!r}") from None


def calibration_region(
    kspace: torch.Tensor,
    calib_size: int | tuple[int, int] | None = None,
    mask: Any = None,
    max_size: int | tuple[int, int] = 24,
    min_size: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """Extract the centred calibration region ``(S, C, h, w)`` from k-space ``(S, C, H, W)``.

    Parameters
    ----------
    calib_size: exact size ``h`` or ``(h, w)`` of the region; None = the largest fully sampled centre
        (from ``mask``, or from the nonzero samples), limited to ``max_size`` per axis (BART's ``-r 24``).
    mask: sampling mask (see :func:`sampled_pattern`), or None.
    min_size: the smallest usable region (e.g. the kernel size); a smaller one is a :class:`DataError`.

    Raises
    ------
    UsageError: ``calib_size`` larger than the data or below ``min_size``.
    DataError: the region is not fully sampled (no fully sampled centre).
    """
    _, _, hh, ww = kspace.shape
    pattern = sampled_pattern(kspace, mask)
    source = "mask" if mask is not None else "k-space (nonzero samples)"
    if calib_size is None:
        mh, mw = _pair(max_size, "max_size")
        dh, dw = detect_calibration_size(pattern)
        ch, cw = min(dh, mh), min(dw, mw)
        if ch < min_size[0] or cw < min_size[1]:
            raise DataError(
                f"no fully sampled k-space centre in {source}: found {dh}x{dw}, need at least "
                f"{min_size[0]}x{min_size[1]} (kernel size); pass calib_size or a mask with calibration lines"
            )
        return _extract(kspace, ch, cw)
    ch, cw = _pair(calib_size, "calib_size")
    if ch > hh or cw > ww:
        raise UsageError(f"calib_size {ch}x{cw} is larger than the k-space ({hh}x{ww})")
    if ch < min_size[0] or cw < min_size[1]:
        raise UsageError(f"calib_size {ch}x{cw} is smaller than the kernel ({min_size[0]}x{min_size[1]})")
    a, b = region_start(hh, ch), region_start(ww, cw)
    if not bool(pattern[a:a + ch, b:b + cw].all()):
        dh, dw = detect_calibration_size(pattern)
        raise DataError(
            f"calib_size {ch}x{cw} is not fully sampled in {source}: its fully sampled centre is {dh}x{dw}"
        )
    return _extract(kspace, ch, cw)


def _extract(kspace: torch.Tensor, ch: int, cw: int) -> torch.Tensor:
    hh, ww = kspace.shape[-2:]
    a, b = region_start(hh, ch), region_start(ww, cw)
    return kspace[..., a:a + ch, b:b + cw]
