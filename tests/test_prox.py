"""Operator shape checks, stacked operators, prox objects and the generic solvers (issue 13, item 4)."""
from __future__ import annotations

import pytest
import torch

from recon.errors import UsageError
from recon.operators import (
    FFT,
    Diag,
    FiniteDifference,
    Hstack,
    Identity,
    Mask,
    Sense,
    SensitivityExpand,
    Vstack,
    Wavelet2D,
    inner,
)
from recon.solvers.admm import admm
from recon.solvers.cg import cg, conjugate_gradient
from recon.solvers.fista import fista
from recon.solvers.pdhg import pdhg
from recon.solvers.problem import least_squares
from recon.solvers.prox import (
    TV,
    L1,
    L2,
    Box,
    GroupL1,
    L1InTransform,
    NonNegative,
    Prox,
    Separable,
    Zero,
    soft_threshold,
)
from recon.solvers.regularizers import L1Wavelet, TotalVariation

ADJ_TOL = 1e-5  # float32 adjointness, relative (as tests/test_operators.py)
H, W, C = 16, 12, 3


def crandn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _like(v, seed: int):
    if isinstance(v, (tuple, list)):
        return tuple(_like(p, seed + i) for i, p in enumerate(v))
    return crandn(*v.shape, seed=seed, dtype=v.dtype)


def _inner(a, b) -> complex:
    if isinstance(a, (tuple, list)):
        return sum(_inner(u, v) for u, v in zip(a, b))
    return inner(a, b)


def _maps(seed: int = 3) -> torch.Tensor:
    s = crandn(C, H, W, seed=seed)
    return s / torch.linalg.vector_norm(s, dim=-3, keepdim=True)


def stacked_adjoint_error(op, x) -> float:
    """``|<A x, y> - <x, A^H y>| / |<A x, y>|`` for tensors or tuples of tensors."""
    ax = op(x)
    y = _like(ax, 101)
    lhs, rhs = _inner(ax, y), _inner(x, op.H(y))
    return abs(lhs - rhs) / abs(lhs)


def _stack_cases():
    mask = torch.rand(W, generator=torch.Generator().manual_seed(1)) > 0.5
    x = crandn(2, H, W, seed=4)
    yield "vstack-sense-fd", Vstack(Sense(_maps(), mask), FiniteDifference(shape=(H, W))), x
    yield "vstack-wavelet-id", Vstack(Wavelet2D((H, W), "db2", 2), Identity((H, W)), 0.5 * FFT()), x
    yield "hstack", Hstack(SensitivityExpand(_maps()), SensitivityExpand(_maps(7))), (x, crandn(2, H, W, seed=5))
    yield "diag", Diag(FiniteDifference(), Wavelet2D((H, W), "db1", 1)), (x, crandn(1, H, W, seed=6))
    yield "diag-of-vstack", Diag(Vstack(FFT(), Identity()), Mask(mask)), (x, crandn(C, H, W, seed=7))


STACKS = list(_stack_cases())


@pytest.mark.parametrize("name,op,x", STACKS, ids=[c[0] for c in STACKS])
def test_stacked_operators_have_exact_adjoints(name, op, x) -> None:
    assert stacked_adjoint_error(op, x) < ADJ_TOL
    # normal == adjoint of forward, and H.H == the operator
    for a, b in zip(_flat(op.N(x)), _flat(op.H(op(x)))):
        assert float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)) < 1e-5
    for a, b in zip(_flat(op.H.H(x)), _flat(op(x))):
        assert torch.equal(a, b)


def _flat(v) -> list[torch.Tensor]:
    return [t for p in v for t in _flat(p)] if isinstance(v, (tuple, list)) else [v]


def test_vstack_outputs_and_normal_use_each_fast_form() -> None:
    sense = Sense(_maps(), torch.rand(W, generator=torch.Generator().manual_seed(1)) > 0.5)
    fd = FiniteDifference(shape=(H, W))
    x = crandn(H, W, seed=8)
    ys = Vstack(sense, fd)(x)
    assert isinstance(ys, tuple) and ys[0].shape == (C, H, W) and ys[1].shape == (2, H, W)
    assert torch.equal(ys[0], sense(x)) and torch.equal(ys[1], fd(x))
    assert torch.allclose(Vstack(sense, fd).N(x), sense.N(x) + fd.N(x), atol=1e-5)


