"""Multi-coil Cartesian SENSE as one fused operator: ``y = M * FFT(S * x)``.

The centred FFT's shifts are folded into precomputed tensors (see :mod:`recon.operators.fft`):
``fft2c(z) = p_out * fft2(p_in * z)``, so with ``S' = p_in * S`` and ``M' = p_out * M``

    forward  x (..., H, W)    -> y = M' * fft2(S' * x)                 (..., C, H, W)
    adjoint  y (..., C, H, W) -> x = sum_c conj(S'_c) * ifft2(conj(M') * y)
    normal   x -> sum_c conj(S'_c) * ifft2(|M|^2 * fft2(S'_c * x))     (the phases cancel)

Each direction is one complex multiply, one bare FFT and one (in-place) mask multiply; without a mask the
normal is the pointwise ``(sum_c |S_c|^2) x``. Without a mask and with even ``H``, ``W`` the output modulation
goes too: ``fft2c(z) = fft2((-1)^(h+w) roll(z, (H/2, W/2)))``, so ``y = fft2(R * roll(x))`` and
``x = roll(sum_c conj(R_c) * ifft2(y_c))`` with the rolled modulated maps ``R`` (two image-sized rolls instead
of two coil-sized multiplies).

Column masks (constant along the readout H, as every 1D phase-encode mask is): ``fft2 = fft_H fft_W`` and
``|M|^2`` does not depend on H, so ``ifft2 |M|^2 fft2 = ifft_W |M|^2 fft_W`` (the unitary H transforms cancel)
and the normal operator needs only the 1D FFTs along W: half the FFT work, and on the bundled-size problems
(8 x 256^2) the whole normal operator 1.5-1.7x faster. The H modulation folded into ``S'`` cancels against
its conjugate.

Memory (issue 17): where no autograd runs through it, the coil images of the forward (``S' x``) and the
weighted k-space of the adjoint go into one buffer per operator and shape, reused on every call, and the coil
combination multiplies the inverse FFT's output in place and sums over coils. Fresh coil-sized temporaries
were most of the cost above the FFTs: with glibc's default heap every one of them is mmapped and faulted in
again (about 1000 page faults per 4 MB). The buffers make an operator unsafe to call from two threads at once.

Measured (``python benchmarks/operators.py``, 2-core CPU): see ``benchmarks/README.md`` (issue 17). What
remains above the bare FFTs is the coil expand, the mask (twice) and the coil combination, each one pass over
the coil images; sampling only the acquired columns with 1D FFTs was tried and was slower.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from recon.errors import UsageError
from recon.operators.base import broadcast_shape, Composition, LinearOperator
from recon.operators.coils import coil_reduce_conj
from recon.operators.fft import centred_phases
from recon.operators.sampling import Mask
from recon.sampling import SamplingMask


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype in (torch.complex128, torch.float64) else torch.complex64


def _mul(z: torch.Tensor, other: torch.Tensor, paired: torch.Tensor | None = None) -> torch.Tensor:
    """``z * other``, in place on ``z`` (a fresh FFT output) when shapes and autograd allow it; ``paired``: the
    real ``other`` as :func:`_paired` gives it, for the faster real-view multiply."""
    if not other.requires_grad and z.shape == broadcast_shape(z.shape, other.shape):
        if paired is not None and _real_view_ok(z):
            torch.view_as_real(z).mul_(paired)
            return z
        return z.mul_(other)
    return z * other


def _paired(weight: torch.Tensor | None) -> torch.Tensor | None:
    """A real weight ``(..., H, W)`` repeated along a new trailing axis of 2, ``(..., H, W, 2)``, so that a complex
    tensor is scaled as its float view ``(..., H, W, 2)`` (re and im alike); None for complex weights.

    Why: torch multiplies complex by real by promoting the real operand element by element, and broadcasting a
    ``(..., 1)`` weight over the float view makes an inner loop of length 2; the paired weight keeps one contiguous
    float loop. Measured (8 x 256^2 complex64 in place, 2 threads / 1 thread): 82-91 / 117-138 us against
    128-228 / 223-262 us, column weights ``(1, W)`` 52 / 82 against 102 / 192 us. The values are the same
    (``(a + ib) c = ac + ibc`` either way)."""
    if weight is None or weight.is_complex() or weight.requires_grad:
        return None
    return torch.stack((weight, weight), dim=-1).contiguous()


def _real_view_ok(z: torch.Tensor) -> bool:
    """Whether ``z`` may be scaled through ``torch.view_as_real`` (complex, no pending conjugation, no autograd)."""
    return z.is_complex() and not z.is_conj() and not (torch.is_grad_enabled() and z.requires_grad)


#: coil images up to this many elements (per call) are combined by one in-place multiply and one sum, larger
#: ones coil by coil into an accumulator that stays in cache (one core, recon run's heap: 8 x 256^2 0.20 against
#: 0.29 ms, 15 x 640 x 368 3.3 against 2.5 ms)
INPLACE_REDUCE_ELEMENTS = 1 << 20


def _reduce(z: torch.Tensor, maps_conj: torch.Tensor, own: bool) -> torch.Tensor:
    """``sum_c maps_conj_c * z_c`` over axis -3; ``own``: ``z`` is this call's temporary (no autograd)."""
    if own and z.numel() <= INPLACE_REDUCE_ELEMENTS and z.shape == broadcast_shape(z.shape, maps_conj.shape):
        return z.mul_(maps_conj).sum(-3)
    return coil_reduce_conj(z, maps_conj)


