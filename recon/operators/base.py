"""Linear operators on torch tensors, with their algebra.

A :class:`LinearOperator` ``A`` maps tensors ``x`` of trailing shape ``A.ishape`` to tensors of trailing
shape ``A.oshape``; any leading dims are batch dims and pass through (broadcast where an operator has batch
dims of its own, e.g. per-slice sensitivity maps). Every operator works on complex64 (and complex128) tensors,
on CPU or GPU, and lets autograd flow through both :meth:`forward` and :meth:`adjoint`.

Algebra (each result is again a :class:`LinearOperator`, evaluated lazily):

=================  ==========================================================================
``A(x)``           ``A.forward(x)``; also ``A @ x`` for a tensor ``x``
``A.H``            the adjoint operator: ``A.H(y) == A.adjoint(y)``
``A @ B``          composition ``x -> A(B(x))``
``A + B``, ``A-B`` sum / difference (same ishape and oshape)
``c * A``, ``-A``  scalar multiple (``c`` real or complex)
``A.N``            normal operator ``A.H @ A``; operators with a cheaper form override
                   :meth:`LinearOperator.normal` (masked Cartesian SENSE, NUFFT Toeplitz, FFT)
=================  ==========================================================================

``ishape``/``oshape`` are the trailing shapes an operator acts on; they do not include batch dims.
:data:`ANY_SHAPE` (``None``) declares that an operator accepts any shape (an FFT over given axes, a
broadcasting mask, an identity without a shape). Calling an operator (``A(x)``, ``A @ x``, :meth:`apply`)
checks the trailing shape of the input against ``ishape`` and of the output against ``oshape`` (one tuple
comparison each) and raises a :class:`~recon.errors.UsageError` that names the operator and both shapes;
:meth:`forward`/:meth:`adjoint` themselves do not check (the algebra's internal calls skip the checks).

Operators with several inputs or outputs (:class:`~recon.operators.stack.Vstack`,
:class:`~recon.operators.stack.Hstack`, :class:`~recon.operators.stack.Diag`) take and give tuples of
tensors; their shapes are :class:`Shapes` (a tuple of shapes), checked element by element.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch

from recon.errors import UsageError

Shape = tuple[int, ...]

#: ``ishape``/``oshape`` of an operator that accepts any trailing shape (no check)
ANY_SHAPE = None


class Shapes(tuple):
    """The shapes of a tuple of tensors (inputs or outputs of a stacked operator), one per element."""


def broadcast_shape(*shapes: Sequence[int]) -> torch.Size:
    """The broadcast of ``shapes`` (as :func:`torch.broadcast_shapes`), in plain Python: torch's own goes through
    its symbolic-shape machinery, about 20 us a call on the 2-core machine, and the SENSE operator's hot path
    asks for several per call (issue 17: that was a tenth of a forward + adjoint pair at 8 x 256^2)."""
    n = max(len(s) for s in shapes)
    out = [1] * n
    for s in shapes:
        for i, d in enumerate(s, n - len(s)):
            if d != 1:
                if out[i] not in (1, d):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = d
    return torch.Size(out)


def _fits(x, shape) -> bool:
    """Whether ``x`` (a tensor, or a tuple of tensors for :class:`Shapes`) ends in ``shape``."""
    if isinstance(shape, Shapes):
        return isinstance(x, (tuple, list)) and len(x) == len(shape) and all(
            s is None or _fits(v, s) for v, s in zip(x, shape))
    n = len(shape)
    return isinstance(x, torch.Tensor) and x.ndim >= n and x.shape[x.ndim - n:] == shape


def _shape_of(x) -> tuple:
    if isinstance(x, (tuple, list)):
        return tuple(_shape_of(v) for v in x)
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


class LinearOperator:
    """A linear map ``x (..., *ishape) -> y (..., *oshape)`` with an exact adjoint.

    Subclasses implement :meth:`forward` and :meth:`adjoint`, and may override :meth:`normal`.
    """

    ishape: Shape | None = None
    oshape: Shape | None = None

    # --- to implement -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``: ``(..., *ishape) -> (..., *oshape)``."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^H y``: ``(..., *oshape) -> (..., *ishape)``."""
        raise NotImplementedError

    def normal(self) -> "LinearOperator":
        """``A^H A`` as an operator ``(..., *ishape) -> (..., *ishape)``; override with a fast form."""
        return Composition(self.H, self)

    # --- shape-checked application --------------------------------------------------------------
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` with the shapes checked: ``x`` must end in ``ishape``, the output in ``oshape``."""
        if self.ishape is not None and not _fits(x, self.ishape):
            raise UsageError(self._shape_error(x, "input"))
        y = self.forward(x)
        if self.oshape is not None and not _fits(y, self.oshape):
            raise UsageError(self._shape_error(y, "output"))
        return y

    __call__ = apply

    def _shape_error(self, x, side: str) -> str:
        """The message for a tensor ``x`` that does not fit the ``side`` (``input``/``output``) shape.

        Operators whose callers know a more specific message (SENSE, wavelet, NUFFT) override this."""
        expected = self.ishape if side == "input" else self.oshape
        name = "ishape" if side == "input" else "oshape"
        return (f"{type(self).__name__}: {side} of shape {_shape_of(x)} does not fit the operator's "
                f"{name} {tuple(expected)} (trailing dims; leading dims are batch)")

    # --- algebra --------------------------------------------------------------------------------

    @property
    def H(self) -> "LinearOperator":
        """The adjoint operator."""
        return Adjoint(self)

    @property
    def N(self) -> "LinearOperator":
        """The normal operator ``A.H @ A``."""
        return self.normal()

    def __matmul__(self, other):
        if isinstance(other, LinearOperator):
            return Composition(self, other)
        if isinstance(other, torch.Tensor):
            return self.apply(other)
        return NotImplemented

    def __add__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, other)
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, Scaled(-1.0, other))
        return NotImplemented

    def __neg__(self) -> "LinearOperator":
        return Scaled(-1.0, self)

    def __mul__(self, other):
        if isinstance(other, numbers.Number) or (isinstance(other, torch.Tensor) and other.ndim == 0):
            return Scaled(other, self)
        if isinstance(other, LinearOperator):
            raise UsageError("compose operators with '@', not '*'")
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ishape={self.ishape}, oshape={self.oshape})"


class Identity(LinearOperator):
    """``x -> x``; on inputs ending in ``shape`` (checked), or on any shape when ``shape`` is None."""

    def __init__(self, shape: Sequence[int] | None = None):
        self.ishape = self.oshape = tuple(shape) if shape is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def normal(self) -> LinearOperator:
        return self

    @property
    def H(self) -> LinearOperator:
        return self


class Adjoint(LinearOperator):
    """``A.H``: swaps forward and adjoint of ``A``; its normal is ``A @ A.H``."""

    def __init__(self, op: LinearOperator):
        self.op = op
        self.ishape, self.oshape = op.oshape, op.ishape

    def _shape_error(self, x, side: str) -> str:
        return self.op._shape_error(x, "output" if side == "input" else "input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.forward(y)

    @property
    def H(self) -> LinearOperator:
        return self.op

    def __repr__(self) -> str:
        return f"{self.op!r}.H"


class Composition(LinearOperator):
    """``A1 @ A2 @ ... @ An``: applies ``An`` first. Nested compositions are flattened.

    Its normal is ``An.H ... A2.H (A1.N) A2 ... An`` so that a fast normal of the outermost
    operator (a mask, a NUFFT's Toeplitz form) is used.
    """

    def __init__(self, *ops: LinearOperator):
        flat: list[LinearOperator] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Composition) else [op])
        if not flat:
            raise UsageError("a composition needs at least one operator")
        for outer, inner in zip(flat[:-1], flat[1:]):
            if not _compatible(outer.ishape, inner.oshape):
                raise UsageError(
                    f"cannot compose {type(outer).__name__} (ishape {outer.ishape}) after "
                    f"{type(inner).__name__} (oshape {inner.oshape})"
                )
        self.ops = flat
        # shape-agnostic operators (ishape None) keep the shape: take the nearest known one
        self.ishape = next((op.ishape for op in reversed(flat) if op.ishape is not None), None)
        self.oshape = next((op.oshape for op in flat if op.oshape is not None), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in reversed(self.ops):
            x = op.forward(x)
        return x

    def _shape_error(self, x, side: str) -> str:
        # the message of the operator that fixes the shape: the innermost one with an ishape for the
        # input, the outermost one with an oshape for the output
        ops = reversed(self.ops) if side == "input" else self.ops
        name = "ishape" if side == "input" else "oshape"
        owner = next((op for op in ops if getattr(op, name) is not None), None)
        return super()._shape_error(x, side) if owner is None else owner._shape_error(x, side)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            y = op.adjoint(y)
        return y

    @property
    def H(self) -> LinearOperator:
        return Composition(*[op.H for op in reversed(self.ops)])

    def normal(self) -> LinearOperator:
        if len(self.ops) == 1:
            return self.ops[0].normal()
        inner = Composition(*self.ops[1:])
        return Composition(inner.H, self.ops[0].normal(), inner)

    def __repr__(self) -> str:
        return " @ ".join(repr(op) for op in self.ops)


class Sum(LinearOperator):
    """``A1 + A2 + ...``: all terms take the same input and give outputs of the same shape."""

    def __init__(self, *ops: LinearOperator):
        flat: list[LinearOperator] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Sum) else [op])
        for op in flat[1:]:
            for name in ("ishape", "oshape"):
                a, b = getattr(flat[0], name), getattr(op, name)
                if not _compatible(a, b):
                    raise UsageError(f"cannot add operators with {name} {a} and {b}")
        self.ops = flat
        self.ishape = next((op.ishape for op in flat if op.ishape is not None), None)
        self.oshape = next((op.oshape for op in flat if op.oshape is not None), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ops[0].forward(x)
        for op in self.ops[1:]:
            out = out + op.forward(x)
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        out = self.ops[0].adjoint(y)
        for op in self.ops[1:]:
            out = out + op.adjoint(y)
        return out

    @property
    def H(self) -> LinearOperator:
        return Sum(*[op.H for op in self.ops])

    def __repr__(self) -> str:
        return "(" + " + ".join(repr(op) for op in self.ops) + ")"


class Scaled(LinearOperator):
    """``c * A`` for a real or complex scalar ``c``; its adjoint is ``conj(c) * A.H``, its normal ``|c|^2 A.N``."""

    def __init__(self, scale: complex | float | torch.Tensor, op: LinearOperator):
        if isinstance(scale, torch.Tensor):
            scale = scale.item()
        self.scale = scale
        self.op = op
        self.ishape, self.oshape = op.ishape, op.oshape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x) * self.scale

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y) * _conj(self.scale)

    @property
    def H(self) -> LinearOperator:
        return Scaled(_conj(self.scale), self.op.H)

    def normal(self) -> LinearOperator:
        return Scaled(abs(self.scale) ** 2, self.op.normal())

    def __repr__(self) -> str:
        return f"{self.scale} * {self.op!r}"


def _compatible(a: Shape | None, b: Shape | None) -> bool:
    """Trailing shapes agree where both are known (the shorter one a suffix of the longer: batch dims)."""
    if a is None or b is None:
        return True
    if isinstance(a, Shapes) or isinstance(b, Shapes):
        return isinstance(a, Shapes) and isinstance(b, Shapes) and len(a) == len(b) and all(
            _compatible(u, v) for u, v in zip(a, b))
    n = min(len(a), len(b))
    return tuple(a)[len(a) - n:] == tuple(b)[len(b) - n:]


def _conj(c: complex | float) -> complex | float:
    return c.conjugate() if isinstance(c, complex) else c


def inner(a: torch.Tensor, b: torch.Tensor) -> complex:
    """``<a, b> = sum(conj(a) * b)`` over all elements, accumulated in double precision."""
    return complex(torch.vdot(a.reshape(-1).to(torch.complex128), b.reshape(-1).to(torch.complex128)))


def power_norm(
    op: LinearOperator,
    x0_shape: Sequence[int],
    iters: int = 30,
    *,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> float:
    """Estimate the spectral norm ``||A||_2`` by power iteration on ``A.N`` (no gradients).

    Parameters
    ----------
    op: the operator ``A``.
    x0_shape: full shape of an input (batch dims included), e.g. ``(H, W)`` for an image operator.
    iters: number of power iterations.
    dtype, device: of the random start vector.
    seed: seed of the start vector, so that the estimate is reproducible.

    Returns
    -------
    ``sqrt(lambda_max(A^H A))`` as a float (a lower bound that tightens with ``iters``).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(tuple(x0_shape), dtype=dtype, generator=gen).to(device or "cpu")
    normal = op.normal()
    with torch.no_grad():
        x = x / torch.linalg.vector_norm(x)
        lam = 0.0
        for _ in range(max(int(iters), 1)):
            y = normal.forward(x)
            lam = float(torch.linalg.vector_norm(y))
            if lam == 0.0:
                return 0.0
            x = y / lam
    return lam ** 0.5