def test_calls_check_shapes_with_messages_that_name_operator_and_shapes() -> None:
    with pytest.raises(UsageError, match=r"FiniteDifference: input of shape \(3, 5, 7\) does not fit .*\(16, 12\)"):
        FiniteDifference(shape=(H, W))(torch.zeros(3, 5, 7, dtype=torch.complex64))
    with pytest.raises(UsageError, match=r"FiniteDifference: output of shape \(4, 2, 16, 13\)"):
        FiniteDifference(shape=(H, W)).H(torch.zeros(4, 2, H, 13, dtype=torch.complex64))
    with pytest.raises(UsageError, match=r"FFT: input of shape \(8, 8\) does not fit .*\(16, 12\)"):
        FFT(shape=(H, W))(torch.zeros(8, 8, dtype=torch.complex64))
    with pytest.raises(UsageError, match=r"does not fit a wavelet operator for \(16, 12\)"):
        (Wavelet2D((H, W), "db2", 2) @ FFT())(torch.zeros(H, W + 1, dtype=torch.complex64))
    with pytest.raises(UsageError, match=r"coefficients of shape \(16, 11\) do not fit"):
        Wavelet2D((H, W), "db2", 2).H(torch.zeros(H, 11, dtype=torch.complex64))
    with pytest.raises(UsageError, match=r"Hstack: input of shape"):
        Vstack(FFT(), FiniteDifference(shape=(H, W))).H((torch.zeros(H, W, dtype=torch.complex64),) * 2)
    with pytest.raises(UsageError, match=r"Diag: input of shape \(\(16, 12\),\)"):
        Diag(FFT(), FFT())((torch.zeros(H, W, dtype=torch.complex64),))
    with pytest.raises(UsageError, match="same oshape"):
        Hstack(FFT(shape=(H, W)), Identity((H, W + 1)))
    # any shape, declared: FFT without a shape, Mask, Identity without one
    for op in (FFT(), Mask(torch.ones(W)), Identity()):
        assert op.ishape is None and op(torch.zeros(2, 5, H, W, dtype=torch.complex64)).shape[-2:] == (H, W)


# ---- prox objects -------------------------------------------------------------------------------------
def _prox_objective(g: Prox, z: torch.Tensor, x: torch.Tensor, step: float) -> float:
    return float(g.value(z).sum()) + float(torch.linalg.vector_norm(z - x) ** 2) / (2 * step)


@pytest.mark.parametrize("make", [lambda: L1(0.3), lambda: L1(0.3, torch.rand(H, W)), lambda: GroupL1(0.2),
                                  lambda: L2(0.7), lambda: Zero(), lambda: L1InTransform(Wavelet2D((H, W), "db2", 2),
                                                                                         None, 0.4),
                                  lambda: TV((H, W), 0.2, inner_iterations=200)],
                         ids=["l1", "l1-weighted", "group-l1", "l2", "zero", "l1-wavelet", "tv"])
def test_prox_is_the_minimiser(make) -> None:
    g = make()
    x = crandn(2, 2, H, W, seed=9) if isinstance(g, GroupL1) else crandn(2, H, W, seed=9)
    step = 0.8
    z = g(x, step)
    best = _prox_objective(g, z, x, step)
    for k in range(8):  # every perturbation is worse
        assert best <= _prox_objective(g, z + 0.02 * crandn(*z.shape, seed=20 + k), x, step) + 1e-6


def test_projections_and_moreau() -> None:
    x = crandn(2, H, W, seed=10)
    assert torch.equal(NonNegative()(x, 1.0), torch.complex(x.real.clamp_min(0), torch.zeros_like(x.real)))
    assert torch.equal(Box(-0.5, 0.5)(x.real, 1.0), x.real.clamp(-0.5, 0.5))
    b = Box(-0.5, 0.5)(x, 1.0)
    assert float(b.real.abs().max()) <= 0.5 and float(b.imag.abs().max()) <= 0.5
    with pytest.raises(UsageError, match="lo <= hi"):
        Box(1.0, 0.0)
    for g in (L1(0.3, torch.rand(H, W)), GroupL1(0.3)):  # closed-form dual projection == Moreau's identity
        q = crandn(3, 2, H, W, seed=11)
        assert torch.allclose(g.conjugate(q, 0.7), Prox.conjugate(g, q, 0.7), atol=1e-5)
    with pytest.raises(UsageError, match="lambda must be >= 0"):
        L1(-1.0)


def test_wavelet_prox_keeps_cycle_spinning_bit_identical() -> None:
    """L1Wavelet.as_prox(lam) == the earlier L1Wavelet.prox(x, step * lam), random shifts included."""
    x = crandn(2, H, W, seed=12)
    a = L1Wavelet((H, W), "db2", 2, random_shift=True, seed=5)
    b = L1Wavelet((H, W), "db2", 2, random_shift=True, seed=5)
    g = a.as_prox(0.05)
    gen = torch.Generator().manual_seed(5)  # the earlier implementation, written out
    weights = torch.ones(H, W)
    weights[: H >> 2, : W >> 2] = 0.0
    for step in (0.9, 0.9, 0.5):
        sh = torch.randint(0, 4, (2,), generator=gen).tolist()
        xs = torch.roll(x, shifts=(sh[0], sh[1]), dims=(-2, -1))
        c = a.op.forward(xs)
        ref = torch.roll(a.op.adjoint(soft_threshold(c, (step * 0.05) * weights)), shifts=(-sh[0], -sh[1]),
                         dims=(-2, -1))
        assert torch.equal(g(x, step), ref)
        assert torch.equal(b.prox(x, step * 0.05), ref)
    assert torch.equal(g.value(x), 0.05 * a.value(x))


