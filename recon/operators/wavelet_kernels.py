"""Compiled CPU kernels of the periodized 2D DWT (numba): the fast path of :class:`recon.operators.Wavelet2D`.

Why compiled loops (issue 17): the transform is a handful of 4-8 tap filters per level; written as torch ops
it is ~20 small ops per level, and on the 2-core AMD EPYC development machine each torch op costs ~8 us of
dispatch whatever its size, so the 256 x 256 complex db2 4-level transform took ~1.2 ms (forward) and the
FISTA prox twice that. These loops do the same arithmetic in one call per transform: ~0.25 ms forward,
~0.29 ms inverse on one core (``benchmarks/operators.py`` table 1b shows what FISTA gains). numba is already
installed with SigPy (a core dependency); the kernels are compiled on first use and cached on disk
(``cache=True``: ``__pycache__`` beside this file, or numba's user-wide cache, or ``NUMBA_CACHE_DIR``), so only
the first process on a machine pays the ~1.5 s compile. Every process pays ~0.7 s at its first transform
(``import numba`` ~0.25 s, numba's typing registries on the first call ~0.45 s): measured end to end, a
``recon run --method l1-wavelet`` of the bundled 3-slice sample takes ~0.5 s longer, the 16-slice 256 x 256
volume of ``benchmarks/volume.py`` breaks even, and longer solves, batch workers and notebooks gain.

Arrays are float views: a ``(B, h, w)`` complex image is passed as ``(B, h, 2 w)`` floats (``q = 2`` floats
per element), a real one as itself (``q = 1``); filters act on elements, so re and im are filtered alike.
Every output element is one fixed sequence of multiply-adds: the result does not depend on threads or load.

One level, as :class:`~recon.operators.Wavelet2D` defines it (PyWavelets' ``mode="periodization"``): along W,
``band_b[n] = sum_k f_b[k] x[(2 n + k + s) mod w]`` for the low (``b = 0``) and high (``b = 1``) filters,
``s = 1 - L / 2``, written as ``[low | high]`` columns; then the same along H, ``[low; high]`` rows. The
even/odd split of each row (``ev[t] = x[2 t + s]``, ``od[t] = x[2 t + 1 + s]``, circular) makes every tap a
contiguous multiply-add that the compiler vectorizes.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _wrap(i: int, n: int) -> int:
    """``i mod n`` for the indices of a level (usually already in range: no division then)."""
    if 0 <= i < n:
        return i
    return i % n


@njit(cache=True, nogil=True)
def _split_row(row, w, q, s, ev, od) -> None:
    """``ev[t] = row[(2 t + s) mod w]``, ``od[t] = row[(2 t + 1 + s) mod w]`` (elements of ``q`` floats)."""
    for t in range(ev.shape[0] // q):
        ce = _wrap(2 * t + s, w)
        co = _wrap(2 * t + 1 + s, w)
        if q == 2:
            ev[2 * t] = row[2 * ce]
            ev[2 * t + 1] = row[2 * ce + 1]
            od[2 * t] = row[2 * co]
            od[2 * t + 1] = row[2 * co + 1]
        else:
            ev[t] = row[ce]
            od[t] = row[co]


@njit(cache=True, nogil=True)
def _merge_row(row, w, q, s, ev, od) -> None:
    """The adjoint of :func:`_split_row`: ``row[(2 t + s) mod w] += ev[t]``, likewise ``od`` (``row`` zeroed first)."""
    row[:] = 0.0
    for t in range(ev.shape[0] // q):
        ce = _wrap(2 * t + s, w)
        co = _wrap(2 * t + 1 + s, w)
        if q == 2:
            row[2 * ce] += ev[2 * t]
            row[2 * ce + 1] += ev[2 * t + 1]
            row[2 * co] += od[2 * t]
            row[2 * co + 1] += od[2 * t + 1]
        else:
            row[ce] += ev[t]
            row[co] += od[t]


@njit(cache=True, nogil=True)
def _axpy2(y, a, x, b, z) -> None:
    """``y += a x + b z`` (1D, same length)."""
    for j in range(y.shape[0]):
        y[j] += a * x[j] + b * z[j]


@njit(cache=True, nogil=True)
def _analysis_level(src, dst, h, w, q, lo, hi, tmp, ev, od, dy, dx) -> None:
    """One level on the top-left ``(h, w)`` elements of every ``src[b]``, circularly shifted by ``(dy, dx)``
    (``torch.roll``'s sense), into ``dst[b]`` (may be ``src`` when unshifted): along W into ``tmp``
    ``(>= h, >= w q)``, then along H into ``dst``."""
    L = lo.shape[0]
    s = 1 - L // 2
    half, wq, m2 = (w // 2) * q, w * q, h // 2
    e_len = (w // 2 + L // 2 - 1) * q
    for b in range(src.shape[0]):
        for i in range(h):
            _split_row(src[b, _wrap(i - dy, h)], w, q, s - dx, ev[:e_len], od[:e_len])
            low, high = tmp[i, :half], tmp[i, half:wq]
            low[:] = 0.0
            high[:] = 0.0
            for a in range(L // 2):
                e, d = ev[a * q:a * q + half], od[a * q:a * q + half]
                _axpy2(low, lo[2 * a], e, lo[2 * a + 1], d)
                _axpy2(high, hi[2 * a], e, hi[2 * a + 1], d)
        for m in range(m2):
            low, high = dst[b, m, :wq], dst[b, m2 + m, :wq]
            low[:] = 0.0
            high[:] = 0.0
            for a in range(L // 2):
                r0, r1 = tmp[_wrap(2 * m + 2 * a + s, h), :wq], tmp[_wrap(2 * m + 2 * a + 1 + s, h), :wq]
                _axpy2(low, lo[2 * a], r0, lo[2 * a + 1], r1)
                _axpy2(high, hi[2 * a], r0, hi[2 * a + 1], r1)


@njit(cache=True, nogil=True)
def _synthesis_level(src, dst, h, w, q, lo, hi, tmp, ev, od, dy, dx) -> None:
    """The adjoint (= inverse) of :func:`_analysis_level`, the image shifted back by ``(dy, dx)``: along H into
    ``tmp``, then along W into ``dst`` (may be ``src``: ``src`` is read completely before ``dst`` is written)."""
    L = lo.shape[0]
    s = 1 - L // 2
    half, wq, m2 = (w // 2) * q, w * q, h // 2
    e_len = (w // 2 + L // 2 - 1) * q
    for b in range(src.shape[0]):
        tmp[:h, :wq] = 0.0
        for m in range(m2):
            low, high = src[b, m, :wq], src[b, m2 + m, :wq]
            for k in range(L):
                _axpy2(tmp[_wrap(2 * m + k + s, h), :wq], lo[k], low, hi[k], high)
        for i in range(h):
            e, d = ev[:e_len], od[:e_len]
            e[:] = 0.0
            d[:] = 0.0
            low, high = tmp[i, :half], tmp[i, half:wq]
            for a in range(L // 2):
                _axpy2(e[a * q:a * q + half], lo[2 * a], low, hi[2 * a], high)
                _axpy2(d[a * q:a * q + half], lo[2 * a + 1], low, hi[2 * a + 1], high)
            _merge_row(dst[b, _wrap(i - dy, h), :wq], w, q, s - dx, e, d)


@njit(cache=True, nogil=True)
def _scratch(H, W, q, L, dtype):
    """A level's work arrays for ``(H, W)`` images, ``q`` floats per element, ``L`` taps: ``tmp`` ``(H, W q)`` and
    the even/odd row halves ``ev``, ``od`` (``(W / 2 + L / 2) q``, circular margin included)."""
    tmp = np.empty((H, W * q), dtype)
    ev = np.empty((W // 2 + L // 2) * q, dtype)
    return tmp, ev, np.empty_like(ev)


@njit(cache=True, nogil=True)
def analysis(x, out, levels, q, lo, hi, dy=0, dx=0) -> None:
    """``levels``-level DWT of each ``x[b]`` ``(H, W q)`` floats, circularly shifted by ``(dy, dx)`` elements
    first (``torch.roll(x, (dy, dx))``, cycle spinning at no cost), into ``out`` (same shape, not ``x``; packed
    layout of :class:`~recon.operators.Wavelet2D`); ``H`` and ``W`` divisible by ``2**levels``; ``lo``/``hi``
    the correlation taps (even length) in ``x``'s float dtype."""
    H, W = x.shape[1], x.shape[2] // q
    tmp, ev, od = _scratch(H, W, q, lo.shape[0], x.dtype)
    _analysis_level(x, out, H, W, q, lo, hi, tmp, ev, od, dy, dx)
    for level in range(1, levels):
        _analysis_level(out, out, H >> level, W >> level, q, lo, hi, tmp, ev, od, 0, 0)


@njit(cache=True, nogil=True)
def synthesis(work, levels, q, lo, hi, dy=0, dx=0) -> None:
    """The inverse of :func:`analysis`, in place: packed coefficients ``work`` ``(B, H, W q)`` -> images,
    shifted back by ``(dy, dx)`` (``torch.roll(image, (-dy, -dx))``)."""
    H, W = work.shape[1], work.shape[2] // q
    tmp, ev, od = _scratch(H, W, q, lo.shape[0], work.dtype)
    for level in range(levels - 1, 0, -1):
        _synthesis_level(work, work, H >> level, W >> level, q, lo, hi, tmp, ev, od, 0, 0)
    _synthesis_level(work, work, H, W, q, lo, hi, tmp, ev, od, dy, dx)
