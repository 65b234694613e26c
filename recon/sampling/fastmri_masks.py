"""fastMRI's Cartesian column masks, with the same semantics and bit-identical output for the same seed.

A column mask is a boolean ``(W,)`` array over the phase-encode axis (array axis -1 of our
``(slices, coils, H, W)`` k-space; fastMRI's axis -2 of its ``(..., H, W, 2)`` tensors). It is the union of

1. a fully sampled centre block of ``num_low_frequencies = round(W * center_fraction)`` lines starting at
   ``(W - num_low_frequencies + 1) // 2``, and
2. an "acceleration" part for the outer lines whose rule depends on the mask type:

================= =====================================================================================
``random``        each line kept independently with probability ``(W / R - n_low) / (W - n_low)``
``equispaced``    every ``R``-th line from ``offset`` (``R`` must be an integer)
``equispaced_fraction`` lines ``round(offset + j * R')`` with ``R'`` chosen so that the total is ``W / R``
``magic``         Defazio's offset sampling: equispaced, shifted on the two halves of k-space (integer R)
``magic_fraction`` magic with the step adjusted so that the total number of lines is ``round(W / R)``
================= =====================================================================================

Randomness follows fastMRI exactly: one ``numpy.random.RandomState`` per mask function (seeded by ``seed``
at construction); a per-call ``seed`` reseeds it for that call only and restores the previous state after.
Each call first draws the (centre fraction, acceleration) pair -- ``rng.randint(len)`` for paired lists, two
``rng.choice`` calls with ``allow_any_combination`` -- then the offset (equispaced types, when not given),
or ``rng.uniform(size=W)`` (random). fastMRI's data transforms seed each call with the file name,
``tuple(map(ord, fname))`` where ``fname`` is the file's base name, so every slice of a volume gets the same
mask; pass the name as a ``str`` seed here to get that behaviour (:func:`seed_from_name`).

Achieved accelerations are fastMRI's: ``equispaced`` and ``magic`` undershoot ``R`` (the centre comes on top
of every R-th line: about 3.2x for R = 4 with 8% centre), ``equispaced_fraction`` hits it to ~1%, and
``magic_fraction`` overshoots slightly (its outer lines overlap the centre: about 4.3x for R = 4, 8.5x for 8).

Unlike fastMRI, requests that cannot be met raise :class:`recon.errors.UsageError` instead of silently
returning another acceleration (or crashing): a centre block larger than ``W / R``, ``R < 1``, centre
fractions outside ``(0, 1]``, lists of different lengths, non-integer ``R`` for ``equispaced``/``magic``,
widths too small to hold a centre line.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from recon.errors import UsageError
from recon.io.types import Header
from recon.sampling.mask import SamplingMask
from recon.sampling.seeds import Seed, normalize_seed, seed_from_name  # noqa: F401 (re-exported)

MASK_TYPES: tuple[str, ...] = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
"""The fastMRI column-mask types (``create_mask_for_mask_type`` names)."""

@contextlib.contextmanager
def _reseeded(rng: np.random.RandomState, seed: int | tuple[int, ...] | None) -> Iterator[None]:
    """Reseed ``rng`` for the duration of the block (nothing when ``seed`` is None), then restore it."""
    if seed is None:
        yield
        return
    saved = rng.get_state()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.set_state(saved)


def _as_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, (str, bytes)):
        raise UsageError(f"{name} must be a number or a list of numbers, got {values!r}")
    if np.isscalar(values):
        return [values]
    out = list(values)
    if not out:
        raise UsageError(f"{name} must not be empty")
    return out


def width_of(shape_or_width: int | Sequence[int]) -> int:
    """Phase-encode width ``W``: an int is ``W`` itself; a shape is ours, ``(..., H, W)``, so ``W = shape[-1]``.

    (fastMRI's own shapes end in a complex axis of 2: pass ``shape[-2]`` for those.)
    """
    if isinstance(shape_or_width, (bool, np.bool_)):
        raise UsageError(f"shape: expected a width or a shape, got {shape_or_width!r}")
    if isinstance(shape_or_width, (int, np.integer)):
        width = int(shape_or_width)
    else:
        shape = tuple(shape_or_width)
        if not shape or not all(isinstance(v, (int, np.integer)) for v in shape):
            raise UsageError(f"shape must be a tuple of ints, got {shape_or_width!r}")
        width = int(shape[-1])
    if width < 2:
        raise UsageError(f"shape: the phase-encode width must be at least 2 lines, got {width}")
    return width


class ColumnMaskFunc:
    """A fastMRI mask function: call it with a width to get a ``(W,)`` bool mask and the centre line count.

    Parameters
    ----------
    mask_type: one of :data:`MASK_TYPES`.
    center_fractions: fraction(s) of ``W`` sampled fully at the centre, each in ``(0, 1]``.
    accelerations: acceleration factor(s) ``R >= 1`` (integers for ``equispaced`` and ``magic``).
    allow_any_combination: draw the fraction and the acceleration independently instead of as pairs
        (then the lists may differ in length).
    seed: seed of the function's own random state (None: from the OS), as fastMRI's ``MaskFunc(seed=...)``.
    """

    def __init__(
        self,
        mask_type: str,
        center_fractions: float | Sequence[float],
        accelerations: float | Sequence[float],
        allow_any_combination: bool = False,
        seed: Seed = None,
    ) -> None:
        if mask_type not in MASK_TYPES:
            raise UsageError(f"mask_type must be one of {', '.join(MASK_TYPES)}, got {mask_type!r}")
        cfs = _as_list(center_fractions, "center_fractions")
        accs = _as_list(accelerations, "accelerations")
        for cf in cfs:
            if not isinstance(cf, (int, float, np.integer, np.floating)) or not (0 < float(cf) <= 1):
                raise UsageError(f"center_fractions must be in (0, 1], got {cf!r}")
        for r in accs:
            if not isinstance(r, (int, float, np.integer, np.floating)) or not np.isfinite(r) or float(r) < 1:
                raise UsageError(f"accelerations must be >= 1, got {r!r}")
            if mask_type in ("equispaced", "magic") and float(r) != int(r):
                raise UsageError(f"accelerations must be integers for mask type {mask_type!r}, got {r!r}")
        if len(cfs) != len(accs) and not allow_any_combination:
            raise UsageError(
                f"center_fractions ({len(cfs)} values) and accelerations ({len(accs)} values) must have the "
                "same length unless allow_any_combination is set"
            )
        pairs = [(c, r) for c in cfs for r in accs] if allow_any_combination else list(zip(cfs, accs))
        for c, r in pairs:
            if float(c) * float(r) > 1 + 1e-12:
                raise UsageError(
                    f"accelerations: {r}x cannot be met with center_fractions {c}: the centre alone samples "
                    f"{c:.3g} of the lines (more than 1/{r})"
                )
        if mask_type in ("equispaced", "magic"):
            accs = [int(r) for r in accs]
        self.mask_type = mask_type
        self.center_fractions = cfs
        self.accelerations = accs
        self.allow_any_combination = bool(allow_any_combination)
        self.rng = np.random.RandomState(normalize_seed(seed))

    # -- the draws, in fastMRI's order -------------------------------------------------------------
    def _choose(self) -> tuple[float, float]:
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        i = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[i], self.accelerations[i]

    def __call__(
        self, shape_or_width: int | Sequence[int], offset: int | None = None, seed: Seed = None
    ) -> tuple[np.ndarray, int]:
        """Sample a mask.

        Parameters
        ----------
        shape_or_width: ``W``, or a k-space shape ``(..., H, W)``.
        offset: first line of the equispaced part (equispaced types); None draws one at random.
        seed: per-call seed (int, tuple of ints, or a file name); None continues the function's state.

        Returns
        -------
        ``(mask, num_low_frequencies)``: bool ``(W,)`` and the number of fully sampled centre lines.
        """
        mask, info = self.sample(shape_or_width, offset, seed)
        return mask, info["num_low_frequencies"]

    def sample(
        self, shape_or_width: int | Sequence[int], offset: int | None = None, seed: Seed = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Like ``__call__`` but returns ``(mask (W,) bool, info)`` with every parameter actually used."""
        width = width_of(shape_or_width)
        if offset is not None:
            if isinstance(offset, (bool, np.bool_)) or not isinstance(offset, (int, np.integer)) or offset < 0:
                raise UsageError(f"offset must be a non-negative int, got {offset!r}")
            offset = int(offset)
        with _reseeded(self.rng, normalize_seed(seed)):
            cf, accel = self._choose()
            if self.mask_type == "magic_fraction":
                n_low, accel_part, used_offset, step = self._magic_fraction(width, float(cf), accel, offset)
            else:
                n_low = round(width * cf)
                self._check_centre(width, n_low, cf, accel)
                accel_part, used_offset, step = self._outer_lines(width, accel, offset, n_low)
        mask = _centre_block(width, n_low) | accel_part
        info = {
            "mask_type": self.mask_type,
            "width": width,
            "center_fraction": float(cf),
            "acceleration": float(accel) if float(accel) != int(accel) else int(accel),
            "num_low_frequencies": int(n_low),
            "offset": used_offset,
            "step": step,
            "num_lines": int(mask.sum()),
            "achieved_acceleration": width / float(mask.sum()),
        }
        return mask, info

    # -- helpers ------------------------------------------------------------------------------------
    def _check_centre(self, width: int, n_low: int, cf: float, accel: float) -> None:
        if n_low < 1:
            raise UsageError(
                f"shape: width {width} is too small for center_fractions {cf}: no centre line would be sampled"
            )
        if n_low * accel > width + 1e-9:
            raise UsageError(
                f"accelerations: {accel}x cannot be met for width {width}: the {n_low} centre lines alone "
                f"exceed {width}/{accel} lines"
            )
        if self.mask_type == "equispaced_fraction" and n_low * accel >= width - 1e-9:
            raise UsageError(
                f"accelerations: {accel}x with center_fractions {cf} leaves no outer lines to sample for "
                f"width {width} (equispaced_fraction needs the centre to be smaller than {width}/{accel})"
            )

    def _outer_lines(
        self, width: int, accel: float, offset: int | None, n_low: int
    ) -> tuple[np.ndarray, int | None, float | None]:
        """The acceleration part of the mask, the offset used and the line spacing (None for random)."""
        if self.mask_type == "random":
            # probability that keeps the expected total at W / R
            keep = (width / accel - n_low) / (width - n_low) if width > n_low else 0.0
            return self.rng.uniform(size=width) < keep, None, None
        if self.mask_type == "equispaced":
            step = int(accel)
            if offset is None:
                offset = int(self.rng.randint(0, high=round(accel)))
            out = np.zeros(width, dtype=bool)
            out[offset::step] = True
            return out, offset, float(step)
        if self.mask_type == "equispaced_fraction":
            # spacing that brings the total (centre included) to W / R on average
            step_f = (accel * (n_low - width)) / (n_low * accel - width)
            if offset is None:
                offset = int(self.rng.randint(0, high=round(step_f)))
            positions = np.around(np.arange(offset, width - 1, step_f)).astype(np.uint)
            out = np.zeros(width, dtype=bool)
            out[positions] = True
            return out, offset, float(step_f)
        # magic
        return self._magic_lines(width, int(accel), offset)

    def _magic_lines(self, width: int, step: int, offset: int | None) -> tuple[np.ndarray, int, float]:
        """Defazio's offset sampling: equispaced on each half of unshifted k-space, mirrored offsets."""
        if offset is None:
            offset = int(self.rng.randint(0, high=step))
        if offset % 2 == 0:
            first_pos, first_neg = offset + 1, offset + 2
        else:
            first_pos, first_neg = offset + 2, offset - 1
        n_pos = (width + 1) // 2
        pos = np.zeros(n_pos, dtype=bool)
        neg = np.zeros(width - n_pos, dtype=bool)
        pos[first_pos::step] = True
        neg[first_neg::step] = True
        # positive frequencies first, then the negative half mirrored: unshifted order, so centre it
        return np.fft.fftshift(np.concatenate((pos, neg[::-1]))), offset, float(step)

    def _magic_fraction(
        self, width: int, cf: float, accel: float, offset: int | None
    ) -> tuple[int, np.ndarray, int, float]:
        """magic_fraction: the centre is capped at the target line count and the step set to reach it."""
        n_low = round(width * cf)
        target = round(width / accel)
        if n_low < 1:
            raise UsageError(
                f"shape: width {width} is too small for center_fractions {cf}: no centre line would be sampled"
            )
        if n_low >= target:
            raise UsageError(
                f"accelerations: {accel}x cannot be met for width {width} with center_fractions {cf}: the "
                f"{n_low} centre lines leave none of the {target} target lines for the outer k-space"
            )
        step = round(width / (target - n_low))
        out, used, _ = self._magic_lines(width, step, offset)
        return n_low, out, used, float(step)


def _centre_block(width: int, n_low: int) -> np.ndarray:
    """fastMRI's centre block: ``n_low`` lines from ``(W - n_low + 1) // 2``."""
    out = np.zeros(width, dtype=bool)
    start = (width - n_low + 1) // 2
    out[start:start + n_low] = True
    return out


def apply_mask(
    kspace: np.ndarray, mask: np.ndarray, header: Header | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Undersample k-space: keep the samples where the mask is True, zero (+0, never -0) elsewhere.

    Parameters
    ----------
    kspace: ``(S, C, H, W)`` complex k-space.
    mask: bool ``(W,)`` column mask, ``(H, W)`` 2D mask or ``(S, H, W)`` per-slice mask.
    header: when given, lines outside ``header.acquired_pe`` are removed from the mask first (fastMRI's
        ``padding``), so zero-padded phase encodes never count as sampled.

    Returns
    -------
    ``(masked_kspace (S, C, H, W) complex64, mask_used)`` with ``mask_used`` of the input mask's shape.
    """
    k = np.asarray(kspace)
    if k.ndim != 4:
        raise UsageError(f"kspace must have shape (slices, coils, H, W), got shape {k.shape}")
    m = np.asarray(mask)
    if m.dtype != bool:
        if not np.all((m == 0) | (m == 1)):
            raise UsageError("mask must be boolean (or 0/1)")
        m = m.astype(bool)
    s, _, h, w = k.shape
    if m.shape not in ((w,), (h, w), (s, h, w)):
        raise UsageError(f"mask of shape {m.shape} does not fit k-space of shape {k.shape}")
    used = SamplingMask(m).acquired(header, w)
    full = used.for_kspace().array
    used = used.array
    masked = np.where(full, k, 0).astype(np.complex64, copy=False)
    return masked, used


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"recon.sampling.{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=3)


def acquired_mask(mask: np.ndarray, header: Header | None, width: int | None = None) -> np.ndarray:
    """Deprecated: ``SamplingMask(mask).acquired(header, width).array`` (:meth:`SamplingMask.acquired`)."""
    _deprecated("acquired_mask", "SamplingMask(mask).acquired(header, width).array")
    return SamplingMask(np.asarray(mask)).acquired(header, width).array


def to_fastmri_tensor(mask: np.ndarray, ndim: int = 4) -> "torch.Tensor":  # noqa: F821
    """Deprecated: ``SamplingMask(mask).fastmri_tensor(ndim)`` (:meth:`SamplingMask.fastmri_tensor`)."""
    _deprecated("to_fastmri_tensor", "SamplingMask(mask).fastmri_tensor(ndim)")
    return SamplingMask(np.asarray(mask)).fastmri_tensor(ndim)


def to_torch_mask(mask: np.ndarray) -> "torch.Tensor":  # noqa: F821
    """Deprecated: ``SamplingMask(mask).bool_tensor()`` (:meth:`SamplingMask.bool_tensor`)."""
    _deprecated("to_torch_mask", "SamplingMask(mask).bool_tensor()")
    return SamplingMask(np.asarray(mask)).bool_tensor()