# ---- generic solvers ----------------------------------------------------------------------------------
def _sense_data(batch: tuple[int, ...] = (), seed: int = 13):
    mask = torch.rand(W, generator=torch.Generator().manual_seed(2)) > 0.4
    mask[W // 2 - 2: W // 2 + 2] = True
    A = Sense(_maps(), mask)
    x_true = crandn(*batch, H, W, seed=seed)
    y = A(x_true) + 0.01 * crandn(*batch, C, H, W, seed=seed + 1)
    return A, y * mask


def test_fista_takes_an_operator_and_any_batch_dims() -> None:
    """Two leading batch dims: each element is the problem solved alone (per-element steps and restarts)."""
    A, y = _sense_data((2, 3))
    g = L1InTransform(Wavelet2D((H, W), "db2", 2), None, 0.01)
    batched = fista(least_squares(A, y, 1.0), g, iterations=30).image  # the same step for all
    assert batched.shape == (2, 3, H, W)
    assert fista(A, g, y=y, iterations=2).image.shape == (2, 3, H, W)  # an operator and its data
    for i, j in ((0, 0), (1, 2)):
        alone = fista(least_squares(A, y[i, j], 1.0), g, iterations=30).image
        assert torch.allclose(batched[i, j], alone, atol=1e-5)


def test_generic_solvers_on_volumes_and_constraints() -> None:
    """3D images (ndim 3, from the operator's ishape) with a non-negativity prox, and CG on an operator."""
    D = 4
    mask = (torch.rand(D, H, W, generator=torch.Generator().manual_seed(3)) > 0.3).to(torch.float32)
    A = Mask(mask) @ FFT(dims=(-3, -2, -1), shape=(D, H, W))
    x_true = torch.rand(2, D, H, W, generator=torch.Generator().manual_seed(4)).to(torch.complex64)
    y = A(x_true)
    res = fista(A, NonNegative(ndim=3), y=y, iterations=100)
    assert res.image.shape == (2, D, H, W) and float(res.image.real.min()) >= 0 and float(res.image.imag.abs().max()) == 0
    # the start A^H y is not feasible (objective inf); monotone from there, up to float32 rounding of f
    assert res.history[0] == float("inf") and res.history[-1] < 1e-4
    assert all(b <= a + 1e-4 for a, b in zip(res.history[1:], res.history[2:]))
    problem = least_squares(A, y, lipschitz=1.0)
    assert problem.ndim == 3 and problem.y_norm_sq.shape == (2,)
    sol = cg(problem, lam=0.1, max_iter=50, tol=1e-10).image  # (F^H M F + 0.1) x = A^H y: pointwise in k-space
    F = FFT(dims=(-3, -2, -1))
    exact = F.H(F(problem.aty) / (mask + 0.1))
    assert torch.allclose(sol, exact, atol=1e-5)
    ref = conjugate_gradient(problem.normal, problem.aty, lam=0.1, max_iter=50, tol=1e-10, ndim=3).image
    assert torch.equal(sol, ref)


def test_admm_and_pdhg_take_a_transform_and_prox_or_a_composition() -> None:
    A, y = _sense_data((2,))
    problem = least_squares(A, y, lipschitz=1.0)
    tv = TotalVariation((H, W))
    composed = pdhg(problem, GroupL1(0.02), transform=FiniteDifference(shape=(H, W)), norm_sq=8.0, iterations=40)
    legacy = pdhg(problem, tv, 0.02, iterations=40)
    assert torch.equal(composed.image, legacy.image)
    a = admm(problem, TV((H, W), 0.02), iterations=40, cg_iterations=5)
    b = admm(problem, tv, 0.02, iterations=40, cg_iterations=5)
    assert torch.equal(a.image, b.image) and a.parameters["regularizer"] == "tv" and a.parameters["lambda"] == 0.02
    # PDHG with an estimated ||K||^2 and a stacked prox (separable over a Vstack's outputs) still converges
    K = Vstack(FiniteDifference(shape=(H, W)), Wavelet2D((H, W), "db2", 2))
    s = pdhg(problem, Separable(GroupL1(0.01), L1(0.01)), transform=K, iterations=150)
    assert s.history[-1] < s.history[0]
    # FISTA with the iterative TV prox lowers the TV objective
    f = fista(problem, TV((H, W), 0.02, inner_iterations=30), iterations=30)
    assert f.history[-1] < f.history[0]


def test_solver_argument_errors() -> None:
    A, y = _sense_data()
    with pytest.raises(UsageError, match="needs its weight lam"):
        fista(least_squares(A, y, 1.0), L1Wavelet((H, W), "db2", 2))
    with pytest.raises(UsageError, match="already has its weight"):
        fista(least_squares(A, y, 1.0), L1(0.1), 0.1)
    with pytest.raises(UsageError, match="needs its data y"):
        admm(A, L1(0.1))
    with pytest.raises(UsageError, match="expected a prox object"):
        pdhg(least_squares(A, y, 1.0), "l1")
