"""Orthonormal 2D discrete wavelet transform (periodized filter bank) with an exact adjoint.

The transform acts on the last two dims ``(H, W)``. Each level filters the current approximation band
circularly with an orthonormal wavelet's low/high-pass filters along H and along W and keeps every second
sample: for sizes divisible by 2 this is an orthogonal matrix, identical to PyWavelets'
``mode="periodization"`` (tested band by band), and its adjoint is its inverse.

Implementation (issue 17: the prox's wavelet pair cost as much as the SENSE normal operator). Without
autograd, on the CPU (float32/64, complex64/128), the whole multi-level transform is one call of compiled
loops (:mod:`recon.operators.wavelet_kernels`, numba); the adjoint runs in the coefficients' own memory
(:meth:`Wavelet2D.adjoint_`). 256 x 256 complex64, db2, 4 levels, one core of the 2-core AMD EPYC machine:
forward ~1.2 ms -> ~0.25 ms, adjoint ~1.3 ms -> ~0.29 ms against the torch-op form it replaced (strided views,
~20 ops per level, each costing ~8 us of dispatch there). The price is paid once per process: importing numba
and loading the cached kernels take ~0.7 s at the first transform (see :mod:`recon.operators.wavelet_kernels`).
Cycle spinning costs nothing: :meth:`Wavelet2D.forward_shifted` and ``adjoint_(work, shift)`` read and write
the shifted rows and columns directly instead of rolling copies. On a GPU every level is two products with the
level's dense orthogonal matrix (two kernels instead of ~20 launches). Under autograd (and for other dtypes)
one strided ``conv2d`` per level runs, its adjoint a polyphase ``conv2d`` and pixel shuffle; all forms agree
to rounding (tested).

Sizes not divisible by ``2**levels`` are zero-padded at the end to ``(H', W')``: the operator is then
``DWT @ Pad``, an isometry (``||W x|| == ||x||``, ``W^H W == I``) whose adjoint ``Crop @ IDWT`` is exact.

Coefficient layout (one tensor ``(..., H', W')``, like ``pywt.coeffs_to_array``): at each level the
approximation occupies the top-left quarter of the previous one; within a level of size ``(h, w)``
``[:h/2, w/2:]`` is low-pass along H / high-pass along W, ``[h/2:, :w/2]`` high along H / low along W and
``[h/2:, w/2:]`` high-high.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from recon.errors import UsageError
from recon.operators.base import Identity, LinearOperator


@lru_cache(maxsize=32)
def _filters(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(low, high) analysis filters as correlation taps (PyWavelets' ``dec_lo``/``dec_hi`` reversed)."""
    # deferred: loads pywt, which importing recon.operators.wavelet does not
    import pywt

    try:
        w = pywt.Wavelet(name)
    except ValueError:
        raise UsageError(f"unknown wavelet {name!r}; use an orthogonal one such as db1..db20, sym2..sym20, coif1..coif17") from None
    if not w.orthogonal:
        raise UsageError(f"wavelet {name!r} is not orthogonal; use db*, sym* or coif*")
    return tuple(w.dec_lo[::-1]), tuple(w.dec_hi[::-1])


