"""Sampling (mask) operator: ``y = m * x`` for a boolean or weight mask ``m``."""
from __future__ import annotations

import torch

from recon.operators.base import ANY_SHAPE, LinearOperator
from recon.sampling import SamplingMask


class Mask(LinearOperator):
    """Pointwise sampling ``y = m * x`` (``m`` bool or real/complex weights), adjoint ``conj(m) * y``.

    ``mask`` broadcasts against the input: ``(W,)`` for a fastMRI column mask, ``(H, W)`` for a 2D mask,
    ``(S, 1, H, W)`` per slice, etc. Output shape = broadcast(input, mask). Normal: ``|m|^2 * x``, so that
    ``Mask(m).N == Mask(|m|^2)``; for a boolean mask it is the mask itself. It broadcasts, so it accepts
    any input shape (:data:`~recon.operators.base.ANY_SHAPE`).
    """

    ishape = oshape = ANY_SHAPE

    def __init__(self, mask: torch.Tensor):
        self.mask = SamplingMask(mask).weight()

    def _m(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mask
        if m.device != x.device or (x.dtype in (torch.complex128, torch.float64)) != (
            m.dtype in (torch.complex128, torch.float64)
        ):
            m = SamplingMask(m).weight(x.dtype).to(x.device)
            self.mask = m
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._m(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        m = self._m(y)
        return y * (m.conj() if m.is_complex() else m)

    def normal(self) -> LinearOperator:
        m = self.mask
        return Mask(m.abs() ** 2 if m.is_complex() else m * m)

    @property
    def H(self) -> LinearOperator:
        if not self.mask.is_complex():
            return self
        return Mask(self.mask.conj())

    def __repr__(self) -> str:
        return f"Mask(shape={tuple(self.mask.shape)})"