class _Set(NamedTuple):
    """A SENSE operator's precomputed tensors for one (dtype, device): ``S'``, ``conj(S')``, ``M'``, ``|M|^2``,
    ``conj(M')``, and ``M'`` and ``|M|^2`` paired for :func:`_mul` (None where complex)."""

    maps_mod: torch.Tensor
    maps_conj: torch.Tensor
    mask_mod: torch.Tensor | None
    mask_sq: torch.Tensor | None
    mask_conj: torch.Tensor | None
    mask_mod2: torch.Tensor | None
    mask_sq2: torch.Tensor | None


class _Tensors:
    """Per (dtype, device) copies of a SENSE operator's precomputed tensors, each made on first use, and one
    reusable buffer per shape for the coil images of the fast (no-autograd) path."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor | None):
        self.maps = maps
        self.mask = mask
        self._cache: dict[tuple[torch.dtype, torch.device], dict[str, torch.Tensor | None]] = {}
        self._work: dict[tuple, torch.Tensor] = {}
        self._tuples: dict[tuple, Any] = {}

    def get(self, dtype: torch.dtype, device: torch.device) -> _Set:
        """The :class:`_Set` for tensors of ``dtype`` on ``device`` (kept: this lookup runs twice per forward +
        adjoint pair and was a measurable part of it at 8 x 256^2)."""
        return self._kept((dtype, device), lambda: _Set(*(self._entry(dtype, device, name) for name in _Set._fields)))

    def columns(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """``|M|^2`` as ``(..., 1, W)`` when the mask is constant along H (a column mask), else None."""
        return self.column_pair(dtype, device)[0]

    def column_pair(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """:meth:`columns` and the same paired for :func:`_mul` (None when complex), kept as one lookup (only the
        normal operator needs them, so the forward and adjoint do not pay for the column check)."""
        return self._kept((dtype, device, "cols"), lambda: (self._entry(dtype, device, "cols"),
                                                            self._entry(dtype, device, "cols2")))

    def rolled(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(R, conj R)``, ``R = (-1)^(h+w) roll(S, (H/2, W/2))``, for an unmasked operator of even ``H``, ``W``
        (module docstring), else None."""
        h, w = self.maps.shape[-2:]
        if self.mask is not None or h % 2 or w % 2:
            return None
        return self._kept((dtype, device, "rolled"),
                          lambda: (self._entry(dtype, device, "rolled"), self._entry(dtype, device, "rolled_conj")))

    def _kept(self, key: tuple, make: Any) -> Any:
        """``make()``, kept under ``key`` for later calls; made afresh on every call while the maps need gradients
        (the entries are then recomputed from the maps each time, see :meth:`_entry`)."""
        if self.maps.requires_grad:
            return make()
        found = self._tuples.get(key)
        if found is None:
            found = self._tuples[key] = make()
        return found

    def work(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A buffer of ``shape``, the same one on every call (its contents are the caller's until it returns)."""
        key = (tuple(shape), dtype, device)
        buffer = self._work.get(key)
        if buffer is None:
            buffer = self._work[key] = torch.empty(shape, dtype=dtype, device=device)
        return buffer

    def _entry(self, dtype: torch.dtype, device: torch.device, name: str) -> torch.Tensor | None:
        cdtype = _complex_of(dtype)
        key = (cdtype, device)
        if self.maps.requires_grad:  # differentiable: recomputed from the maps on every call
            self._cache.pop(key, None)
        entries = self._cache.setdefault(key, {})
        if name not in entries:
            entries[name] = self._make(name, cdtype, device, entries)
        return entries[name]

    def _make(self, name: str, cdtype: torch.dtype, device: torch.device, entries: dict):
        h, w = self.maps.shape[-2:]
        p_in, p_out = centred_phases((h, w), False, cdtype, device)
        if name in ("maps_mod", "rolled"):
            maps = self.maps.to(device=device, dtype=cdtype)
            maps = torch.roll(maps, (h // 2, w // 2), (-2, -1)) if name == "rolled" else maps
            return (maps * p_in).contiguous()
        if name == "maps_conj":
            return self._entry(cdtype, device, "maps_mod").conj().resolve_conj()
        if name == "rolled_conj":
            return self._entry(cdtype, device, "rolled").conj().resolve_conj()
        if name in ("mask_mod2", "mask_sq2", "cols2"):
            return _paired(self._entry(cdtype, device, name[:-1]))
        if name == "mask_conj":
            mask_mod = self._entry(cdtype, device, "mask_mod")
            return mask_mod.conj().resolve_conj() if mask_mod is not None and mask_mod.is_complex() else mask_mod
        if self.mask is None:
            return p_out if name == "mask_mod" else None
        m = SamplingMask(self.mask).weight(cdtype).to(device)
        if name == "mask_mod":
            return (m * p_out).contiguous()
        mask_sq = (m.abs() ** 2 if m.is_complex() else m * m).contiguous()
        return mask_sq if name == "mask_sq" else _column_weights(mask_sq)


def _column_weights(mask_sq: torch.Tensor) -> torch.Tensor | None:
    """``mask_sq`` reduced to ``(..., 1, W)`` when it is constant along its second-last axis (H), else None."""
    if mask_sq.ndim < 2:
        return mask_sq.reshape(1, -1)
    if mask_sq.shape[-2] == 1:
        return mask_sq
    first = mask_sq[..., :1, :]
    return first.contiguous() if torch.equal(mask_sq, first.expand_as(mask_sq)) else None


class Sense(LinearOperator):
    """Cartesian multi-coil SENSE: image ``(..., H, W)`` -> masked k-space ``(..., C, H, W)``.

    Parameters
    ----------
    maps: ``(..., C, H, W)`` complex coil sensitivities (leading dims, e.g. slices, broadcast with the
        image's batch dims).
    mask: sampling mask (bool or real/complex weights) broadcastable to ``(..., C, H, W)``: ``(W,)`` column
        mask, ``(H, W)``, ``(S, 1, H, W)``...; None = fully sampled.

    Equals ``Mask(mask) @ FFT() @ SensitivityExpand(maps)`` to float precision, faster.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor | None = None):
        if maps.ndim < 3:
            raise UsageError(f"sensitivity maps need shape (..., C, H, W), got {tuple(maps.shape)}")
        maps = maps if maps.is_complex() else maps.to(torch.complex64)
        if mask is not None:
            mask = torch.as_tensor(mask)
            try:
                torch.broadcast_shapes(mask.shape, maps.shape)
            except RuntimeError:
                raise UsageError(
                    f"mask of shape {tuple(mask.shape)} does not fit maps of shape {tuple(maps.shape)}"
                ) from None
        self.maps, self.mask = maps, mask
        self.ishape = tuple(maps.shape[-2:])
        self.oshape = tuple(maps.shape[-3:])
        self._t = _Tensors(maps, mask)

    def _shape_error(self, x, side: str) -> str:
        what = "image" if side == "input" else "k-space"
        return f"{what} of shape {tuple(x.shape)} does not fit SENSE with maps {tuple(self.maps.shape)}"

    def _check(self, x: torch.Tensor, trailing: tuple[int, ...], what: str) -> None:
        if tuple(x.shape[-len(trailing):]) != trailing:
            raise UsageError(f"{what} of shape {tuple(x.shape)} does not fit SENSE with maps {tuple(self.maps.shape)}")

    def _fast(self, t: torch.Tensor) -> bool:
        """Whether a call may use the reusable buffer and work in place (no autograd through it)."""
        return not (torch.is_grad_enabled() and (t.requires_grad or self.maps.requires_grad))

    def _expand(self, maps: torch.Tensor, x: torch.Tensor, fast: bool) -> torch.Tensor:
        """``maps * x`` (coil images), into the reusable buffer on the fast path."""
        if not fast:
            return maps * x
        shape = broadcast_shape(maps.shape, x.shape)
        return torch.mul(maps, x, out=self._t.work(shape, maps.dtype, maps.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, self.ishape, "image")
        fast = self._fast(x)
        rolled = self._t.rolled(x.dtype, x.device) if fast else None
        if rolled is not None:  # fully sampled, even sizes: fft2c(S x) = fft2(R roll(x)), no output modulation
            h, w = self.ishape
            return torch.fft.fft2(self._expand(rolled[0], torch.roll(x, (h // 2, w // 2), (-2, -1)).unsqueeze(-3),
                                               True), norm="ortho")
        t = self._t.get(x.dtype, x.device)
        k = torch.fft.fft2(self._expand(t.maps_mod, x.unsqueeze(-3), fast), norm="ortho")
        return _mul(k, t.mask_mod, t.mask_mod2)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, self.oshape[-2:], "k-space")
        fast = self._fast(y)
        rolled = self._t.rolled(y.dtype, y.device) if fast else None
        if rolled is not None:  # sum_c conj(S_c) ifft2c(y_c) = roll(sum_c conj(R_c) ifft2(y_c))
            h, w = self.ishape
            return torch.roll(_reduce(torch.fft.ifft2(y, norm="ortho"), rolled[1], True), (h // 2, w // 2), (-2, -1))
        t = self._t.get(y.dtype, y.device)
        weight, paired = t.mask_conj, t.mask_mod2  # conj(M') = M' where M' is real (paired)
        if fast:
            shape = broadcast_shape(y.shape, weight.shape)
            masked = self._t.work(shape, torch.result_type(y, weight), y.device)
            if paired is not None and masked.dtype == y.dtype and _real_view_ok(y):  # see _paired
                torch.mul(torch.view_as_real(y), paired, out=torch.view_as_real(masked))
            else:
                torch.mul(y, weight, out=masked)
        else:
            masked = y * weight
        return _reduce(torch.fft.ifft2(masked, norm="ortho"), t.maps_conj, fast)

    def normal(self) -> LinearOperator:
        if self.mask is None:
            return Mask((self.maps.abs() ** 2).sum(-3))
        return SenseNormal(self)

    def __repr__(self) -> str:
        mask = None if self.mask is None else tuple(self.mask.shape)
        return f"Sense(maps={tuple(self.maps.shape)}, mask={mask})"


class SenseNormal(LinearOperator):
    """``A^H A`` of a masked :class:`Sense`: expand -> FFT -> ``|M|^2`` -> IFFT -> reduce, ``(..., H, W)``."""

    def __init__(self, sense: Sense):
        self.sense = sense
        self.ishape = self.oshape = sense.ishape

    def _shape_error(self, x, side: str) -> str:
        return self.sense._shape_error(x, "input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sense._check(x, self.ishape, "image")
        t = self.sense._t.get(x.dtype, x.device)
        cols, cols2 = self.sense._t.column_pair(x.dtype, x.device)
        fast = self.sense._fast(x)
        coils = self.sense._expand(t.maps_mod, x.unsqueeze(-3), fast)
        if cols is not None:  # column mask: 1D FFTs along W only (module docstring)
            k = torch.fft.fft(coils, dim=-1, norm="ortho")
            z = torch.fft.ifft(_mul(k, cols, cols2), dim=-1, norm="ortho")
        else:
            k = torch.fft.fft2(coils, norm="ortho")
            z = torch.fft.ifft2(_mul(k, t.mask_sq, t.mask_sq2), norm="ortho")
        return _reduce(z, t.maps_conj, fast)

    adjoint = forward

    def normal(self) -> LinearOperator:
        return Composition(self, self)

    @property
    def H(self) -> LinearOperator:
        return self


class ModulatedSense:
    """Unmasked SENSE of even-sized maps in the *modulated* k-space domain ``k' = p * k``, for autograd.

    ``p = centred_phases((H, W))[1]`` is the centred FFT's output modulation, +-1 for even ``H``, ``W``, so
    ``fft2c(S x) = p * fft2(S' x)`` with ``S' = p_in S`` and ``sum_c conj(S_c) ifft2c(k_c) = sum_c conj(S'_c)
    ifft2(p * k_c)``: in the ``k'`` domain ``forward(x) = fft2(S' x)`` and ``H(k') = sum_c conj(S'_c) ifft2(k')``,
    two coil-sized multiplies fewer per forward/adjoint pair than :class:`Sense` (and as many in the backward).
    Multiplying by +-1 is exact and rounding is symmetric in sign, so an unrolled network that moves its k-space
    into this domain once (``k * p``), runs its cascades and moves back gets bit-identical values (VarNet's
    training and adaptation steps, issue 12). ``maps`` ``(..., C, H, W)`` complex; no mask (apply it outside).
    """

    def __init__(self, maps: torch.Tensor):
        h, w = maps.shape[-2:]
        if h % 2 or w % 2:
            raise UsageError(f"ModulatedSense needs even H and W, got maps of shape {tuple(maps.shape)}")
        p_in, self.p = centred_phases((h, w), False, maps.dtype, maps.device)
        self.maps_mod = (maps * p_in).contiguous()
        self.maps_conj = self.maps_mod.conj().resolve_conj()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` image -> ``(..., C, H, W)`` modulated k-space ``fft2(S' x)``."""
        return torch.fft.fft2(self.maps_mod * x.unsqueeze(-3), norm="ortho")

    def H(self, k: torch.Tensor) -> torch.Tensor:
        """``(..., C, H, W)`` modulated k-space -> ``(..., H, W)`` image ``sum_c conj(S'_c) ifft2(k'_c)``."""
        return coil_reduce_conj(torch.fft.ifft2(k, norm="ortho"), self.maps_conj)
