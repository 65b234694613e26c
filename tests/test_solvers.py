"""Classical solvers on small problems whose answer is known (32x32, 4 coils, noiseless unless stated)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.errors import UsageError
from recon.arrays import rss
from recon.io.fourier import fft2c, ifft2c
from recon.solvers.admm import admm
from recon.solvers.cg import conjugate_gradient
from recon.solvers.cs import solve_scaled
from recon.solvers.fista import fista
from recon.solvers.grappa import grappa
from recon.solvers.pdhg import pdhg
from recon.solvers.problem import LeastSquares
from recon.solvers.regularizers import L1Wavelet, TotalVariation
from recon.sampling import SamplingMask
from recon.solvers.sense import cartesian_problem, cg_sense, normalize_maps

H = W = 32
C = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_maps(c: int = C, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """Coil maps: Gaussian profiles around a ring with a linear phase each, normalised to sum |S|^2 = 1."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    maps = []
    for i in range(c):
        ang = 2 * np.pi * i / c
        cy, cx = h / 2 + 0.6 * h * np.sin(ang), w / 2 + 0.6 * w * np.cos(ang)
        mag = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.3 * h) ** 2))
        maps.append(mag * np.exp(1j * (0.05 * (i + 1) * xx + 0.03 * i * yy)))
    m = np.stack(maps)
    return (m / np.sqrt((np.abs(m) ** 2).sum(0))).astype(np.complex64)


