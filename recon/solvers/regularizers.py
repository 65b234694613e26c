"""Sparsity regularisers ``R(x) = ||K x||_1`` for the CS solvers: L1-wavelet and isotropic total variation.

Each gives the transform ``K`` (forward/adjoint), ``||K||^2``, the value ``R(x)`` per batch element, the
proximal map of ``t R`` (FISTA) and the two maps on ``K x``'s space that ADMM and PDHG need: the
shrinkage ``prox_{t ||.||_1}`` and the projection onto ``{q : |q| <= lam}`` (the dual ball).

* :class:`L1Wavelet`: ``K`` = orthonormal 2D DWT (:class:`recon.operators.Wavelet2D`); the coarsest
  approximation band is not penalised (its weight is 0), so a large lambda leaves a low-resolution image
  rather than a darkened one. ``random_shift``: cycle spinning as BART ``pics`` does: each prox uses the
  wavelet of a randomly shifted image, which removes the blocky artefacts of a fixed wavelet grid (the
  value :meth:`value` is always the unshifted one).
* :class:`TotalVariation`: ``K`` = forward differences along H and W (:class:`recon.operators.FiniteDifference`),
  ``|K x|`` the per-pixel magnitude of the 2-vector (isotropic TV).
"""
from __future__ import annotations

import math

import torch

from recon.errors import UsageError
from recon.operators import FiniteDifference, Wavelet2D


def default_levels(shape: tuple[int, int], coarsest: int = 16, max_levels: int = 4) -> int:
    """Wavelet levels so that the coarsest band is at least ``coarsest`` pixels per axis (1..max_levels)."""
    n = min(int(shape[0]), int(shape[1]))
    return int(max(1, min(max_levels, math.floor(math.log2(max(n / coarsest, 1.0))))))


def soft_threshold(z: torch.Tensor, thr: torch.Tensor | float) -> torch.Tensor:
    """Complex soft thresholding ``z * max(1 - thr / |z|, 0)`` (``thr`` broadcastable, >= 0)."""
    mag = z.abs()
    return z * torch.clamp(1 - thr / mag.clamp_min(1e-30), min=0)


class L1Wavelet:
    """``R(x) = sum |W x|`` over the detail bands of an orthonormal wavelet transform of ``(H, W)`` images."""

    name = "l1-wavelet"
    norm_sq = 1.0
    k_ndim = 2  # trailing axes of K x

    def __init__(self, shape: tuple[int, int], wavelet: str = "db4", levels: int | None = None,
                 random_shift: bool = False, seed: int = 0):
        self.shape = (int(shape[0]), int(shape[1]))
        self.levels = default_levels(self.shape) if levels is None else int(levels)
        self.op = Wavelet2D(self.shape, wavelet, self.levels)
        H, W = self.op.oshape
        weights = torch.ones(H, W)
        weights[: H >> self.levels, : W >> self.levels] = 0.0  # the approximation band is not penalised
        self._weights = weights
        self.random_shift = bool(random_shift)
        self._gen = torch.Generator().manual_seed(int(seed))
        self.parameters = {"wavelet": wavelet, "levels": self.levels, "random_shift": self.random_shift}

    def weights(self, like: torch.Tensor) -> torch.Tensor:
        if self._weights.device != like.device:
            self._weights = self._weights.to(like.device)
        return self._weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x)

    def adjoint(self, c: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(c)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x)`` per batch element: shape ``x.shape[:-2]``, float64."""
        c = self.op.forward(x)
        return (c.abs() * self.weights(c)).to(torch.float64).sum(dim=(-2, -1))

    def shrink(self, c: torch.Tensor, thr: float) -> torch.Tensor:
        """``prox_{thr ||.||_1}`` on coefficients (weighted by band)."""
        return soft_threshold(c, thr * self.weights(c))

    def project(self, q: torch.Tensor, lam: float) -> torch.Tensor:
        """Projection onto ``{|q| <= lam * weight}`` (the dual ball of ``lam R``)."""
        bound = lam * self.weights(q)
        mag = q.abs()
        return q * torch.where(mag > bound, bound / mag.clamp_min(1e-30), torch.ones_like(mag))

    def prox(self, x: torch.Tensor, thr: float) -> torch.Tensor:
        """``prox_{thr R}(x)`` = ``W^H shrink(W x)`` (exact for sizes divisible by ``2**levels``)."""
        if self.random_shift:
            step = 2 ** self.levels
            sh = torch.randint(0, step, (2,), generator=self._gen).tolist()
            xs = torch.roll(x, shifts=(sh[0], sh[1]), dims=(-2, -1))
            out = self.op.adjoint(self.shrink(self.op.forward(xs), thr))
            return torch.roll(out, shifts=(-sh[0], -sh[1]), dims=(-2, -1))
        return self.op.adjoint(self.shrink(self.op.forward(x), thr))


class TotalVariation:
    """Isotropic TV ``R(x) = sum_pixels sqrt(|D_H x|^2 + |D_W x|^2)`` with periodic forward differences."""

    name = "tv"
    norm_sq = 8.0  # ||D||^2 for periodic differences in 2D
    k_ndim = 3

    def __init__(self, shape: tuple[int, int], boundary: str = "periodic"):
        self.shape = (int(shape[0]), int(shape[1]))
        self.op = FiniteDifference((-2, -1), boundary)
        self.parameters = {"boundary": boundary}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(g)

    @staticmethod
    def _mag(g: torch.Tensor) -> torch.Tensor:
        return (g.real.square() + g.imag.square()).sum(dim=-3, keepdim=True).sqrt()

    def value(self, x: torch.Tensor) -> torch.Tensor:
        g = self.op.forward(x)
        return self._mag(g).to(torch.float64).sum(dim=(-3, -2, -1))

    def shrink(self, g: torch.Tensor, thr: float) -> torch.Tensor:
        """Group soft thresholding of the gradient 2-vectors."""
        mag = self._mag(g)
        return g * torch.clamp(1 - thr / mag.clamp_min(1e-30), min=0)

    def project(self, q: torch.Tensor, lam: float) -> torch.Tensor:
        mag = self._mag(q)
        return q * torch.where(mag > lam, lam / mag.clamp_min(1e-30), torch.ones_like(mag))

    def prox(self, x: torch.Tensor, thr: float) -> torch.Tensor:  # pragma: no cover - not closed form
        raise UsageError("TV has no closed-form prox; use solver='admm' or 'pdhg' for TV")


def make_regularizer(name: str, shape: tuple[int, int], **kwargs) -> L1Wavelet | TotalVariation:
    """``l1-wavelet`` (kwargs: wavelet, levels, random_shift, seed) or ``tv`` (kwargs: boundary)."""
    if name in ("l1-wavelet", "wavelet", "l1"):
        return L1Wavelet(shape, **kwargs)
    if name == "tv":
        return TotalVariation(shape, **{k: v for k, v in kwargs.items() if k == "boundary"})
    raise UsageError(f"unknown regulariser {name!r}; use 'l1-wavelet' or 'tv'")
