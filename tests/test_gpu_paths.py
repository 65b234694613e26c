"""The GPU code paths that run on the CPU too (issue 17, item 4): no host synchronisation in the FISTA and CG
loops on a GPU, and pinned host -> GPU copies.

On a GPU FISTA applies its restart selects without asking the host whether any element restarted, and CG reads
its stopping flag every ``CHECK_EVERY`` iterations instead of every one. Forcing those paths on the CPU must
give bit-identical images, iteration counts and histories; on a CUDA device (skipped here) the number of host
synchronisations must not grow with the iteration count.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.operators.device import count_host_syncs, to_device, to_host
from recon.solvers import cg as cg_module
from recon.solvers import fista as fista_module
from recon.solvers.cg import conjugate_gradient
from recon.solvers.cs import solve_scaled
from recon.solvers.sense import cartesian_problem
from test_solvers import data, random_mask, smooth_maps  # noqa: F401  (data: a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _problem(data, device="cpu", accel=3.0, noise=0.02):  # noqa: F811
    k, maps, _ = data
    mask = random_mask(accel, acs=6, seed=1)
    g = np.random.default_rng(0)
    noisy = k + noise * np.abs(k).max() * (g.standard_normal(k.shape) + 1j * g.standard_normal(k.shape))
    kt = torch.from_numpy((noisy * mask).astype(np.complex64)).to(device)
    mt = torch.from_numpy(np.broadcast_to(mask, k.shape[-2:]).astype(np.float32))[None, None].to(device)
    problem, _ = cartesian_problem(kt, torch.from_numpy(maps)[None].to(device), mt)
    return problem


def test_to_device_values_and_no_copy_without_device() -> None:
    a = (np.arange(12, dtype=np.float32).reshape(3, 4) + 1j).astype(np.complex64)
    t = to_device(a, "cpu")
    assert t.dtype == torch.complex64 and np.array_equal(t.numpy(), a)
    same = torch.ones(3)
    assert to_device(same) is same and to_device(same, None) is same
    assert np.array_equal(to_device(a[:, ::2]).numpy(), a[:, ::2])  # non-contiguous input


@pytest.mark.parametrize("monotone", [False, True])
def test_fista_gpu_select_path_is_bit_identical_on_cpu(data, monkeypatch, monotone) -> None:  # noqa: F811
    problem = _problem(data, noise=0.0)  # noiseless: both restart rules fire within 100 iterations

    def run():
        return solve_scaled(problem, "l1-wavelet", lam=0.01 if monotone else 0.05, iterations=100,
                            random_shift=not monotone)

    ref = run()
    monkeypatch.setattr(fista_module, "_always_select", lambda device: True)
    gpu_path = run()
    assert ref.restarts > 0  # the selects changed something on this problem
    assert torch.equal(ref.image, gpu_path.image)
    assert ref.history == gpu_path.history and ref.restarts == gpu_path.restarts


def test_cg_periodic_stopping_test_is_bit_identical_on_cpu(data, monkeypatch) -> None:  # noqa: F811
    problem = _problem(data, noise=0.0)
    ref = conjugate_gradient(problem.normal, problem.aty, max_iter=200, tol=1e-4)
    assert ref.converged and 3 < ref.iterations < 200
    monkeypatch.setattr(cg_module, "_check_every", lambda device: 7)
    periodic = conjugate_gradient(problem.normal, problem.aty, max_iter=200, tol=1e-4)
    assert torch.equal(ref.image, periodic.image)
    assert periodic.iterations == ref.iterations and periodic.history == ref.history and periodic.converged


def test_wavelet_dense_levels_gpu_path_matches_the_compiled_cpu_path(monkeypatch) -> None:
    from recon.operators import wavelet

    g = torch.Generator().manual_seed(3)
    x = torch.complex(torch.randn(2, 64, 48, generator=g), torch.randn(2, 64, 48, generator=g))
    op = wavelet.Wavelet2D((64, 48), "db4", 3)
    ref_fwd, ref_adj = op(x), op.H(x)
    monkeypatch.setattr(wavelet, "_compiled", lambda t: False)  # what a GPU runs: every level dense
    monkeypatch.setattr(wavelet, "_dense", lambda t: True)
    fwd, adj = op(x), op.H(x)
    assert float((fwd - ref_fwd).norm() / ref_fwd.norm()) < 1e-6
    assert float((adj - ref_adj).norm() / ref_adj.norm()) < 1e-6
    assert float((op.H(fwd) - x).norm() / x.norm()) < 1e-6  # still orthogonal


@CUDA
def test_to_device_pinned_copy_to_cuda_and_back() -> None:
    a = np.random.default_rng(0).standard_normal((2, 5, 7)).astype(np.float32)
    t = to_device(a, "cuda")
    assert t.device.type == "cuda" and np.array_equal(t.cpu().numpy(), a)
    back, none, cplx = to_host(t * 2, None, torch.complex(t, -t))
    assert np.array_equal(back, 2 * a) and none is None and np.array_equal(cplx, a - 1j * a)


@CUDA
def test_solver_loops_do_not_synchronise_on_cuda(data) -> None:  # noqa: F811
    problem = _problem(data, device="cuda")
    solve_scaled(problem, "l1-wavelet", lam=0.01, iterations=2)  # one-time set-up (plans, filter banks) first
    fista_syncs = [count_host_syncs(lambda n=n: solve_scaled(problem, "l1-wavelet", lam=0.01, iterations=n))
                   for n in (5, 45)]
    assert fista_syncs[1] <= fista_syncs[0], fista_syncs  # none per iteration
    cg_syncs = [count_host_syncs(lambda n=n: conjugate_gradient(problem.normal, problem.aty, max_iter=n, tol=0.0))
                for n in (8, 48)]
    assert cg_syncs[1] - cg_syncs[0] == 40 // cg_module.CHECK_EVERY, cg_syncs
