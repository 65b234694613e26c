"""Orthonormal 2D discrete wavelet transform (periodized filter bank) with an exact adjoint.

The transform acts on the last two dims ``(H, W)``. Each level filters the current approximation band
circularly with an orthonormal wavelet's low/high-pass filters along H and along W and keeps every second
sample: for sizes divisible by 2 this is an orthogonal matrix, identical to PyWavelets'
``mode="periodization"`` (tested band by band), and its adjoint is its inverse.

Implementation (issue 17: the prox's wavelet pair cost as much as the SENSE normal operator). Without
autograd a level is separable arithmetic on strided views: along H each band is a sum of ``L`` scaled
every-other-row views of the circularly padded rows (one multiply-add per tap over contiguous rows); along W
the even and odd columns are first split into two contiguous blocks (one copy; complex64 moved as float64,
torch's strided complex64 copies being 3-4x slower), and the bands go straight into the packed output. The
adjoint runs the transposed sums, W then H, in the coefficients' own memory (:meth:`Wavelet2D.adjoint_`).
Small levels (:data:`DENSE_LEVEL_MACS`), and every level on a GPU, are two products with the level's dense
orthogonal matrix instead, where ~20 small ops would cost more in call (kernel launch) overhead. Under autograd
the earlier form runs: one strided ``conv2d`` per level, its adjoint a polyphase ``conv2d`` and pixel shuffle;
both forms agree to rounding.
256 x 256 complex64, db2, 4 levels, one core: forward 825 -> ~465 us, adjoint 1381 -> ~490 us.

Sizes not divisible by ``2**levels`` are zero-padded at the end to ``(H', W')``: the operator is then
``DWT @ Pad``, an isometry (``||W x|| == ||x||``, ``W^H W == I``) whose adjoint ``Crop @ IDWT`` is exact.

Coefficient layout (one tensor ``(..., H', W')``, like ``pywt.coeffs_to_array``): at each level the
approximation occupies the top-left quarter of the previous one; within a level of size ``(h, w)``
``[:h/2, w/2:]`` is low-pass along H / high-pass along W, ``[h/2:, :w/2]`` high along H / low along W and
``[h/2:, w/2:]`` high-high.
"""
from __future__ import annotations

import math
from functools import lru_cache

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


# ---- fast path: separable levels on strided views (no autograd) ---------------------------------------
def _movable(x: torch.Tensor) -> torch.Tensor:
    """``x`` for copies: complex64 viewed as float64 (one 8-byte element per value: torch's strided copies of
    complex64 are 3-4x slower than of float64, measured at 256^2); other dtypes as they are."""
    return x.view(torch.float64) if x.dtype == torch.complex64 else x