def phantom(shape: tuple[int, int] = (H, W)) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    img = (((xx - w / 2) / (0.38 * w)) ** 2 + ((yy - h / 2) / (0.42 * h)) ** 2 < 1).astype(np.float64)
    img += 0.5 * (((xx - 0.4 * w) / (0.1 * w)) ** 2 + ((yy - 0.45 * h) / (0.15 * h)) ** 2 < 1)
    img -= 0.3 * (np.abs(xx - 0.62 * w) < 0.05 * w) * (np.abs(yy - 0.55 * h) < 0.2 * h)
    return (img * np.exp(1j * 0.02 * xx)).astype(np.complex64)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k-space (1, C, H, W), maps (C, H, W), image (H, W)), noiseless and fully sampled."""
    maps, img = smooth_maps(), phantom()
    return fft2c(maps * img)[None].astype(np.complex64), maps, img


def random_mask(accel: float, acs: int = 8, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    m = g.uniform(size=W) < 1.0 / accel
    m[W // 2 - acs // 2: W // 2 + acs // 2] = True
    return m


def rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --- fully sampled noiseless data give the RSS image --------------------------------------------------

def test_sense_fully_sampled_equals_rss(data) -> None:
    k, maps, img = data
    res = cg_sense(k, 3.0 * maps)  # unnormalised maps: CG solves for x / 3; normalised ones give the RSS
    assert res.converged and res.iterations <= 2
    assert rel(np.abs(res.image[0].numpy()) * 3.0, rss(ifft2c(k), axis=1)[0]) < 1e-5
    res = cg_sense(k, normalize_maps(torch.from_numpy(3.0 * maps)))
    assert rel(np.abs(res.image[0].numpy()), rss(ifft2c(k), axis=1)[0]) < 1e-5
    assert rel(res.image[0].numpy(), img) < 1e-5  # and the complex image itself


def test_grappa_r1_is_rss(data) -> None:
    k, _, _ = data
    res = grappa(k, np.ones(W, bool))
    assert res.parameters["filled_lines"] == 0
    assert np.abs(res.image.numpy() - rss(ifft2c(k), axis=1)).max() < 1e-6 * np.abs(k).max()


def test_grappa_r2_fills_missing_lines(data) -> None:
    k, _, _ = data
    cols = np.zeros(W, bool)
    cols[::2] = True
    cols[W // 2 - 6: W // 2 + 6] = True
    res = grappa(k * cols, cols, reg=1e-4)
    filled = res.extras["kspace"].numpy()
    assert np.array_equal(filled[..., cols], (k * cols)[..., cols])  # acquired lines untouched
    # measured (default 5-line window: sources +-1): relative error of the synthesised lines 0.196 (zero filling:
    # 1.0); of the RSS image 0.016 (zero filling: 0.095)
    assert rel(filled[..., ~cols], k[..., ~cols]) < 0.2
    assert rel(res.image.numpy(), rss(ifft2c(k), axis=1)) < 0.02


def _grappa_reference(k: np.ndarray, cols: np.ndarray, target: int, offsets: tuple[int, ...], acs: range,
                      kh: int, reg: float) -> np.ndarray:
    """Pattern-specific GRAPPA for one line, written out with numpy: source patches of the ``offsets`` lines
    (``kh`` readout points, zero-padded, every coil) at each ACS position where the pattern fits, Tikhonov
    least squares with ``lam = reg * trace(S^H S) / columns``, applied at ``target``. ``(C, H)``."""
    _, c, h, _ = k.shape
    pad = kh // 2
    kp = np.pad(k[0], ((0, 0), (pad, pad), (0, 0)))

    def patches(line: int) -> np.ndarray:  # (H, len(offsets) * C * kh)
        return np.stack([np.concatenate([kp[:, r:r + kh, line + d].reshape(-1) for d in offsets])
                         for r in range(h)])

    pos = [p for p in acs if p + min(offsets) >= acs.start and p + max(offsets) < acs.stop]
    src = np.concatenate([patches(p) for p in pos]).astype(np.complex128)
    tgt = np.concatenate([k[0, :, :, p].T for p in pos]).astype(np.complex128)  # (positions * H, C)
    gram = src.conj().T @ src
    lam = reg * np.trace(gram).real / gram.shape[0]
    weights = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), src.conj().T @ tgt)
    return (patches(target) @ weights).T


def test_grappa_irregular_mask_pattern_specific(data) -> None:
    """A random-like mask: one kernel per local sampling pattern (acquired lines within the 5-line window),
    each equal to a direct numpy least-squares calibration; a line with no acquired neighbour stays zero."""
    k, _, _ = data
    cols = np.zeros(W, bool)
    cols[[0, 1, 3, 5, 6, 8, 25, 27, 28, 31]] = True
    cols[W // 2 - 6: W // 2 + 6] = True  # ACS lines 10..21 (12 lines): default window 5 lines
    res = grappa(k * cols, cols, reg=1e-3)
    filled = res.extras["kspace"].numpy()
    assert res.parameters["kernel_size"] == [5, 5] and res.parameters["acs"] == [10, 22]
    assert np.array_equal(filled[..., cols], (k * cols)[..., cols])  # acquired lines kept exactly
    lonely = [t for t in range(W) if not cols[t] and not cols[max(t - 2, 0): t + 3].any()]
    assert lonely == []
    patterns = {tuple(d for d in (-2, -1, 1, 2) if 0 <= t + d < W and cols[t + d]) for t in range(W) if not cols[t]}
    assert res.parameters["patterns"] == len(patterns) == 7
    for target in (2, 4, 9, 22, 23, 24, 29, 30):  # every pattern: two-sided, one-sided, at the edge, by the ACS
        offsets = tuple(d for d in (-2, -1, 1, 2) if 0 <= target + d < W and cols[target + d])
        ref = _grappa_reference(k, cols, target, offsets, range(10, 22), 5, 1e-3)
        assert rel(filled[0, :, :, target], ref) < 1e-4, (target, offsets)
    # lines between two acquired neighbours are synthesised well (measured 0.091, 0.099; zero filling: 1.0)
    assert rel(filled[..., 2], k[..., 2]) < 0.15 and rel(filled[..., 4], k[..., 4]) < 0.15


def test_grappa_leaves_lines_without_neighbours_empty(data) -> None:
    k, _, _ = data
    cols = np.zeros(W, bool)
    cols[[0, 31]] = True
    cols[W // 2 - 4: W // 2 + 4] = True  # 8-line ACS: default window 3 lines (+-1)
    res = grappa(k * cols, cols)
    filled = res.extras["kspace"].numpy()
    near = [t for t in range(W) if not cols[t] and (cols[max(t - 1, 0)] or cols[min(t + 1, W - 1)])]
    assert near == [1, 11, 20, 30]
    assert res.parameters["filled_lines"] == 4 and res.parameters["unfilled_lines"] == W - cols.sum() - 4
    empty = [t for t in range(W) if not cols[t] and t not in near]
    assert not filled[..., empty].any()
    assert all(np.abs(filled[..., t]).min() > 0 for t in near)
    with pytest.raises(UsageError, match="odd phase-encode window"):
        grappa(k * cols, cols, kernel_size=(5, 4))


def test_l1_default_lambda_depends_on_mask_dimensionality() -> None:
    from recon.sampling import mask_from_options
    from recon.solvers.cs import DEFAULTS, L1_LAMBDA_2D, default_lambda

    def is_2d_mask(mask):
        return mask is not None and SamplingMask(mask).is_2d

    cols = random_mask(4)
    poisson, _ = mask_from_options("poisson", (1, C, H, W), 4, 0.08, seed=0)
    assert poisson.shape == (H, W) and is_2d_mask(poisson)
    assert is_2d_mask(torch.from_numpy(poisson)[None, None]) and is_2d_mask(np.stack([np.ones((H, W)), poisson]))
    for column in (cols, np.broadcast_to(cols, (H, W)), cols.reshape(1, 1, 1, W), np.ones((H, W)), None):
        assert not is_2d_mask(column)
    assert default_lambda("l1-wavelet", poisson) == L1_LAMBDA_2D == 0.0025
    assert default_lambda("l1-wavelet", cols) == DEFAULTS["l1-wavelet"]["lam"] == 0.005
    assert default_lambda("tv", poisson) == DEFAULTS["tv"]["lam"] == 0.005


# --- CG ------------------------------------------------------------------------------------------------

def test_cg_solves_normal_equations(data) -> None:
    k, maps, _ = data
    mask = random_mask(3)
    kt = torch.from_numpy(k * mask)
    problem, _ = cartesian_problem(kt, torch.from_numpy(maps)[None], SamplingMask(mask).real_weight())
    lam = 0.01
    res = conjugate_gradient(problem.normal, problem.aty, lam=lam, max_iter=100, tol=1e-6)
    x = res.image
    residual = problem.normal(x) + lam * x - problem.aty
    assert res.converged
    assert float(residual.norm() / problem.aty.norm()) < 1e-4
    assert res.history[0] == pytest.approx(1.0) and res.history[-1] < 1e-5


def test_cg_batched_slices_are_independent(data) -> None:
    k, maps, _ = data
    k2 = np.concatenate([k, 2 * np.roll(k, 3, axis=-1)])
    mask = random_mask(3)
    both = cg_sense(k2, maps, mask, iterations=50, tol=1e-7).image
    one = cg_sense(k2[1:], maps, mask, iterations=50, tol=1e-7).image
    assert rel(both[1:].numpy(), one.numpy()) < 1e-4


# --- CS solvers -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def l1_problem(data) -> LeastSquares:
    k, maps, _ = data
    mask = random_mask(2.5, seed=1)
    g = np.random.default_rng(5)
    noisy = k + 0.02 * (g.standard_normal(k.shape) + 1j * g.standard_normal(k.shape)).astype(np.complex64)
    problem, _ = cartesian_problem(torch.from_numpy(noisy * mask), torch.from_numpy(maps)[None], SamplingMask(mask).real_weight())
    return problem


def test_l1_with_lambda_zero_equals_cg_sense() -> None:
    maps, img = smooth_maps(8), phantom()
    mask = random_mask(1.3)  # 26 of 32 lines, 8 coils: well conditioned, so both converge in float32
    k = fft2c(maps * img)[None].astype(np.complex64) * mask
    problem, _ = cartesian_problem(torch.from_numpy(k), torch.from_numpy(maps)[None], SamplingMask(mask).real_weight())
    x_cg = conjugate_gradient(problem.normal, problem.aty, max_iter=100, tol=1e-6).image
    x_fista = fista(problem, L1Wavelet((H, W), "db2", 2), 0.0, iterations=200).image
    assert rel(x_fista.numpy(), x_cg.numpy()) < 1e-5  # measured 7.5e-7
    x_cs = solve_scaled(problem, "l1-wavelet", lam=0.0, iterations=200).image  # scaled, random shifts
    assert rel(x_cs.numpy(), x_cg.numpy()) < 1e-5


def test_fista_admm_pdhg_reach_the_same_objective(l1_problem) -> None:
    reg = L1Wavelet((H, W), "db2", 2)
    lam = 0.05
    f = fista(l1_problem, reg, lam, iterations=300)
    a = admm(l1_problem, reg, lam, iterations=300, cg_iterations=5)
    p = pdhg(l1_problem, reg, lam, iterations=1500)
    best = min(f.history[-1], a.history[-1], p.history[-1])
    start = f.history[0]
    assert start > 1.3 * best  # the problem is not trivial (measured: 5.84 at the start, 4.07 at the end)
    for r in (f, a, p):
        assert r.history[-1] <= best * 1.01, (r.parameters["solver"], r.history[-1], best)
    assert rel(a.image.numpy(), f.image.numpy()) < 0.02
    assert rel(p.image.numpy(), f.image.numpy()) < 0.02


def test_tv_admm_and_pdhg_agree(l1_problem) -> None:
    reg = TotalVariation((H, W))
    lam = 0.05
    a = admm(l1_problem, reg, lam, iterations=300, cg_iterations=5)
    p = pdhg(l1_problem, reg, lam, iterations=1500)
    assert abs(a.history[-1] - p.history[-1]) <= 0.01 * min(a.history[-1], p.history[-1])


def test_fista_with_restart_is_monotone(l1_problem) -> None:
    reg = L1Wavelet((H, W), "db2", 2)
    res = fista(l1_problem, reg, 0.05, iterations=80)
    h = np.asarray(res.history)
    # non-increasing up to float32 rounding of the objective (measured: largest increase 1.2e-6 * h[0])
    assert np.all(np.diff(h) <= 1e-5 * h[0])
    assert h[-1] < 0.7 * h[0]


def test_solver_arguments_are_checked(l1_problem) -> None:
    with pytest.raises(UsageError, match="lambda must be >= 0"):
        solve_scaled(l1_problem, "l1-wavelet", lam=-1)
    with pytest.raises(UsageError, match="no closed-form proximal"):
        solve_scaled(l1_problem, "tv", solver="fista")
    with pytest.raises(UsageError, match="unknown solver"):
        solve_scaled(l1_problem, "l1-wavelet", solver="sgd")
    with pytest.raises(UsageError, match="violate"):
        pdhg(l1_problem, TotalVariation((H, W)), 0.1, tau=10.0)


@pytest.mark.parametrize("lam", [-1.0, float("nan"), torch.tensor([0.1, float("nan")])])
def test_every_solver_refuses_a_negative_or_nan_weight_the_same_way(l1_problem, lam) -> None:
    reg = L1Wavelet((H, W), "db2", 2)
    calls = [lambda: fista(l1_problem, reg, lam, iterations=1), lambda: admm(l1_problem, reg, lam, iterations=1),
             lambda: pdhg(l1_problem, reg, lam, iterations=1),
             lambda: conjugate_gradient(l1_problem.normal, l1_problem.aty, lam=lam, max_iter=1)]
    for call in calls:
        with pytest.raises(UsageError, match="lambda must be >= 0"):
            call()
    for call in (lambda: fista(l1_problem, reg, 0.1, iterations=-1), lambda: admm(l1_problem, reg, 0.1, iterations=-1),
                 lambda: conjugate_gradient(l1_problem.normal, l1_problem.aty, max_iter=-1)):
        with pytest.raises(UsageError, match="iterations must be >= 0"):
            call()


@pytest.mark.parametrize("shape", [(1, 256, 256), (3, 224, 192), (2, 1, 77, 65), (1, 4, 1)])
def test_bart_scale_quantiles_equal_torch_quantile(shape):
    """The order-statistics quantiles of bart_scale (numpy.partition on the CPU) equal torch.quantile's
    linear interpolation exactly, and the scale is BART's rule on them."""
    from recon.solvers.scaling import _quantiles, bart_scale

    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, dtype=torch.complex64, generator=g)
    flat = x.abs().reshape(x.shape[:-2] + (-1,))
    expected = torch.quantile(flat, torch.tensor([0.5, 0.9]), dim=-1)
    got = _quantiles(flat, (0.5, 0.9))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    p50, p90, pmax = expected[0], expected[1], flat.amax(-1)
    assert torch.equal(bart_scale(x), torch.where(pmax - p90 < 2 * (p90 - p50), p90, pmax))
