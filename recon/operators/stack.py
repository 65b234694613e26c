"""Stacked operators: several operators as one, with exact adjoints (SigPy's ``Vstack``/``Hstack``/``Diag``).

Multi-part values are tuples of tensors (each with its own trailing shape and the same batch dims); the
operators' shapes are :class:`~recon.operators.base.Shapes`, checked element by element on every call.

============  ===================================  ===================================================
operator      forward                              adjoint
============  ===================================  ===================================================
``Vstack``    ``x -> (A1 x, ..., An x)``           ``(y1, ..., yn) -> A1^H y1 + ... + An^H yn``
``Hstack``    ``(x1, ..., xn) -> A1 x1 + ... An xn`` ``y -> (A1^H y, ..., An^H y)``
``Diag``      ``(x1, ..., xn) -> (A1 x1, ..., An xn)`` ``(y1, ..., yn) -> (A1^H y1, ..., An^H yn)``
============  ===================================  ===================================================

``Vstack(A1, A2).N == A1.N + A2.N`` (each term's fast normal form) and ``Diag(...).N`` is the block-diagonal
of the normals. Use: a data term and a regulariser's transform stacked into one ``K`` for PDHG or ADMM
(``Vstack(Sense(maps, mask), FiniteDifference())``), or one problem per block (``Diag``).
"""
from __future__ import annotations

from typing import Sequence

import torch

from recon.errors import UsageError
from recon.operators.base import LinearOperator, Shapes, Sum, _compatible

Parts = Sequence[torch.Tensor]


def _common(shapes, what: str):
    """The one shape all of ``shapes`` agree on (None entries: unknown), or a UsageError."""
    known = [s for s in shapes if s is not None]
    for s in known[1:]:
        if not _compatible(known[0], s):
            raise UsageError(f"stacked operators need the same {what}, got {known[0]} and {s}")
    return known[0] if known else None


def _ops(ops: Sequence[LinearOperator], name: str) -> list[LinearOperator]:
    ops = list(ops)
    if not ops or not all(isinstance(op, LinearOperator) for op in ops):
        raise UsageError(f"{name} needs one or more LinearOperators, got {ops!r}")
    return ops


def _parts(v, n: int, name: str) -> Parts:
    if not isinstance(v, (tuple, list)) or len(v) != n:
        raise UsageError(f"{name} takes a tuple of {n} tensors, got {type(v).__name__}"
                         + (f" of {len(v)}" if isinstance(v, (tuple, list)) else ""))
    return v


def _add(parts: list[torch.Tensor]) -> torch.Tensor:
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


class Vstack(LinearOperator):
    """``x -> (A1 x, ..., An x)``: operators on the same input, outputs as a tuple."""

    def __init__(self, *ops: LinearOperator):
        self.ops = _ops(ops, "Vstack")
        self.ishape = _common([op.ishape for op in self.ops], "ishape")
        self.oshape = Shapes(op.oshape for op in self.ops)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(op.forward(x) for op in self.ops)

    def adjoint(self, y: Parts) -> torch.Tensor:
        y = _parts(y, len(self.ops), "Vstack adjoint")
        return _add([op.adjoint(v) for op, v in zip(self.ops, y)])

    def normal(self) -> LinearOperator:
        return Sum(*[op.normal() for op in self.ops])

    @property
    def H(self) -> LinearOperator:
        return Hstack(*[op.H for op in self.ops])

    def __repr__(self) -> str:
        return "Vstack(" + ", ".join(repr(op) for op in self.ops) + ")"


class Hstack(LinearOperator):
    """``(x1, ..., xn) -> A1 x1 + ... + An xn``: operators with the same output shape, summed."""

    def __init__(self, *ops: LinearOperator):
        self.ops = _ops(ops, "Hstack")
        self.ishape = Shapes(op.ishape for op in self.ops)
        self.oshape = _common([op.oshape for op in self.ops], "oshape")

    def forward(self, x: Parts) -> torch.Tensor:
        x = _parts(x, len(self.ops), "Hstack")
        return _add([op.forward(v) for op, v in zip(self.ops, x)])

    def adjoint(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(op.adjoint(y) for op in self.ops)

    @property
    def H(self) -> LinearOperator:
        return Vstack(*[op.H for op in self.ops])

    def __repr__(self) -> str:
        return "Hstack(" + ", ".join(repr(op) for op in self.ops) + ")"


class Diag(LinearOperator):
    """Block-diagonal ``(x1, ..., xn) -> (A1 x1, ..., An xn)``."""

    def __init__(self, *ops: LinearOperator):
        self.ops = _ops(ops, "Diag")
        self.ishape = Shapes(op.ishape for op in self.ops)
        self.oshape = Shapes(op.oshape for op in self.ops)

    def forward(self, x: Parts) -> tuple[torch.Tensor, ...]:
        x = _parts(x, len(self.ops), "Diag")
        return tuple(op.forward(v) for op, v in zip(self.ops, x))

    def adjoint(self, y: Parts) -> tuple[torch.Tensor, ...]:
        y = _parts(y, len(self.ops), "Diag adjoint")
        return tuple(op.adjoint(v) for op, v in zip(self.ops, y))

    def normal(self) -> LinearOperator:
        return Diag(*[op.normal() for op in self.ops])

    @property
    def H(self) -> LinearOperator:
        return Diag(*[op.H for op in self.ops])

    def __repr__(self) -> str:
        return "Diag(" + ", ".join(repr(op) for op in self.ops) + ")"
