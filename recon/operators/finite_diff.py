"""Forward finite differences (the gradient of total variation) with an exact adjoint."""
from __future__ import annotations

from typing import Sequence

import torch

from recon.errors import UsageError
from recon.operators.base import LinearOperator

BOUNDARIES = ("periodic", "neumann")


class FiniteDifference(LinearOperator):
    """Forward differences over ``dims``, stacked on a new axis just before the differenced block.

    For ``dims=(-2, -1)``: ``x (..., H, W) -> g (..., 2, H, W)`` with ``g[..., 0, :, :] = D_H x`` and
    ``g[..., 1, :, :] = D_W x``; in general ``x (..., *T) -> (..., len(dims), *T)`` where ``T`` is the trailing
    block ``x.shape[-k:]``, ``k = max(-d for d in dims)``.

    ``boundary``:
      * ``"periodic"``: ``(D x)_i = x_{i+1} - x_i`` with ``x_N = x_0``; ``||D||_2 = 2 sqrt(len(dims))`` for even
        sizes (``sqrt(8)`` in 2D).
      * ``"neumann"``: ``(D x)_i = x_{i+1} - x_i`` for ``i < N-1`` and ``0`` at ``i = N-1``; ``||D||_2 < 2 sqrt(len(dims))``.

    Adjoint (exact): periodic ``(D^H y)_i = y_{i-1} - y_i``; Neumann the same with ``y_{-1} = y_{N-1} = 0``.

    ``shape``: the trailing input block ``T`` (checked on every call; ``oshape = (len(dims), *T)``), or None
    (default) = any shape (:data:`~recon.operators.base.ANY_SHAPE`).
    """

    def __init__(self, dims: Sequence[int] = (-2, -1), boundary: str = "periodic",
                 shape: Sequence[int] | None = None):
        dims = tuple(int(d) for d in dims)
        if not dims or any(d >= 0 for d in dims) or len(set(dims)) != len(dims):
            raise UsageError(f"finite-difference dims must be distinct negative axes, got {dims}")
        if boundary not in BOUNDARIES:
            raise UsageError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")
        self.dims, self.boundary = dims, boundary
        self.k = max(-d for d in dims)
        if shape is not None:
            shape = tuple(int(n) for n in shape)
            if len(shape) < self.k:
                raise UsageError(f"finite differences over dims {dims} need a shape of {self.k} axes, got {shape}")
            self.ishape = shape[len(shape) - self.k:]
            self.oshape = (len(dims),) + self.ishape

    def _diff(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        if self.boundary == "periodic":
            return torch.roll(x, -1, dim) - x
        n = x.shape[dim]
        d = x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)
        return torch.cat([d, torch.zeros_like(x.narrow(dim, 0, 1))], dim)

    def _diff_adjoint(self, y: torch.Tensor, dim: int) -> torch.Tensor:
        if self.boundary == "periodic":
            return torch.roll(y, 1, dim) - y
        n = y.shape[dim]
        g = y.narrow(dim, 0, n - 1)
        zero = torch.zeros_like(y.narrow(dim, 0, 1))
        return torch.cat([zero, g], dim) - torch.cat([g, zero], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < self.k:
            raise UsageError(f"finite differences over dims {self.dims} need {self.k} axes, got shape {tuple(x.shape)}")
        return torch.stack([self._diff(x, d) for d in self.dims], dim=-(self.k + 1))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        axis = -(self.k + 1)
        if y.ndim < self.k + 1 or y.shape[axis] != len(self.dims):
            raise UsageError(
                f"finite-difference adjoint expects an axis of {len(self.dims)} at {axis}, got shape {tuple(y.shape)}"
            )
        parts = y.unbind(axis)
        out = self._diff_adjoint(parts[0], self.dims[0])
        for part, d in zip(parts[1:], self.dims[1:]):
            out = out + self._diff_adjoint(part, d)
        return out

    def __repr__(self) -> str:
        return f"FiniteDifference(dims={self.dims}, boundary={self.boundary!r})"
