"""Linear operators: exact adjoints, normal operators, norms, conventions, autograd.

Adjoint test: for random complex x, y, ``|<A x, y> - <x, A^H y>| / |<A x, y>| < ADJ_TOL`` with the inner
products accumulated in double precision, so only the operator's own float32 rounding counts.
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from recon.errors import UsageError
from recon.io import fourier
from recon.operators import (
    FFT,
    FiniteDifference,
    Identity,
    Mask,
    Sense,
    SensitivityExpand,
    Wavelet2D,
    coil_reduce,
    fft2c,
    ifft2c,
    inner,
    power_norm,
)
from recon.operators.base import broadcast_shape
from recon.operators.sense import ModulatedSense

ADJ_TOL = 1e-5  # float32 adjointness, relative
NORMAL_TOL = 1e-5  # relative L2 difference between A.N(x) and A.H(A(x)) in float32


def crandn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=dtype, generator=g)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def adjoint_error(op, x: torch.Tensor, seed: int = 1) -> float:
    ax = op(x)
    y = crandn(*ax.shape, seed=seed, dtype=ax.dtype).to(ax.device)
    lhs, rhs = inner(ax, y), inner(x, op.H(y))
    assert op.H(y).shape == x.shape
    return abs(lhs - rhs) / abs(lhs)


def _maps(C: int, H: int, W: int, batch: tuple[int, ...] = (), seed: int = 3) -> torch.Tensor:
    """Smooth-ish complex maps normalised so that sum_c |S_c|^2 == 1 at every pixel."""
    s = crandn(*batch, C, H, W, seed=seed)
    return s / torch.linalg.vector_norm(s, dim=-3, keepdim=True)


def _column_mask(W: int, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(W, generator=g) < 0.4
    m[W // 2 - 2: W // 2 + 2] = True
    return m


# ---- one entry per operator: (name, operator factory, input shape) ---------------------------------------
H, W, C = 12, 10, 4


def _cases():
    yield "identity", lambda: Identity(), (2, H, W)
    yield "fft", lambda: FFT(), (2, 3, H, W)
    yield "fft-odd", lambda: FFT(), (2, 9, 7)
    yield "fft-1d-last", lambda: FFT(dims=(-1,)), (3, H, W)
    yield "fft-axes-0-2", lambda: FFT(dims=(0, 2)), (H, 3, W)
    yield "mask-bool-column", lambda: Mask(_column_mask(W)), (2, C, H, W)
    yield "mask-weights-2d", lambda: Mask(torch.rand(H, W, generator=torch.Generator().manual_seed(2))), (2, H, W)
    yield "mask-complex", lambda: Mask(crandn(H, W, seed=9)), (2, H, W)
    yield "expand", lambda: SensitivityExpand(_maps(C, H, W)), (2, H, W)
    yield "expand-per-slice", lambda: SensitivityExpand(_maps(C, H, W, batch=(3,))), (3, H, W)
    yield "sense-full", lambda: Sense(_maps(C, H, W)), (2, H, W)
    yield "sense-column", lambda: Sense(_maps(C, H, W), _column_mask(W)), (2, H, W)
    yield "sense-2d-odd", lambda: Sense(_maps(C, 9, 7), torch.rand(9, 7) > 0.5), (2, 9, 7)
    yield "sense-per-slice-mask", lambda: Sense(_maps(C, H, W, batch=(3,)), torch.rand(3, 1, H, W) > 0.5), (3, H, W)
    for name in ("db1", "db2", "db3", "db4"):
        yield f"wavelet-{name}", lambda name=name: Wavelet2D((16, 16), name, levels=2), (2, 16, 16)
    yield "wavelet-db4-padded", lambda: Wavelet2D((13, 10), "db4", levels=3), (2, 13, 10)
    yield "fd-periodic", lambda: FiniteDifference(), (2, H, W)
    yield "fd-neumann", lambda: FiniteDifference(boundary="neumann"), (2, H, W)
    yield "fd-3d-neumann", lambda: FiniteDifference(dims=(-3, -1), boundary="neumann"), (2, 5, H, W)
    # algebra
    yield "compose-mask-fft-expand", lambda: Mask(_column_mask(W)) @ FFT() @ SensitivityExpand(_maps(C, H, W)), (2, H, W)
    yield "sum-fft-identity", lambda: FFT() + 2.0 * Identity(), (2, H, W)
    yield "difference", lambda: FFT() - (1.5 - 0.5j) * Identity(), (2, H, W)
    yield "scaled-complex", lambda: (0.3 + 2j) * FiniteDifference(), (2, H, W)
    yield "negated", lambda: -Wavelet2D((16, 16), "db2", 2), (2, 16, 16)
    yield "adjoint-op", lambda: SensitivityExpand(_maps(C, H, W)).H, (2, C, H, W)
    yield "nested", lambda: (FiniteDifference() @ (Wavelet2D((16, 16), "db2", 2).H @ (FFT() + Identity()))), (2, 16, 16)
    yield "normal-of-sense", lambda: Sense(_maps(C, H, W), _column_mask(W)).N, (2, H, W)


CASES = list(_cases())
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_adjoint_is_exact(name, make, shape):
    op = make()
    x = crandn(*shape, seed=11)
    assert adjoint_error(op, x) < ADJ_TOL


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_normal_equals_adjoint_of_forward(name, make, shape):
    op = make()
    x = crandn(*shape, seed=12)
    assert rel(op.N(x), op.H(op(x))) < NORMAL_TOL


@pytest.mark.parametrize("name,make,shape", CASES, ids=IDS)
def test_adjoint_of_adjoint_is_forward(name, make, shape):
    op = make()
    x = crandn(*shape, seed=13)
    assert torch.allclose(op.H.H(x), op(x), atol=1e-6)


def test_double_precision_adjoint_is_exact_to_1e12():
    maps = _maps(C, H, W).to(torch.complex128)
    ops = [Sense(maps, _column_mask(W)), Wavelet2D((13, 10), "db4", 3), FiniteDifference(boundary="neumann"), FFT()]
    shapes = [(2, H, W), (2, 13, 10), (2, H, W), (2, H, W)]
    for op, shape in zip(ops, shapes):
        assert adjoint_error(op, crandn(*shape, dtype=torch.complex128)) < 1e-12


# ---- SENSE --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(12, 10), (9, 7), (10, 7)])
@pytest.mark.parametrize("mask_kind", ["none", "column", "2d-weights"])
def test_fused_sense_equals_composed(size, mask_kind):
    h, w = size
    maps = _maps(C, h, w, batch=(2,))
    mask = {"none": None, "column": _column_mask(w), "2d-weights": torch.rand(h, w)}[mask_kind]
    fused = Sense(maps, mask)
    composed = FFT() @ SensitivityExpand(maps)
    if mask is not None:
        composed = Mask(mask) @ composed
    x = crandn(2, h, w, seed=4)
    y = crandn(2, C, h, w, seed=5)
    assert rel(fused(x), composed(x)) < 1e-6
    assert rel(fused.H(y), composed.H(y)) < 1e-6
    assert rel(fused.N(x), composed.N(x)) < 1e-6
    assert rel(fused.N(x), composed.H(composed(x))) < 1e-6


def test_sense_forward_is_masked_fft_of_coil_images_in_numpy():
    maps = _maps(C, H, W)
    mask = _column_mask(W)
    x = crandn(H, W, seed=7)
    expected = fourier.fft2c(maps.numpy() * x.numpy()[None]) * mask.numpy()
    np.testing.assert_allclose(Sense(maps, mask)(x).numpy(), expected, atol=2e-6)


def test_sense_normal_fast_path_types():
    from recon.operators.sense import SenseNormal

    maps = _maps(C, H, W)
    assert isinstance(Sense(maps, _column_mask(W)).N, SenseNormal)
    full = Sense(maps).N  # no mask: pointwise sum |S|^2 (== 1 for these maps)
    x = crandn(H, W)
    assert torch.allclose(full(x), x, atol=1e-6)


def test_sense_shape_errors_name_the_shapes():
    op = Sense(_maps(C, H, W))
    with pytest.raises(UsageError, match=r"image of shape \(11, 10\) does not fit SENSE"):
        op(crandn(11, W))
    with pytest.raises(UsageError, match="mask of shape"):
        Sense(_maps(C, H, W), torch.ones(H, W + 1, dtype=torch.bool))
    with pytest.raises(UsageError, match=r"sensitivity maps need shape"):
        Sense(crandn(H, W))


def test_sense_gradcheck_double():
    maps = _maps(2, 6, 4).to(torch.complex128)
    op = Sense(maps, torch.tensor([1.0, 0.0, 1.0, 0.5], dtype=torch.float64))
    x = crandn(6, 4, dtype=torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: op(t), (x,))
    y = crandn(2, 6, 4, dtype=torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: op.H(t), (y,))
    assert torch.autograd.gradcheck(lambda t: op.N(t), (x,))


def test_sense_gradient_with_respect_to_maps():
    maps = _maps(2, 6, 4).to(torch.complex128).requires_grad_()
    x = crandn(6, 4, dtype=torch.complex128)
    mask = torch.tensor([True, False, True, True])
    assert torch.autograd.gradcheck(lambda s: Sense(s, mask)(x), (maps,))


def test_autograd_gradient_is_the_adjoint():
    """d/dx 0.5||A x - y||^2 = A^H (A x - y), through a composed operator."""
    op = Mask(_column_mask(W)) @ FFT() @ SensitivityExpand(_maps(C, H, W))
    x = crandn(H, W, seed=1).requires_grad_()
    y = crandn(C, H, W, seed=2)
    loss = 0.5 * torch.linalg.vector_norm(op(x) - y) ** 2
    loss.backward()
    expected = op.H(op(x.detach()) - y)
    assert rel(x.grad, expected) < 1e-5


# ---- FFT ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 8, 6), (3, 7, 5), (4, 6), (1, 10, 9)])
def test_fft_matches_numpy_convention(shape):
    x = crandn(*shape, seed=2)
    np.testing.assert_allclose(fft2c(x).numpy(), fourier.fft2c(x.numpy()), atol=2e-6)
    np.testing.assert_allclose(ifft2c(x).numpy(), fourier.ifft2c(x.numpy()), atol=2e-6)
    assert rel(ifft2c(fft2c(x)), x) < 1e-6


def _fastmri_fftc():
    spec = importlib.util.find_spec("fastmri")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fastmri (test oracle) is not installed")
    path = f"{list(spec.submodule_search_locations)[0]}/fftc.py"
    mod_spec = importlib.util.spec_from_file_location("fastmri_fftc_oracle", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (1, 15, 9)])
def test_fft_matches_fastmri(shape):
    fm = _fastmri_fftc()
    x = crandn(*shape, seed=6)
    ours_k = fft2c(x)
    theirs_k = torch.view_as_complex(fm.fft2c_new(torch.view_as_real(x).contiguous()))
    theirs_i = torch.view_as_complex(fm.ifft2c_new(torch.view_as_real(x).contiguous()))
    assert rel(ours_k, theirs_k) < 1e-6
    assert rel(ifft2c(x), theirs_i) < 1e-6


def test_fft_dc_at_centre_and_unitary():
    x = torch.ones(8, 6, dtype=torch.complex64)
    k = fft2c(x)
    assert abs(k[4, 3].item() - math.sqrt(48)) < 1e-5
    assert float(k.abs().sum() - k[4, 3].abs()) < 1e-4
    z = crandn(3, 8, 6)
    assert abs(float(torch.linalg.vector_norm(fft2c(z)) / torch.linalg.vector_norm(z)) - 1) < 1e-6


def test_fft_of_real_input_and_double():
    x = torch.randn(6, 8, dtype=torch.float64)
    k = fft2c(x)
    assert k.dtype == torch.complex128
    np.testing.assert_allclose(k.numpy(), fourier.fft2c(x.numpy()), atol=1e-12)


# ---- norms ---------------------------------------------------------------------------------------------
def test_power_norms():
    assert abs(power_norm(FFT(), (2, 12, 10), iters=5) - 1.0) < 1e-5
    assert abs(power_norm(Wavelet2D((16, 16), "db4", 2), (16, 16), iters=5) - 1.0) < 1e-5
    assert abs(power_norm(Wavelet2D((13, 10), "db2", 2), (13, 10), iters=5) - 1.0) < 1e-5
    fd = power_norm(FiniteDifference(), (8, 8), iters=200)
    assert abs(fd - math.sqrt(8)) < 1e-2 * math.sqrt(8)
    assert power_norm(FiniteDifference(boundary="neumann"), (8, 8), iters=200) < math.sqrt(8)
    assert abs(power_norm(Sense(_maps(C, H, W)), (H, W), iters=5) - 1.0) < 1e-5
    assert abs(power_norm(3.0 * FFT(), (H, W), iters=5) - 3.0) < 1e-4
    # ||A + A|| = 2 for a unitary A (through the generic normal of a sum)
    assert abs(power_norm(FFT() + FFT(), (H, W), iters=5) - 2.0) < 1e-4


# ---- wavelets -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("wavelet", ["db1", "db2", "db3", "db4"])
@pytest.mark.parametrize("shape", [(32, 32), (30, 27)])
def test_wavelet_perfect_reconstruction_and_isometry(wavelet, shape):
    op = Wavelet2D(shape, wavelet, levels=3)
    x = crandn(2, *shape, seed=3)
    c = op(x)
    assert c.shape == (2, 32, 32)
    assert rel(op.H(c), x) < 1e-6
    assert abs(float(torch.linalg.vector_norm(c) / torch.linalg.vector_norm(x)) - 1) < 1e-6


@pytest.mark.parametrize("wavelet", ["db1", "db2", "db4"])
def test_wavelet_bands_equal_pywavelets_periodization(wavelet):
    pywt = pytest.importorskip("pywt")
    x = torch.randn(32, 24, dtype=torch.float64)
    c = Wavelet2D((32, 24), wavelet, levels=2)(x).numpy()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pywt.wavedec2(x.numpy(), wavelet, mode="periodization", level=2)
    np.testing.assert_allclose(c[:8, :6], ref[0], atol=1e-12)
    for (h, w), (cH, cV, cD) in zip([(8, 6), (16, 12)], ref[1:]):
        np.testing.assert_allclose(c[h:2 * h, :w], cH, atol=1e-12)
        np.testing.assert_allclose(c[:h, w:2 * w], cV, atol=1e-12)
        np.testing.assert_allclose(c[h:2 * h, w:2 * w], cD, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["db1", "db2", "db4"])
@pytest.mark.parametrize("shape,levels", [((128, 128), 4), ((30, 27), 3), ((5, 6), 1), ((64, 40), 2)])
def test_wavelet_fast_path_equals_the_differentiable_one(wavelet, shape, levels):
    """Without autograd the transform runs as strided sums and (small levels) dense matrix products; with it, as
    conv2d. Both agree on contiguous, strided and conjugate-view inputs, complex64 and float64."""
    op = Wavelet2D(shape, wavelet, levels)
    H, W = op.oshape
    for dtype, tol in ((torch.complex64, 2e-6), (torch.float64, 1e-12)):
        wide = crandn(2, shape[0], 2 * shape[1], seed=4, dtype=dtype) if dtype.is_complex else \
            torch.randn(2, shape[0], 2 * shape[1], dtype=dtype, generator=torch.Generator().manual_seed(4))
        for x in (wide[..., ::2].contiguous(), wide[..., ::2], wide[..., ::2].conj()):
            padded = torch.nn.functional.pad(x.resolve_conj(), (0, W - shape[1], 0, H - shape[0]))
            assert rel(op(x), op._forward_conv(padded)) < tol
        c = crandn(2, H, W, seed=6, dtype=dtype) if dtype.is_complex else torch.randn(2, H, W, dtype=dtype)
        for y in (c, c.conj(), c.transpose(-1, -2).contiguous().transpose(-1, -2)):
            assert rel(op.H(y), op._adjoint_conv(y.resolve_conj())) < tol
        assert torch.equal(c, c.clone())  # the adjoint works on a copy: its input is unchanged


@pytest.mark.parametrize("wavelet,shape,levels", [("db2", (64, 48), 3), ("db4", (32, 32), 2), ("db1", (16, 8), 3),
                                                  ("db4", (30, 27), 3)])
def test_wavelet_shifted_transform_equals_the_rolled_one(wavelet, shape, levels):
    """Cycle spinning: ``forward_shifted(x, d) == forward(roll(x, d))`` and ``adjoint_(c, d) == roll(adjoint(c), -d)``
    (the compiled kernels shift as they read and write; the padded size rolls first), complex and real."""
    op = Wavelet2D(shape, wavelet, levels)
    for dtype, tol in ((torch.complex64, 1e-6), (torch.float64, 1e-12)):
        x = crandn(2, *shape, seed=5, dtype=dtype) if dtype.is_complex else torch.randn(2, *shape, dtype=dtype)
        c = op(x)
        for d in ((0, 0), (3, 0), (0, 5), (7, 2), (-1, 70)):
            assert rel(op.forward_shifted(x, d), op(torch.roll(x, d, (-2, -1)))) < tol
            assert rel(op.adjoint_(c.clone(), d), torch.roll(op.H(c), (-d[0], -d[1]), (-2, -1))) < tol
        strided = c.transpose(-1, -2).contiguous().transpose(-1, -2)  # not contiguous: worked on a copy
        for work in (strided, c.clone().conj()):  # (a real tensor's conj() is itself: adjoint_ overwrites it)
            ref = torch.roll(op.H(work.resolve_conj()), (-1, -2), (-2, -1))
            assert rel(op.adjoint_(work, (1, 2)), ref) < tol


def test_sense_reused_buffer_and_rolled_maps_give_the_centred_fft():
    """Fully sampled SENSE of even size folds the k-space modulation into rolled maps; every call reuses one
    buffer for the coil images: repeated and interleaved calls give the same numbers as fft2c(S x)."""
    for H, W in ((16, 12), (9, 7), (16, 13)):
        maps = _maps(C, H, W)
        x1, x2 = crandn(H, W, seed=1), crandn(H, W, seed=2)
        for mask in (None, _column_mask(W)):
            op = Sense(maps, mask)
            m = 1.0 if mask is None else mask.numpy()
            ref1 = fourier.fft2c(maps.numpy() * x1.numpy()[None]) * m
            first, _, again = op(x1), op(x2), op(x1)
            np.testing.assert_allclose(first.numpy(), ref1, atol=2e-6)
            assert torch.equal(first, again)
            y = crandn(C, H, W, seed=3)
            ref_adj = (np.conj(maps.numpy()) * fourier.ifft2c(y.numpy() * m)).sum(0)
            np.testing.assert_allclose(op.H(y).numpy(), ref_adj, atol=2e-6)
            assert torch.equal(op.H(y), op.H(y))


def test_wavelet_haar_values():
    x = torch.tensor([[1.0, 3.0], [5.0, 7.0]], dtype=torch.float64)
    c = Wavelet2D((2, 2), "db1", levels=1)(x)
    # LL = sum/2, LH (high along W) = (x0-x1)... sign as PyWavelets: (a - b)/sqrt2 per axis
    np.testing.assert_allclose(c.numpy(), [[8.0, -2.0], [-4.0, 0.0]], atol=1e-12)


def test_wavelet_errors():
    with pytest.raises(UsageError, match="unknown wavelet 'db0x'"):
        Wavelet2D((8, 8), "db0x")
    with pytest.raises(UsageError, match="not orthogonal"):
        Wavelet2D((8, 8), "bior2.2")
    with pytest.raises(UsageError, match="levels must be >= 1"):
        Wavelet2D((8, 8), "db2", levels=0)
    with pytest.raises(UsageError, match=r"does not fit a wavelet operator for \(8, 8\)"):
        Wavelet2D((8, 8), "db2")(torch.zeros(8, 9))


def test_wavelet_gradcheck_double():
    op = Wavelet2D((5, 6), "db2", levels=1)
    x = crandn(5, 6, dtype=torch.complex128).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: op(t), (x,))


# ---- finite differences ---------------------------------------------------------------------------------
def test_finite_difference_values():
    x = torch.tensor([[0.0, 1.0, 4.0], [2.0, 2.0, 2.0]], dtype=torch.float64)
    per = FiniteDifference(boundary="periodic")(x)
    neu = FiniteDifference(boundary="neumann")(x)
    assert per.shape == (2, 2, 3)
    np.testing.assert_array_equal(per[0].numpy(), [[2, 1, -2], [-2, -1, 2]])
    np.testing.assert_array_equal(per[1].numpy(), [[1, 3, -4], [0, 0, 0]])
    np.testing.assert_array_equal(neu[0].numpy(), [[2, 1, -2], [0, 0, 0]])
    np.testing.assert_array_equal(neu[1].numpy(), [[1, 3, 0], [0, 0, 0]])


def test_finite_difference_errors():
    with pytest.raises(UsageError, match="unknown boundary 'zero'"):
        FiniteDifference(boundary="zero")
    with pytest.raises(UsageError, match="distinct negative axes"):
        FiniteDifference(dims=(0, 1))
    with pytest.raises(UsageError, match="expects an axis of 2"):
        FiniteDifference().H(torch.zeros(3, 4, 5))


# ---- algebra errors -------------------------------------------------------------------------------------
def test_algebra_errors():
    with pytest.raises(UsageError, match="compose operators with '@'"):
        FFT() * FFT()
    with pytest.raises(UsageError, match="cannot compose"):
        Wavelet2D((8, 8)) @ Wavelet2D((16, 16))
    with pytest.raises(UsageError, match="cannot add"):
        Wavelet2D((8, 8)) + Wavelet2D((16, 16))


# ---- device --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_operators_on_cuda_match_cpu():
    dev = torch.device("cuda")
    maps, mask = _maps(C, H, W), _column_mask(W)
    x = crandn(2, H, W)
    for op, op_gpu in [
        (Sense(maps, mask), Sense(maps.to(dev), mask.to(dev))),
        (Wavelet2D((H, W), "db4", 2), Wavelet2D((H, W), "db4", 2)),
        (FiniteDifference(), FiniteDifference()),
        (FFT(), FFT()),
    ]:
        y = op_gpu(x.to(dev))
        assert y.device.type == "cuda"
        assert rel(y.cpu(), op(x)) < 1e-5
        assert rel(op_gpu.H(y).cpu(), op.H(op(x))) < 1e-5
        assert adjoint_error(op_gpu, x.to(dev)) < ADJ_TOL


def test_coil_reduce_under_autograd_matches_and_differentiates():
    """With autograd recording, the coil combination is one multiply + sum (no per-coil select, whose backward
    zero-fills a coil-sized gradient per coil): same values as the accumulating path to float precision, and
    gradients that pass torch's finite-difference check."""
    g = torch.Generator().manual_seed(3)
    y = torch.randn(2, 4, 6, 5, dtype=torch.complex128, generator=g)
    maps = torch.randn(1, 4, 6, 5, dtype=torch.complex128, generator=g)
    plain = coil_reduce(y, maps)
    assert torch.allclose(plain, (maps.conj() * y).sum(-3), rtol=1e-12, atol=1e-12)
    y_g, maps_g = y.clone().requires_grad_(), maps.clone().requires_grad_()
    traced = coil_reduce(y_g, maps_g)
    assert torch.allclose(traced.detach(), plain, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(coil_reduce, (y_g, maps_g))


def test_modulated_sense_is_sense_times_the_output_modulation():
    """ModulatedSense works on k * p (p = +-1, the centred FFT's output modulation): forward = p * Sense,
    adjoint(k * p) = Sense adjoint(k), exactly, on Sense's autograd path; adjoint to float32 precision; odd
    sizes are refused."""
    maps = crandn(1, 4, 12, 10, seed=1).requires_grad_()
    x, k = crandn(1, 12, 10, seed=2), crandn(1, 4, 12, 10, seed=3)
    sense, mod = Sense(maps), ModulatedSense(maps)
    assert torch.equal(mod(x) * mod.p, sense(x))
    assert torch.equal(mod.H(k * mod.p), sense.H(k))
    with torch.no_grad():
        assert abs(complex(inner(mod(x), k) - inner(x, mod.H(k)))) < ADJ_TOL * float(mod(x).norm() * k.norm())
    with pytest.raises(UsageError, match="even"):
        ModulatedSense(crandn(1, 4, 11, 10))


def test_broadcast_shape_agrees_with_torch():
    """The plain-Python broadcast used on SENSE's hot path gives torch.broadcast_shapes' answer, and its error."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        shapes = [tuple(int(d) for d in rng.choice([1, 2, 3], size=rng.integers(0, 5))) for _ in range(rng.integers(1, 4))]
        try:
            expected = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            with pytest.raises(RuntimeError):
                broadcast_shape(*shapes)
        else:
            assert broadcast_shape(*shapes) == expected
