"""``SamplingMask``: the one owner of a sampling mask's conversions (shape for a k-space, device, 1D/2D, the
lines the header says were acquired, fastMRI's tensor layout, operator weights).

A mask acts on our ``(slices, coils, H, W)`` k-space and comes in any of these shapes: ``(W,)`` column mask
(phase encode), ``(H, W)`` 2D mask, ``(S, H, W)`` per-slice mask, or already broadcastable ``(S|1, 1|C, H|1, W)``.
Its values are booleans, 0/1, or real/complex weights. The array is kept as given -- numpy stays numpy, a torch
tensor stays a torch tensor on its device -- so a CUDA mask is never copied through the host; the methods
return the form each consumer needs.

(fastMRI's ``MaskFunc`` returns a ``(1, ..., W, 1)`` float tensor per call and mrpro's ``KData`` keeps the
acquisition's own index lists; recon's file formats hand over boolean arrays, so this class wraps the array and
converts it on demand.)

torch is imported only inside the methods that return tensors: ``recon.sampling`` stays importable without it
(start-up time of ``recon run --method zero-filled``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recon.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

    from recon.io.types import Header, RawData


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _shape(shape: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in shape)


@dataclass(frozen=True)
class SamplingMask:
    """A sampling mask (numpy array or torch tensor, kept as given) and its conversions.

    ``SamplingMask(array)``; :meth:`from_any` also takes None (then returns None), another ``SamplingMask``,
    and checks the fit to a k-space shape. The converting methods never modify ``array``.
    """

    array: Any

    def __post_init__(self) -> None:
        a = self.array
        if isinstance(a, SamplingMask):
            a = a.array
        elif not _is_tensor(a):
            a = np.asarray(a)
        object.__setattr__(self, "array", a)

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_any(cls, mask: Any, kspace_shape: Any = None, *, per_coil: bool = False) -> SamplingMask | None:
        """``mask`` (numpy, torch, array-like or a ``SamplingMask``) as a ``SamplingMask``; None stays None.

        With ``kspace_shape`` ``(S, C, H, W)`` the mask is also checked to fit it (:meth:`for_kspace`) and a
        :class:`UsageError` raised if it does not; the mask itself is returned in its own shape.
        """
        if mask is None:
            return None
        m = mask if isinstance(mask, SamplingMask) else cls(mask)
        if kspace_shape is not None:
            m.for_kspace(kspace_shape, per_coil=per_coil)
        return m

    @classmethod
    def of_raw(cls, raw: RawData) -> SamplingMask:
        """The mask of :class:`~recon.io.types.RawData` broadcastable to ``(S, 1, H, W)``; all ``W`` lines
        (``(1, 1, 1, W)`` True) when the file has none."""
        if raw.mask is None:
            return cls(np.ones((1, 1, 1, raw.kspace.shape[-1]), dtype=bool))
        return cls(raw.mask).for_kspace()

    @classmethod
    def first_slice(cls, raw: RawData) -> SamplingMask:
        """One slice's mask, ``(W,)`` or ``(H, W)`` bool: for fully sampled data every acquired line (the
        header's ``acquired_pe``; zero-padded phase encodes are not sampled). A per-slice mask gives the first
        slice's: :meth:`per_slice` gives every slice's."""
        w = raw.kspace.shape[-1]
        if raw.mask is None:
            return cls(np.ones(w, dtype=bool)).acquired(raw.header, w)
        m = np.asarray(raw.mask, dtype=bool)
        return cls(m[0] if m.ndim == 3 else m)

    @classmethod
    def per_slice(cls, raw: RawData) -> SamplingMask:
        """Every slice's mask, ``(S|1, H|1, W)`` bool (one per slice, or one for all); for fully sampled data
        every acquired line (the header's ``acquired_pe``)."""
        w = raw.kspace.shape[-1]
        if raw.mask is None:
            return cls(np.ones((1, 1, w), dtype=bool)).acquired(raw.header, w)
        m = np.asarray(raw.mask, dtype=bool)
        if m.ndim == 1:
            return cls(m[None, None])
        if m.ndim == 2:
            return cls(m[None])
        return cls(m.reshape(m.shape[0], m.shape[-2], w))  # (S, 1, W) or (S, H, W)

    # -- what it is ----------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return _shape(self.array.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_torch(self) -> bool:
        return _is_tensor(self.array)

    @property
    def device(self) -> Any:
        """The tensor's device; ``"cpu"`` for a numpy array."""
        return self.array.device if self.is_torch else "cpu"

    @property
    def is_2d(self) -> bool:
        """True when the mask varies along the readout axis (-2) of some slice (Poisson disc, Gaussian density);
        False for column masks (``(W,)``, or constant along H)."""
        a = self.array
        if a.ndim < 2 or a.shape[-2] < 2:
            return False
        m = a.reshape(-1, a.shape[-2], a.shape[-1]) != 0
        return bool((m != m[:, :1, :]).any())

    # -- conversions ---------------------------------------------------------------------------------------
    def for_kspace(self, kspace_shape: Any = None, *, per_coil: bool = False) -> SamplingMask:
        """The mask with the axes that make it broadcast against k-space ``(S, C, H, W)``: ``(W,)`` ->
        ``(1, 1, 1, W)``, ``(H, W)`` -> ``(1, 1, H, W)``, ``(S, H, W)`` -> ``(S, 1, H, W)``; 4D masks as they are
        (a view, same kind and device).

        ``kspace_shape``: check the result broadcasts to ``(S, 1, H, W)`` (``per_coil``: to ``(S, C, H, W)``)
        and raise :class:`UsageError` if not. Other ranks are returned unchanged.
        """
        a = self.array
        if a.ndim == 1:
            a = a.reshape(1, 1, 1, -1)
        elif a.ndim == 2:
            a = a[None, None]
        elif a.ndim == 3:
            a = a[:, None]
        if kspace_shape is not None:
            k = _shape(kspace_shape)
            target = k if per_coil else k[:1] + (1,) + k[2:]
            try:
                np.broadcast_shapes(_shape(a.shape), target)
            except ValueError:
                raise UsageError(f"mask of shape {self.shape} does not fit k-space of shape {k}") from None
        return SamplingMask(a)

    def per_example(self, kspace_shape: Any, device: Any = None, dtype: Any = None) -> torch.Tensor:
        """A tensor ``(B|1, 1, H, W)`` for k-space ``(B, C, H, W)`` (:meth:`for_kspace` expanded over H and W, a
        view), cast to ``dtype`` on ``device``: what the unrolled networks take. Accepts ``(W,)``, ``(H, W)``,
        ``(B, H, W)``, ``(B|1, 1, H, W)`` and ``(B|1, 1, 1, W)``; anything else is a :class:`UsageError`."""
        k = _shape(kspace_shape)
        m = self.for_kspace(k)
        if m.ndim != 4 or m.shape[1] != 1:
            raise UsageError(f"mask of shape {self.shape} does not fit k-space of shape {k}")
        t = m.to(device, dtype)
        return t.expand(t.shape[0], 1, k[2], k[3])

    @classmethod
    def for_network(cls, mask: Any, kspace: torch.Tensor) -> torch.Tensor:
        """``mask`` (None: every point sampled) as a float32 :meth:`per_example` tensor on ``kspace``'s device;
        :class:`UsageError` unless ``kspace`` is complex ``(B, C, H, W)``."""
        # deferred: loads torch, which importing recon.sampling.mask does not
        import torch

        if kspace.ndim != 4 or not kspace.is_complex():
            raise UsageError(f"k-space must be complex with shape (batch, coils, H, W), got {tuple(kspace.shape)} "
                             f"{kspace.dtype}")
        if mask is None:
            return torch.ones((1, 1) + tuple(kspace.shape[-2:]), dtype=torch.float32, device=kspace.device)
        return cls(mask).per_example(kspace.shape, kspace.device, torch.float32)

    def as_bool(self) -> SamplingMask:
        """The mask as booleans (nonzero = sampled), same kind and device (numpy: a copy)."""
        if self.is_torch:
            # deferred: loads torch, which importing recon.sampling.mask does not
            import torch

            return SamplingMask(self.array.to(torch.bool))
        return SamplingMask(np.asarray(self.array).astype(bool))

    def to(self, device: Any = None, dtype: Any = None) -> torch.Tensor:
        """The mask as a torch tensor (a numpy array shares its memory where it can), cast to ``dtype`` and moved
        to ``device`` (None: keep either). A tensor already there is returned as is: no host round trip."""
        # deferred: loads torch, which importing recon.sampling.mask does not
        import torch

        t = self.array if self.is_torch else torch.as_tensor(self.array)
        if dtype is not None:
            t = t.to(dtype)
        return t.to(device) if device is not None else t

    def numpy(self, dtype: Any = None) -> np.ndarray:
        """The mask as a numpy array (copied from the device for a GPU tensor), cast to ``dtype`` if given."""
        a = self.array.detach().cpu().numpy() if self.is_torch else np.asarray(self.array)
        return a if dtype is None else a.astype(dtype)

    def weight(self, like: Any = None) -> torch.Tensor:
        """The mask as a real float tensor (complex weights stay complex) of ``like``'s precision (a torch dtype;
        default complex64: float32/complex64; float64 or complex128: float64/complex128), on its device."""
        # deferred: loads torch, which importing recon.sampling.mask does not
        import torch

        like = torch.complex64 if like is None else like
        t = self.array if self.is_torch else torch.as_tensor(self.array)
        double = like in (torch.complex128, torch.float64)
        if t.is_complex():
            return t.to(torch.complex128 if double else torch.complex64)
        return t.to(torch.float64 if double else torch.float32)

    def real_weight(self, device: Any = None) -> torch.Tensor:
        """A float32 tensor on ``device`` (None: the mask's) that broadcasts against ``(S, C, H, W)``: ``(S, H, W)``
        gets its coil axis, ``(W,)``, ``(H, W)`` and 4D masks keep their shape; a complex mask is a
        :class:`UsageError` (what the SENSE problems take)."""
        # deferred: loads torch, which importing recon.sampling.mask does not
        import torch

        t = self.to()
        if t.is_complex():
            raise UsageError("mask must be real (boolean or weights)")
        t = t.to(torch.float32)
        if t.ndim == 3:
            t = t[:, None]
        return t.to(device) if device is not None else t

    def acquired(self, header: Header | None, width: int | None = None) -> SamplingMask:
        """A boolean copy with every line outside ``header.acquired_pe = [start, end)`` set to False.

        This is fastMRI's ``apply_mask(..., padding=(padding_left, padding_right))`` as used by its VarNet
        transform: ``mask[..., :start] = 0; mask[..., end:] = 0`` (Python slice semantics, so a negative ``end``
        counts from the right exactly as in fastMRI). ``width``: the k-space's phase-encode width (default
        the mask's last axis). :class:`DataError` when the range does not fit it.
        """
        if self.is_torch:
            # deferred: loads torch, which importing recon.sampling.mask does not
            import torch

            out = self.array.to(torch.bool).clone()
        else:
            out = np.array(self.array, dtype=bool, copy=True)
        if header is None or header.acquired_pe is None:
            return SamplingMask(out)
        start, end = (int(v) for v in header.acquired_pe)
        w = out.shape[-1] if width is None else width
        if not (0 <= start < end <= w):
            raise DataError(f"header acquired_pe [{start}, {end}) does not fit the phase-encode width {w}")
        out[..., :start] = False
        out[..., end:] = False
        return SamplingMask(out)

    def fastmri_tensor(self, ndim: int = 4) -> torch.Tensor:
        """A ``(W,)`` column mask as fastMRI's float32 torch mask of shape ``(1, ..., 1, W, 1)`` (``ndim`` axes)."""
        # deferred: loads torch, which importing recon.sampling.mask does not
        import torch

        if self.ndim != 1:
            raise UsageError(f"mask must be a (W,) column mask, got shape {self.shape}")
        if ndim < 2:
            raise UsageError(f"ndim must be at least 2, got {ndim}")
        shape = [1] * ndim
        shape[-2] = self.shape[0]
        if self.is_torch:
            return self.array.to(torch.float32).reshape(shape)
        return torch.from_numpy(np.asarray(self.array).astype(np.float32).reshape(shape))

    def bool_tensor(self, device: Any = None) -> torch.Tensor:
        """A bool tensor broadcastable to ``(S, C, H, W)`` (:meth:`for_kspace`); 1 to 3 axes only."""
        # deferred: loads torch, which importing recon.sampling.mask does not
        import torch

        if not 1 <= self.ndim <= 3:
            raise UsageError(f"mask must have 1 to 3 axes, got shape {self.shape}")
        if self.is_torch:
            return self.to(device, torch.bool).reshape(self.for_kspace().shape)
        m = SamplingMask(np.asarray(self.array, dtype=bool)).for_kspace().array
        t = torch.from_numpy(np.ascontiguousarray(m))
        return t.to(device) if device is not None else t
