"""Coil sensitivity operators: expand an image to coil images, and the adjoint coil combination."""
from __future__ import annotations

import torch

from recon.errors import UsageError
from recon.operators.base import broadcast_shape, LinearOperator
from recon.operators.sampling import Mask


def _check_image(x: torch.Tensor, maps: torch.Tensor, what: str) -> None:
    if tuple(x.shape[-2:]) != tuple(maps.shape[-2:]):
        raise UsageError(f"{what} of shape {tuple(x.shape)} does not fit sensitivity maps of shape {tuple(maps.shape)}")


class SensitivityExpand(LinearOperator):
    """``x (..., H, W) -> S * x (..., C, H, W)``: one image to ``C`` coil images.

    ``maps``: ``(..., C, H, W)`` complex sensitivity maps (leading dims, e.g. slices, broadcast against the
    image's batch dims). Adjoint: the coil combination ``y -> sum_c conj(S_c) y_c`` (:attr:`H`, or
    :func:`coil_reduce`). Normal: ``x -> (sum_c |S_c|^2) x``, a pointwise weight.
    """

    def __init__(self, maps: torch.Tensor):
        if maps.ndim < 3:
            raise UsageError(f"sensitivity maps need shape (..., C, H, W), got {tuple(maps.shape)}")
        self.maps = maps if maps.is_complex() else maps.to(torch.complex64)
        self.ishape = tuple(maps.shape[-2:])
        self.oshape = tuple(maps.shape[-3:])

    def _shape_error(self, x, side: str) -> str:
        what = "image" if side == "input" else "coil images"
        return f"{what} of shape {tuple(x.shape)} does not fit sensitivity maps of shape {tuple(self.maps.shape)}"

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        if self.maps.device != x.device or (x.dtype == torch.complex128) != (self.maps.dtype == torch.complex128):
            self.maps = self.maps.to(device=x.device, dtype=torch.complex128 if x.dtype == torch.complex128 else torch.complex64)
        return self.maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.maps, "image")
        return self._maps(x) * x.unsqueeze(-3)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        _check_image(y, self.maps, "coil images")
        return coil_reduce(y, self._maps(y))  # sum_c conj(S_c) y_c

    def normal(self) -> LinearOperator:
        return Mask((self.maps.abs() ** 2).sum(-3))


def coil_reduce(coil_images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``sum_c conj(S_c) y_c``: ``(..., C, H, W)`` coil images -> ``(..., H, W)``."""
    return coil_reduce_conj(coil_images, maps.conj().resolve_conj())


def coil_reduce_conj(coil_images: torch.Tensor, maps_conj: torch.Tensor) -> torch.Tensor:
    """``sum_c maps_conj_c * y_c`` over axis -3, given the conjugated maps.

    One multiply-accumulate per coil (``addcmul_``) into an ``(..., H, W)`` accumulator: about half the memory
    traffic of ``(maps_conj * y).sum(-3)``, and no temporary the size of the coil images. When autograd records
    the call it is ``(maps_conj * y).sum(-3)`` instead: the backward of a per-coil ``select`` zero-fills and
    copies a gradient the size of all the coil images, for each coil and operand (2C of each per call; in
    VarNet's adaptation that was a third of a training step, issue 12).
    """
    n = coil_images.shape[-3]
    if maps_conj.shape[-3] != n:
        raise UsageError(f"coil images of shape {tuple(coil_images.shape)} do not fit maps of shape {tuple(maps_conj.shape)}")
    if torch.is_grad_enabled() and (coil_images.requires_grad or maps_conj.requires_grad):
        return (coil_images * maps_conj).sum(-3)
    out = coil_images.select(-3, 0) * maps_conj.select(-3, 0)
    in_place = _fits(out, coil_images, maps_conj)
    for c in range(1, n):
        out = out.addcmul_(coil_images.select(-3, c), maps_conj.select(-3, c)) if in_place \
            else out + coil_images.select(-3, c) * maps_conj.select(-3, c)
    return out


def _fits(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
    """In-place accumulation is possible when ``out`` already has the broadcast shape of one coil's product."""
    return out.shape == broadcast_shape(out.shape, a.shape[:-3] + a.shape[-2:], b.shape[:-3] + b.shape[-2:])
