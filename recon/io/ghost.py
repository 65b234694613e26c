"""Nyquist ghost-to-signal ratio and readout edge width of EPI images (the targets of ``data_specs/epi.md``).

Images are magnitude ``(H, W)`` with H = readout and W = phase encode (the EPI ghost is shifted by W / 2).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["object_mask", "ghost_to_signal_ratio", "edge_width"]


def object_mask(image: np.ndarray, threshold: float = 0.25, closing: int = 2, min_part: float = 0.1) -> np.ndarray:
    """Boolean ``(H, W)``: the object, pixels of the smoothed image above ``threshold`` x its 99th percentile,
    closed by ``closing`` iterations (gaps up to ``2 * closing`` pixels bridged), the connected pieces of at
    least ``min_part`` x the largest one's area, holes filled.

    The closing and the pieces keep a structured phantom whole: the Pulseq tutorial's phantom has dark grid
    lines and rods that split the thresholded image into strips. With the largest strip alone as "the
    object" (4-23% of the image while the phantom covers 22-42%), the "ghost region" (the object shifted by
    W / 2) landed on a readout streak or on the phantom itself instead of the phantom's ghost
    (``data_specs/epi.md``).
    """
    img = ndimage.gaussian_filter(np.abs(image).astype(np.float64), 1.0)
    m = img > threshold * np.percentile(img, 99)
    if closing > 0:  # padded so that an object touching the border is not eroded there
        m = ndimage.binary_closing(np.pad(m, closing), iterations=closing)[closing:-closing, closing:-closing]
    lab, n = ndimage.label(m)
    if n > 1:
        sizes = np.asarray(ndimage.sum(m, lab, range(1, n + 1)))
        keep = np.flatnonzero(sizes >= min_part * sizes.max()) + 1
        m = np.isin(lab, keep)
    return ndimage.binary_fill_holes(m)


def ghost_to_signal_ratio(image: np.ndarray, mask: np.ndarray | None = None, margin: int = 2) -> float:
    """Mean magnitude in the N/2 ghost region over mean magnitude in the object.

    The ghost region is the object mask circularly shifted by ``W // 2`` along W (phase encode), minus the
    object dilated by ``margin`` pixels. ``mask`` defaults to :func:`object_mask` of ``image``.
    """
    mag = np.abs(image)
    obj = object_mask(mag) if mask is None else mask.astype(bool)
    ghost = np.roll(obj, obj.shape[1] // 2, axis=1) & ~ndimage.binary_dilation(obj, iterations=margin)
    if not ghost.any() or not obj.any():
        raise ValueError("no ghost region outside the object (object wider than half the field of view)")
    return float(mag[ghost].mean() / mag[obj].mean())


def edge_width(profile: np.ndarray) -> float:
    """10-90% rise distance (samples, linear interpolation) of the steepest edge of a 1D magnitude profile.

    The profile is normalised between its 5th and 95th percentile; the edge is the one around the largest
    absolute finite difference; the width is measured between the 10% and 90% crossings nearest to it.
    """
    p = np.abs(np.asarray(profile, dtype=np.float64))
    lo, hi = np.percentile(p, 5), np.percentile(p, 95)
    q = (p - lo) / (hi - lo) if hi > lo else p * 0
    i = int(np.argmax(np.abs(np.diff(q))))
    rising = q[i + 1] > q[i]
    seg = q if rising else q[::-1]
    j = i if rising else p.size - 2 - i

    def cross(level: float) -> float:
        a = j
        while a > 0 and seg[a] > level:
            a -= 1
        b = a
        while b < seg.size - 1 and seg[b + 1] <= level:
            b += 1
        # crossing between b and b+1
        if b + 1 >= seg.size or seg[b + 1] == seg[b]:
            return float(b)
        return b + (level - seg[b]) / (seg[b + 1] - seg[b])

    return float(cross(0.9) - cross(0.1))
