"""Keep a long slice-by-slice run's memory flat without paying page faults inside the solvers.

glibc raises its mmap threshold each time a large block is freed, so after the first slice every
per-slice buffer (tens of MB of k-space) comes from the heap, which fragments and grows with the number
of slices (measured: `recon run` zero-filled on 15-coil 640x368 data, 453 MB for 4 slices, 812 MB for 16).

The first fix pinned the mmap threshold at 1 MB (every large block mmapped, returned when freed). That keeps
memory flat, but every temporary of an iterative solver then costs fresh zeroed pages: one 8-coil 256 x 256
complex temporary (4 MB) is 1025 page faults, about 2 ms, against 0.18 ms for the multiply that fills it, so
the SENSE normal operator took 13-17 ms instead of 6, and the 16-slice L1-wavelet volume spent 11 of its 26 s
in the kernel.

Now glibc keeps its adaptive threshold (the solver's temporaries are reused from the heap, no page faults)
and :func:`release_free_memory` (``malloc_trim(0)``) hands the free heap back to the system after each slice:
the same flat memory across slices, without the per-iteration cost.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers in glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_done = False
_libc = None


def _glibc():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    return _libc or None


def release_free_memory() -> bool:
    """Return the free parts of the heap to the system (glibc ``malloc_trim(0)``; elsewhere a no-op).

    Called between slices (:func:`recon.pipeline.reconstruct_file`). Returns whether glibc released memory.
    """
    libc = _glibc()
    if libc is None:
        return False
    try:
        return bool(libc.malloc_trim(0))
    except AttributeError:  # musl or another libc without malloc_trim
        return False


def keep_solver_buffers(mmap_bytes: int = 1 << 30, trim_bytes: int = 1 << 30) -> bool:
    """Blocks above ``mmap_bytes`` (a slice's raw k-space) are mmapped and returned when freed; smaller ones
    (a solver's per-iteration temporaries) come from the heap, which keeps up to ``trim_bytes`` free at its top
    between them instead of returning and re-faulting it. glibc only; elsewhere a no-op. Returns success."""
    global _done
    if _done:
        return True
    libc = _glibc()
    if libc is None:
        return False
    try:
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_bytes))) and bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim_bytes)))
    except AttributeError:
        _done = False
    return _done


def limit_heap_growth(threshold_bytes: int = 1 << 20) -> bool:
    """Serve allocations above ``threshold_bytes`` from mmap (glibc only; elsewhere a no-op). Returns success.

    Not used by the pipeline any more (module docstring: it makes every solver temporary page-fault); kept for
    callers that want it, e.g. a process that holds few large buffers for a long time.
    """
    global _done
    if _done:
        return True
    libc = _glibc()
    if libc is None:
        return False
    try:
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
    except AttributeError:
        _done = False
    return _done
