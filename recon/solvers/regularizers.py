"""Sparsity regularisers ``R(x) = ||K x||_1`` for the CS solvers: L1-wavelet and isotropic total variation.

Short compositions of an operator ``K`` and a prox object (:mod:`recon.solvers.prox`): :meth:`as_prox` gives
the term ``lam R`` that the generic solvers (:func:`~recon.solvers.fista.fista`, :func:`~recon.solvers.admm.admm`,
:func:`~recon.solvers.pdhg.pdhg`) take. The methods ``forward``/``adjoint``/``value``/``shrink``/``project``/
``prox`` stay for callers of the earlier interface (``fista(problem, reg, lam)``).

* :class:`L1Wavelet`: ``K`` = orthonormal 2D DWT (:class:`recon.operators.Wavelet2D`); the coarsest
  approximation band is not penalised (its weight is 0), so a large lambda leaves a low-resolution image
  rather than a darkened one. ``random_shift``: cycle spinning as BART ``pics`` does: each prox uses the
  wavelet of a randomly shifted image, which removes the blocky artefacts of a fixed wavelet grid (the
  value :meth:`value` is always the unshifted one). ``as_prox(lam)`` = :class:`~recon.solvers.prox.L1InTransform`.
* :class:`TotalVariation`: ``K`` = forward differences along H and W (:class:`recon.operators.FiniteDifference`),
  ``|K x|`` the per-pixel magnitude of the 2-vector (isotropic TV). ``as_prox(lam)`` = :class:`~recon.solvers.prox.TV`.
"""
from __future__ import annotations

import math

import torch

from recon.errors import UsageError
from recon.operators import Wavelet2D
from recon.solvers.prox import TV, L1InTransform, soft_threshold  # noqa: F401  (soft_threshold: re-export)


def default_levels(shape: tuple[int, int], coarsest: int = 16, max_levels: int = 4) -> int:
    """Wavelet levels so that the coarsest band is at least ``coarsest`` pixels per axis (1..max_levels)."""
    n = min(int(shape[0]), int(shape[1]))
    return int(max(1, min(max_levels, math.floor(math.log2(max(n / coarsest, 1.0))))))


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
        self.random_shift = bool(random_shift)
        self._gen = torch.Generator().manual_seed(int(seed))
        self.parameters = {"wavelet": wavelet, "levels": self.levels, "random_shift": self.random_shift}
        self._unit = self.as_prox(1.0, weights)  # R itself (lam 1): shares the weights and the shifts' generator

    def as_prox(self, lam: float, weights: torch.Tensor | None = None) -> L1InTransform:
        """The term ``lam R`` as a prox object; its random shifts draw from this regulariser's generator."""
        return L1InTransform(self.op, self._unit.inner._weights if weights is None else weights, lam,
                             random_shift=self.random_shift, shift_period=2 ** self.levels, generator=self._gen,
                             name=self.name, parameters=self.parameters)

    def weights(self, like: torch.Tensor) -> torch.Tensor:
        return self._unit.inner.weights(like)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x)

    def adjoint(self, c: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(c)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x)`` per batch element: shape ``x.shape[:-2]``, float64."""
        return self._unit.inner.raw_value(self.op.forward(x))

    def shrink(self, c: torch.Tensor, thr: float) -> torch.Tensor:
        """``prox_{thr ||.||_1}`` on coefficients (weighted by band)."""
        return self._unit.inner.shrink(c, thr)

    def project(self, q: torch.Tensor, lam: float) -> torch.Tensor:
        """Projection onto ``{|q| <= lam * weight}`` (the dual ball of ``lam R``)."""
        return self._unit.inner.project(q, lam)

    def prox(self, x: torch.Tensor, thr: float) -> torch.Tensor:
        """``prox_{thr R}(x)`` = ``W^H shrink(W x)`` (exact for sizes divisible by ``2**levels``)."""
        return self._unit(x, thr)


class TotalVariation:
    """Isotropic TV ``R(x) = sum_pixels sqrt(|D_H x|^2 + |D_W x|^2)`` with periodic forward differences."""

    name = "tv"
    norm_sq = 8.0  # ||D||^2 for periodic differences in 2D
    k_ndim = 3

    def __init__(self, shape: tuple[int, int], boundary: str = "periodic"):
        self.shape = (int(shape[0]), int(shape[1]))
        self._unit = TV(self.shape, 1.0, boundary)
        self.op = self._unit.transform
        self.parameters = {"boundary": boundary}

    def as_prox(self, lam: float) -> TV:
        """The term ``lam R`` as a prox object (ADMM/PDHG use its split; its own prox is iterative)."""
        return TV(self.shape, lam, self.parameters["boundary"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(g)

    @staticmethod
    def _mag(g: torch.Tensor) -> torch.Tensor:
        return (g.real.square() + g.imag.square()).sum(dim=-3, keepdim=True).sqrt()

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self._unit.inner.raw_value(self.op.forward(x))

    def shrink(self, g: torch.Tensor, thr: float) -> torch.Tensor:
        """Group soft thresholding of the gradient 2-vectors."""
        return self._unit.inner.shrink(g, thr)

    def project(self, q: torch.Tensor, lam: float) -> torch.Tensor:
        return self._unit.inner.project(q, lam)

    def prox(self, x: torch.Tensor, thr: float) -> torch.Tensor:  # pragma: no cover - not closed form
        raise UsageError("TV has no closed-form prox; use solver='admm' or 'pdhg' for TV")


def make_regularizer(name: str, shape: tuple[int, int], **kwargs) -> L1Wavelet | TotalVariation:
    """``l1-wavelet`` (kwargs: wavelet, levels, random_shift, seed) or ``tv`` (kwargs: boundary)."""
    if name in ("l1-wavelet", "wavelet", "l1"):
        return L1Wavelet(shape, **kwargs)
    if name == "tv":
        return TotalVariation(shape, **{k: v for k, v in kwargs.items() if k == "boundary"})
    raise UsageError(f"unknown regulariser {name!r}; use 'l1-wavelet' or 'tv'")