def _back(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.view(dtype) if dtype == torch.complex64 else t


def _circular(x: torch.Tensor, dim: int, start: int, length: int) -> torch.Tensor:
    """``y[i] = x[(i + start) mod n]`` along ``dim`` for ``i < length``: a view when that is ``x`` itself,
    else a copy (concatenated slices; an index gather where the period wraps more than twice)."""
    n = x.shape[dim]
    if start % n == 0 and length == n:
        return x
    m, p, left, pieces = _movable(x), start % n, length, []
    while left > 0 and len(pieces) < 4:
        take = min(n - p, left)
        pieces.append(m.narrow(dim, p, take))
        p, left = 0, left - take
    if left > 0:
        index = (torch.arange(length, device=x.device) + start) % n
        return _back(m.index_select(dim, index), x.dtype)
    return _back(torch.cat(pieces, dim), x.dtype)


def _deinterleave(x: torch.Tensor) -> torch.Tensor:
    """``(..., 2n) -> (..., 2, n)``: the even then the odd samples of the last dim (a copy)."""
    m = _movable(x)
    return _back(m.unflatten(-1, (m.shape[-1] // 2, 2)).transpose(-1, -2).contiguous(), x.dtype)


def _interleave(x: torch.Tensor) -> torch.Tensor:
    """``(..., 2, n) -> (..., 2n)``: the inverse of :func:`_deinterleave` (a copy)."""
    return _back(_movable(x).transpose(-1, -2).contiguous(), x.dtype).flatten(-2)


def _accumulate(out: torch.Tensor, terms) -> None:
    """``out = sum_i coef_i * src_i`` for ``(coef, src)`` in ``terms``, written into ``out`` (any strides)."""
    for i, (coef, src) in enumerate(terms):
        if i == 0:
            torch.mul(src, coef, out=out)
        else:
            out.add_(src, alpha=coef)


def _analysis_level(taps: tuple[tuple[float, ...], ...], cur: torch.Tensor, dest: torch.Tensor) -> None:
    """One level of the periodized DWT of ``cur`` ``(..., h, w)`` written into ``dest`` (same shape, any strides,
    may be ``cur``'s memory): filter along H (rows ``2m + k + shift``, circular), then along W.

    ``taps``: the (low, high) correlation taps. Each band is a sum of ``L`` scaled strided views (one
    multiply-add per tap on contiguous rows); along W the even and odd columns are first split into two
    contiguous blocks (one copy), which makes every tap's view contiguous.
    """
    L = len(taps[0])
    s = 1 - L // 2  # PyWavelets' periodization alignment
    h, w = cur.shape[-2:]
    rows = _circular(cur, -2, s, h + L - 2)
    half = cur.new_empty(cur.shape)  # rows: low-pass along H, then high-pass
    for b, f in enumerate(taps):
        _accumulate(half[..., b * (h // 2):(b + 1) * (h // 2), :], [(f[k], rows[..., k:k + h:2, :]) for k in range(L)])
    cols = _deinterleave(_circular(half, -1, s, w + L - 2))  # (..., h, 2 phases, w/2 + L/2 - 1)
    for b, f in enumerate(taps):
        _accumulate(dest[..., b * (w // 2):(b + 1) * (w // 2)],
                    [(f[k], cols[..., k % 2, k // 2:k // 2 + w // 2]) for k in range(L)])


def _synthesis_plan(length: int) -> tuple[list[list[tuple[int, int]]], int, int]:
    """For each output phase ``a`` the taps ``(k, e)`` that reach it: the adjoint of ``band[m] -> x[2m + k + s]``
    is ``x[2m' + a] += f[k] band[m' - e]`` with ``e = (k + s - a) / 2`` for ``k + s - a`` even; and the range of ``e``."""
    s = 1 - length // 2
    plan = [[(k, (k + s - a) // 2) for k in range(length) if (k + s - a) % 2 == 0] for a in (0, 1)]
    es = [e for p in plan for _, e in p]
    return plan, min(es), max(es)


def _synthesis_level(taps: tuple[tuple[float, ...], ...], block: torch.Tensor, dest: torch.Tensor) -> None:
    """The adjoint (= inverse) of :func:`_analysis_level`: coefficients ``block`` ``(..., h, w)`` to the image,
    written into ``dest`` (any strides, may be ``block``'s memory): along W (into even/odd column blocks,
    interleaved by one copy), then along H (straight into ``dest``'s even and odd rows)."""
    plan, lo_e, hi_e = _synthesis_plan(len(taps[0]))
    h, w = block.shape[-2:]
    n, m = w // 2, h // 2
    bands = _circular(block.unflatten(-1, (2, n)), -1, -hi_e, n + hi_e - lo_e)  # (..., h, 2 bands, n + pad)
    phases = block.new_empty(block.shape[:-1] + (2, n))
    for a in (0, 1):
        _accumulate(phases[..., a, :], [(taps[b][k], bands[..., b, hi_e - e:hi_e - e + n])
                                        for k, e in plan[a] for b in (0, 1)])
    rows = _circular(_interleave(phases).unflatten(-2, (2, m)), -2, -hi_e, m + hi_e - lo_e)  # (..., 2, m + pad, w)
    for a in (0, 1):
        _accumulate(dest[..., a::2, :], [(taps[b][k], rows[..., b, hi_e - e:hi_e - e + m, :])
                                         for k, e in plan[a] for b in (0, 1)])


#: a level whose two dense matrix products cost at most this many multiply-adds (batch included) is done
#: with them (:func:`_dense_level`): below it the ~20 small ops of the strided path cost more in call overhead
#: (about 85 us per level at 32^2 or 64^2, one core) than the matrix products (about 20 us at 64^2 complex)
DENSE_LEVEL_MACS = 3_000_000


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


def _dense_macs(shape: torch.Size, is_complex: bool) -> int:
    *batch, h, w = shape
    cw = w * (2 if is_complex else 1)
    return math.prod(batch) * (h * h * cw + h * cw * cw)


def _dense(x: torch.Tensor) -> bool:
    """Whether the level on ``x`` runs as dense matrix products (:func:`_dense_level`): always on a GPU, where
    the strided path's ~20 small kernels per level cost launch overhead and two products of at most ``(n, n)``
    matrices cost almost nothing; on the CPU for levels of at most :data:`DENSE_LEVEL_MACS`."""
    return x.device.type != "cpu" or _dense_macs(x.shape, x.is_complex()) <= DENSE_LEVEL_MACS


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
        self._banks: dict[tuple[torch.dtype, str], torch.Tensor] = {}
        self.ishape = (int(shape[0]), int(shape[1]))
        self.oshape = (_pad_to(self.ishape[0], self.levels), _pad_to(self.ishape[1], self.levels))

    # --- one level on real tensors (B, 1, h, w) -> (B, 4, h/2, w/2) ----------------------------------
    def _bank(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, str(device))
        if key not in self._banks:
            self._banks[key] = self._bank64.to(device=device, dtype=dtype)
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
        if tuple(x.shape[-2:]) != self.ishape:
            raise UsageError(f"image of shape {tuple(x.shape)} does not fit a wavelet operator for {self.ishape}")
        H, W = self.oshape
        if (H, W) != self.ishape:
            x = F.pad(x, (0, W - self.ishape[1], 0, H - self.ishape[0]))
        if x.requires_grad and torch.is_grad_enabled():
            return self._forward_conv(x)
        x = x.resolve_conj()
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        cur, (h, w) = x, (H, W)
        for _ in range(self.levels):
            if _dense(cur):
                _dense_level(self._taps, cur, out[..., :h, :w], adjoint=False)
            else:
                _analysis_level(self._taps, cur, out[..., :h, :w])
            h, w = h // 2, w // 2
            cur = out[..., :h, :w]
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[-2:]) != self.oshape:
            raise UsageError(f"coefficients of shape {tuple(y.shape)} do not fit a wavelet operator for {self.oshape}")
        if y.requires_grad and torch.is_grad_enabled():
            return self._adjoint_conv(y)
        return self.adjoint_(y.resolve_conj().clone(memory_format=torch.contiguous_format))

    def adjoint_(self, work: torch.Tensor) -> torch.Tensor:
        """:meth:`adjoint` computed in the memory of ``work`` (the coefficients, contiguous and not a conjugate
        view, which it overwrites; no autograd): the image, cropped to ``ishape`` (a view of ``work``)."""
        if tuple(work.shape[-2:]) != self.oshape:
            raise UsageError(f"coefficients of shape {tuple(work.shape)} do not fit a wavelet operator for {self.oshape}")
        H, W = self.oshape
        for level in reversed(range(self.levels)):
            block = work[..., : H >> level, : W >> level]
            if _dense(block):
                _dense_level(self._taps, block, block, adjoint=True)
            else:
                _synthesis_level(self._taps, block, block)
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