def _pad_to(n: int, levels: int) -> int:
    step = 2 ** levels
    return -(-n // step) * step


# ---- fast paths (no autograd) -------------------------------------------------------------------------
#: dtypes the compiled CPU kernels (:mod:`recon.operators.wavelet_kernels`) take: float dtype of the view, floats per element
_KERNEL_DTYPES = {torch.float32: (np.float32, 1), torch.float64: (np.float64, 1),
                  torch.complex64: (np.float32, 2), torch.complex128: (np.float64, 2)}


def _kernels():
    """:mod:`recon.operators.wavelet_kernels` (numba)."""
    # deferred: numba's import and the kernels' cache load (~0.7 s) only where a wavelet runs on the CPU
    import recon.operators.wavelet_kernels as kernels

    return kernels


def _float_rows(t: torch.Tensor) -> np.ndarray:
    """A contiguous CPU ``(B, h, w)`` tensor as the ``(B, h, w q)`` float array the kernels take (shared memory)."""
    a = (torch.view_as_real(t) if t.is_complex() else t).detach().numpy()  # detach: numpy refuses grad tensors
    return a.reshape(a.shape[0], a.shape[1], -1)


def _compiled(x: torch.Tensor) -> bool:
    """Whether the transform of ``x`` runs as the compiled CPU kernels (float32/64 and complex64/128 on the CPU)."""
    return x.device.type == "cpu" and x.dtype in _KERNEL_DTYPES


@lru_cache(maxsize=64)
def _level_matrix(taps: tuple[tuple[float, ...], ...], n: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """One level's 1D periodized analysis as an orthogonal ``(n, n)`` matrix: rows ``[low-pass; high-pass]``,
    ``D[b n/2 + m, (2m + k + shift) mod n] += taps[b][k]`` (PyWavelets' alignment, any ``n`` >= 2)."""
    length = len(taps[0])
    d = torch.zeros(n, n, dtype=torch.float64)
    for b, f in enumerate(taps):
        for m in range(n // 2):
            for k in range(length):
                d[b * (n // 2) + m, (2 * m + k + 1 - length // 2) % n] += f[k]
    return d.to(device=device, dtype=dtype)


@lru_cache(maxsize=64)
def _pair_matrix(taps: tuple[tuple[float, ...], ...], n: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """:func:`_level_matrix` acting on interleaved (re, im) pairs: ``kron(D, I_2)``, ``(2n, 2n)`` (made once)."""
    return torch.kron(_level_matrix(taps, n, dtype, device), torch.eye(2, dtype=dtype, device=device))


def _dense(x: torch.Tensor) -> bool:
    """Whether the levels of ``x`` run as dense matrix products (:func:`_dense_level`): on a GPU, where
    the ~20 small kernels per level of a strided form would cost launch overhead and two products of at most
    ``(n, n)`` matrices cost almost nothing."""
    return x.device.type != "cpu"


def _dense_level(taps: tuple[tuple[float, ...], ...], src: torch.Tensor, dest: torch.Tensor, adjoint: bool) -> None:
    """One level (``adjoint``: its inverse) as ``D_h X D_w^T`` (``D_h^T Y D_w``) with the level matrices; complex
    data as real ``(h, 2w)`` rows, the W matrix acting on (re, im) pairs through ``kron(D_w, I_2)``."""
    h, w = src.shape[-2:]
    real = src.real.dtype if src.is_complex() else src.dtype
    dh = _level_matrix(taps, h, real, str(src.device))
    if src.is_complex():
        dw = _pair_matrix(taps, w, real, str(src.device))
        x = torch.view_as_real(src).flatten(-2)
    else:
        dw = _level_matrix(taps, w, real, str(src.device))
        x = src
    y = (dh.T @ x @ dw) if adjoint else (dh @ x @ dw.T)
    dest.copy_(torch.view_as_complex(y.unflatten(-1, (w, 2))) if src.is_complex() else y)


class Wavelet2D(LinearOperator):
    """Multi-level orthonormal 2D DWT: image ``(..., H, W)`` -> packed coefficients ``(..., H', W')``.

    Parameters
    ----------
    shape: ``(H, W)`` of the images.
    wavelet: an orthogonal PyWavelets name: ``db1`` (Haar) ... ``db4`` ..., ``sym*``, ``coif*``.
    levels: number of decomposition levels (>= 1).

    ``H' = ceil(H / 2**levels) * 2**levels`` (likewise ``W'``); the padding is zeros at the end.
    """

    def __init__(self, shape: tuple[int, int], wavelet: str = "db4", levels: int = 3):
        if len(shape) != 2 or min(shape) < 1:
            raise UsageError(f"wavelet shape must be (H, W), got {shape}")
        if int(levels) < 1:
            raise UsageError(f"wavelet levels must be >= 1, got {levels}")
        self.wavelet, self.levels = wavelet, int(levels)
        lo, hi = _filters(wavelet)
        self._taps = (lo, hi)
        self.filter_length = len(lo)
        lo_t = torch.tensor(lo, dtype=torch.float64)
        hi_t = torch.tensor(hi, dtype=torch.float64)
        # 4 separable 2D filters (first factor along H): LL, LH, HL, HH
        bank = torch.stack([torch.outer(a, b) for a in (lo_t, hi_t) for b in (lo_t, hi_t)])
        self._bank64 = bank.unsqueeze(1)  # (4, 1, L, L)
        self._banks: dict[tuple, object] = {}  # filters per dtype/device, made once
        self.ishape = (int(shape[0]), int(shape[1]))
        self.oshape = (_pad_to(self.ishape[0], self.levels), _pad_to(self.ishape[1], self.levels))

    # --- one level on real tensors (B, 1, h, w) -> (B, 4, h/2, w/2) ----------------------------------
    def _bank(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, str(device))
        if key not in self._banks:
            self._banks[key] = self._bank64.to(device=device, dtype=dtype)
        return self._banks[key]

    def _kernel_args(self, dtype: torch.dtype) -> tuple[int, np.ndarray, np.ndarray]:
        """``(q, low, high)`` for the kernels on ``dtype`` data: floats per element, and the correlation taps as
        arrays of the kernels' float dtype."""
        key = ("kernel", dtype)
        if key not in self._banks:
            real, q = _KERNEL_DTYPES[dtype]
            self._banks[key] = (q, *(np.asarray(f, dtype=real) for f in self._taps))
        return self._banks[key]

    def _index(self, n: int, device: torch.device) -> torch.Tensor:
        length = self.filter_length
        shift = 1 - length // 2  # PyWavelets' periodization alignment
        return (torch.arange(n + length - 2, device=device) + shift) % n

    def _analysis(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ih, iw = self._index(h, x.device), self._index(w, x.device)
        xp = x.index_select(-2, ih).index_select(-1, iw)
        return F.conv2d(xp, self._bank(x.dtype, x.device), stride=2)

    def _polyphase_bank(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The synthesis filters as a ``(4 phases, 4 bands, L/2, L/2)`` correlation kernel on the coefficient grid.

        Analysis output ``c_b[m, n] = sum_{i,j} f_b[i, j] x[2m + i + s, 2n + j + s]`` (``s`` the alignment
        shift); with ``f_b[2p + a, 2q + r]`` split by the phases ``(a, r)`` of the input pixels it is a plain
        correlation of the four polyphase images with ``(L/2, L/2)`` kernels. The adjoint is the correlation
        of the bands with the flipped kernels, channels transposed, followed by a pixel shuffle.
        """
        key = ("polyphase", dtype, str(device))
        if key not in self._banks:
            k = self.filter_length // 2
            bank = self._bank64.reshape(4, k, 2, k, 2).permute(0, 2, 4, 1, 3).reshape(4, 4, k, k)
            self._banks[key] = bank.flip(-1, -2).transpose(0, 1).contiguous().to(device=device, dtype=dtype)
        return self._banks[key]

    def _synthesis(self, c: torch.Tensor) -> torch.Tensor:
        k = self.filter_length // 2
        if c.shape[-2] >= k and c.shape[-1] >= k:  # polyphase: one conv2d + pixel shuffle (3x faster at 256^2)
            cp = F.pad(c, (k - 1, 0, k - 1, 0), mode="circular")
            x = F.pixel_shuffle(F.conv2d(cp, self._polyphase_bank(c.dtype, c.device)), 2)
            shift = 1 - self.filter_length // 2  # undo the analysis alignment (periodic)
            return torch.roll(x, (shift, shift), (-2, -1)) if shift else x
        h, w = 2 * c.shape[-2], 2 * c.shape[-1]
        ih, iw = self._index(h, c.device), self._index(w, c.device)
        xp = F.conv_transpose2d(c, self._bank(c.dtype, c.device), stride=2)  # (B, 1, h+L-2, w+L-2)
        rows = xp.new_zeros(xp.shape[:-2] + (h, xp.shape[-1])).index_add(-2, ih, xp)
        return rows.new_zeros(rows.shape[:-1] + (w,)).index_add(-1, iw, rows)

    # --- complex <-> real batch ------------------------------------------------------------------------
    @staticmethod
    def _to_real(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], bool]:
        batch = tuple(x.shape[:-2])
        h, w = x.shape[-2:]
        x = x.reshape((-1, h, w))
        if x.is_complex():
            x = torch.view_as_real(x).permute(0, 3, 1, 2)  # (B, 2, h, w)
            return x.reshape(-1, 1, h, w), batch, True
        return x.reshape(-1, 1, h, w), batch, False

    @staticmethod
    def _from_real(x: torch.Tensor, batch: tuple[int, ...], was_complex: bool) -> torch.Tensor:
        h, w = x.shape[-2:]
        if was_complex:
            x = x.reshape(-1, 2, h, w).permute(0, 2, 3, 1).contiguous()
            x = torch.view_as_complex(x)
        return x.reshape(batch + (h, w))

    # --- operator ----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_shifted(x, (0, 0))

    def _split_shift(self, t: torch.Tensor, shift: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """``shift`` (mod the image size) as ``(by the kernels, by a roll)``: the compiled kernels apply it
        themselves for CPU data without autograd or padding; otherwise the caller rolls."""
        d = (int(shift[0]) % self.ishape[0], int(shift[1]) % self.ishape[1])
        in_kernels = _compiled(t) and not (t.requires_grad and torch.is_grad_enabled()) and self.oshape == self.ishape
        return (d, (0, 0)) if in_kernels else ((0, 0), d)

    def forward_shifted(self, x: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
        """``forward(torch.roll(x, shift, (-2, -1)))``: cycle spinning. On the compiled CPU path the kernels read
        the shifted rows and columns directly (no rolled copy)."""
        if tuple(x.shape[-2:]) != self.ishape:
            raise UsageError(f"image of shape {tuple(x.shape)} does not fit a wavelet operator for {self.ishape}")
        (dy, dx), rolled = self._split_shift(x, shift)
        if any(rolled):
            x = torch.roll(x, rolled, (-2, -1))
        H, W = self.oshape
        if (H, W) != self.ishape:
            x = F.pad(x, (0, W - self.ishape[1], 0, H - self.ishape[0]))
        if x.requires_grad and torch.is_grad_enabled():
            return self._forward_conv(x)
        x = x.resolve_conj()
        if _compiled(x):
            src = x.reshape((-1, H, W)).contiguous()
            out = torch.empty_like(src)
            _kernels().analysis(_float_rows(src), _float_rows(out), self.levels, *self._kernel_args(x.dtype), dy, dx)
            return out.reshape(x.shape)
        if not _dense(x):  # a dtype the kernels do not take (e.g. float16): the conv2d form
            return self._forward_conv(x)
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        cur, (h, w) = x, (H, W)
        for _ in range(self.levels):
            _dense_level(self._taps, cur, out[..., :h, :w], adjoint=False)
            h, w = h // 2, w // 2
            cur = out[..., :h, :w]
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[-2:]) != self.oshape:
            raise UsageError(f"coefficients of shape {tuple(y.shape)} do not fit a wavelet operator for {self.oshape}")
        if y.requires_grad and torch.is_grad_enabled():
            return self._adjoint_conv(y)
        return self.adjoint_(y.resolve_conj().clone(memory_format=torch.contiguous_format))

    def adjoint_(self, work: torch.Tensor, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """:meth:`adjoint` computed in the memory of ``work`` (the coefficients, contiguous and not a conjugate
        view, which it overwrites; no autograd): the image, cropped to ``ishape`` (a view of ``work``, or with
        a shift the kernels cannot apply a rolled copy). ``shift``: the image rolled back by it,
        ``torch.roll(adjoint(work), (-shift[0], -shift[1]))``, the adjoint of :meth:`forward_shifted`."""
        if tuple(work.shape[-2:]) != self.oshape:
            raise UsageError(f"coefficients of shape {tuple(work.shape)} do not fit a wavelet operator for {self.oshape}")
        if work.is_conj() or not work.is_contiguous():  # outside the contract: work on a contiguous copy
            return self.adjoint_(work.resolve_conj().contiguous(), shift)
        (dy, dx), rolled = self._split_shift(work, shift)
        if any(rolled):
            return torch.roll(self.adjoint_(work), (-rolled[0], -rolled[1]), (-2, -1))
        H, W = self.oshape
        if _compiled(work):
            _kernels().synthesis(_float_rows(work.view((-1, H, W))), self.levels, *self._kernel_args(work.dtype), dy, dx)
        elif not _dense(work):
            return self._adjoint_conv(work)
        else:
            for level in reversed(range(self.levels)):
                block = work[..., : H >> level, : W >> level]
                _dense_level(self._taps, block, block, adjoint=True)
        return work[..., : self.ishape[0], : self.ishape[1]]

    # --- the same with conv2d, differentiable: autograd's path ------------------------------------------
    def _forward_conv(self, x: torch.Tensor) -> torch.Tensor:
        cur, batch, cplx = self._to_real(x)
        details = []
        for _ in range(self.levels):
            bands = self._analysis(cur)
            details.append(bands[:, 1:])
            cur = bands[:, :1]
        for det in reversed(details):
            top = torch.cat([cur, det[:, 0:1]], dim=-1)
            bottom = torch.cat([det[:, 1:2], det[:, 2:3]], dim=-1)
            cur = torch.cat([top, bottom], dim=-2)
        return self._from_real(cur, batch, cplx)

    def _adjoint_conv(self, y: torch.Tensor) -> torch.Tensor:
        c, batch, cplx = self._to_real(y)
        # peel the packed layout: sizes of the approximation band at each level
        sizes = [(self.oshape[0] >> lev, self.oshape[1] >> lev) for lev in range(1, self.levels + 1)]
        details = []
        for h, w in sizes:
            block = c[..., : 2 * h, : 2 * w]
            details.append(torch.cat([block[..., :h, w:], block[..., h:, :w], block[..., h:, w:]], dim=1))
        h, w = sizes[-1]
        cur = c[..., :h, :w]
        for det in reversed(details):
            cur = self._synthesis(torch.cat([cur, det], dim=1))
        x = self._from_real(cur, batch, cplx)
        return x[..., : self.ishape[0], : self.ishape[1]]

    def _shape_error(self, x, side: str) -> str:
        if side == "input":
            return f"image of shape {tuple(x.shape)} does not fit a wavelet operator for {self.ishape}"
        return f"coefficients of shape {tuple(x.shape)} do not fit a wavelet operator for {self.oshape}"

    def normal(self) -> LinearOperator:
        return Identity(self.ishape)  # W^H W == I (padding is cropped back)

    def __repr__(self) -> str:
        return f"Wavelet2D(shape={self.ishape}, wavelet={self.wavelet!r}, levels={self.levels})"
