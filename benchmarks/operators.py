"""Operator benchmarks: fused SENSE vs bare FFTs, and the NUFFT backends (accuracy and speed).

Run: ``python benchmarks/operators.py [--quick]`` (about a minute on 2 cores). Prints tables:

1. SENSE forward + adjoint (``recon.operators.Sense``) against ``torch.fft.fft2`` + ``torch.fft.ifft2`` on the
   same ``(C, H, W)`` arrays, for 8 coils x 256x256 and 15 coils x 640x368, fully sampled and with a 4x
   equispaced column mask. Target: ratio <= 1.3.
2. NUFFT accuracy against an exact NUDFT (double precision) on a 32x32 image with 3000 random points, for
   finufft (our default backend), torchkbnufft, SigPy and the pytorch_finufft wrapper (if installed).
3. NUFFT forward + adjoint for 8 coils, 256x256, radial 402 spokes x 512 samples: ours (finufft, and the
   torchkbnufft backend) against SigPy; and the Toeplitz normal against forward + adjoint.

Times are the minimum over repeats (the machine is shared; the minimum is the least noisy estimate).

Heap: by default the process runs with ``recon run``'s heap policy (``recon.app.memory.keep_solver_buffers``:
no page faults for temporaries), floor and bare FFTs included. With glibc's own policy (``--heap default``,
how tables 1 and 1b were measured before issue 17's second session) every 64-byte-aligned torch block above
the adaptive mmap threshold is mmapped and faulted in again on each call, and how many are depends on what
the process allocated before: the same floor call measured 152 or 1765 page faults (3.9 or 7.1 ms at
8 x 256^2, one core) in two runs that differed only in the code run before it.

Decision recorded in recon/operators/nufft.py: finufft on CPU (most accurate and fastest), torchkbnufft for
GPU tensors. Measured on the 2-core development machine while others were using it (see the report).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import timeit  # noqa: E402
from recon.app.memory import keep_solver_buffers  # noqa: E402
from recon.operators import NUFFT, Sense  # noqa: E402

warnings.filterwarnings("ignore")


def sense_table(repeats: int) -> list[tuple]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for C, H, W in [(8, 256, 256), (15, 640, 368)]:
        maps = torch.randn(C, H, W, dtype=torch.complex64, generator=g)
        maps /= torch.linalg.vector_norm(maps, dim=0, keepdim=True)
        x = torch.randn(H, W, dtype=torch.complex64, generator=g)
        k = torch.randn(C, H, W, dtype=torch.complex64, generator=g)
        mask = torch.zeros(W, dtype=torch.bool)
        mask[::4] = True
        mask[W // 2 - W // 25: W // 2 + W // 25] = True
        ops = {"full": Sense(maps), "4x columns": Sense(maps, mask)}

        def bare():
            torch.fft.ifft2(torch.fft.fft2(k, norm="ortho"), norm="ortho")

        for threads, clock in ((torch.get_num_threads(), time.perf_counter), (1, time.thread_time)):
            saved = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.no_grad():
                    # interleave so that background load hits all variants alike
                    t_bare, t_ops = math.inf, {name: math.inf for name in ops}
                    for _ in range(3):
                        t_bare = min(t_bare, timeit(bare, repeats, clock=clock))
                        for name, op in ops.items():
                            t_ops[name] = min(t_ops[name], timeit(lambda op=op: op.H(op(x)), repeats, clock=clock))
            finally:
                torch.set_num_threads(saved)
            how = f"{threads} thr wall" if clock is time.perf_counter else "1 thr CPU"
            for name in ops:
                rows.append((f"{C} x {H}x{W}", name, how, t_bare, t_ops[name], t_ops[name] / t_bare))
    return rows


def fista_table(repeats: int, iterations: int = 40) -> list[tuple]:
    """FISTA L1-wavelet per iteration (recon's defaults: db2, cycle spinning, BART scaling) against the SENSE
    normal-operator floor: ``sum_c conj(S_c) ifft2(M fft2(S_c x))`` written plainly with torch's 2D FFTs
    (no centring, no fusing); and recon's own normal operator against the same floor.

    Two per-iteration figures: a whole ``iterations``-step solve over ``iterations`` (the solve's set-up, i.e.
    the data scale, the first normal operator and the final objective, included), and the marginal cost of an
    iteration, ``(T(2 n) - T(n)) / n`` with ``n = iterations``, in which the set-up cancels."""
    from recon.solvers.cs import solve_scaled
    from recon.solvers.sense import cartesian_problem

    rows = []
    g = torch.Generator().manual_seed(1)
    for C, H, W in [(8, 256, 256), (15, 640, 368), (15, 320, 368)]:
        maps = torch.randn(1, C, H, W, dtype=torch.complex64, generator=g)
        maps /= torch.linalg.vector_norm(maps, dim=1, keepdim=True)
        mask = torch.zeros(W)
        mask[::4] = 1
        mask[W // 2 - W // 25: W // 2 + W // 25] = 1
        k = torch.randn(1, C, H, W, dtype=torch.complex64, generator=g) * mask
        x = torch.randn(1, H, W, dtype=torch.complex64, generator=g)
        problem, _ = cartesian_problem(k, maps, mask)
        m2 = mask.expand(H, W)

        def floor():
            (maps.conj() * torch.fft.ifft2(m2 * torch.fft.fft2(maps * x.unsqueeze(1), norm="ortho"),
                                           norm="ortho")).sum(1)

        def fista(n: int = iterations):
            solve_scaled(problem, "l1-wavelet", lam=0.005, iterations=n)

        with torch.no_grad():
            t_floor = t_normal = t_fista = t_double = math.inf
            for _ in range(3):  # interleaved against background load
                t_floor = min(t_floor, timeit(floor, repeats))
                t_normal = min(t_normal, timeit(lambda: problem.normal(x), repeats))
                t_fista = min(t_fista, timeit(fista, max(1, repeats // 4)))
                t_double = min(t_double, timeit(lambda: fista(2 * iterations), max(1, repeats // 4)))
        t_marginal = (t_double - t_fista) / iterations
        t_fista /= iterations
        rows.append((f"{C} x {H}x{W}", t_floor, t_normal, t_fista, t_normal / t_floor, t_fista / t_floor,
                     t_marginal, t_marginal / t_floor))
    return rows


def nudft(x: np.ndarray, traj: np.ndarray) -> np.ndarray:
    h, w = x.shape[-2:]
    n0 = np.arange(h) - h // 2
    n1 = np.arange(w) - w // 2
    E = np.exp(-1j * (traj[:, 0, None, None] * n0[:, None] + traj[:, 1, None, None] * n1[None, :])) / math.sqrt(h * w)
    return np.einsum("khw,hw->k", E, x)


def sigpy_forward(x: np.ndarray, traj: np.ndarray) -> np.ndarray:
    import sigpy

    h, w = x.shape[-2:]
    return sigpy.nufft(x, traj * np.array([h, w]) / (2 * math.pi))


def sigpy_adjoint(y: np.ndarray, traj: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import sigpy

    h, w = shape[-2:]
    return sigpy.nufft_adjoint(y, traj * np.array([h, w]) / (2 * math.pi), shape)


def accuracy_table() -> list[tuple]:
    rng = np.random.default_rng(0)
    h = w = 32
    traj = rng.uniform(-math.pi, math.pi, (3000, 2))
    x = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w)))
    ref = nudft(x, traj)
    xt = torch.from_numpy(x).to(torch.complex64)
    tt = torch.from_numpy(traj).float()

    def err(y) -> float:
        y = np.asarray(y, dtype=np.complex128).reshape(-1)
        return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))

    rows = [
        ("finufft (ours, eps=1e-3)", err(NUFFT(tt, (h, w), eps=1e-3)(xt).numpy())),
        ("finufft (ours, default eps=1e-4)", err(NUFFT(tt, (h, w))(xt).numpy())),
        ("finufft (ours, eps=1e-5)", err(NUFFT(tt, (h, w), eps=1e-5)(xt).numpy())),
        ("finufft (ours, complex128, eps=1e-12)",
         err(NUFFT(torch.from_numpy(traj), (h, w))(torch.from_numpy(x)).numpy())),
        ("torchkbnufft (defaults)", err(NUFFT(tt, (h, w), backend="torchkbnufft")(xt).numpy())),
        ("sigpy (defaults: width 4, oversamp 1.25)", err(sigpy_forward(x.astype(np.complex64), traj.astype(np.float32)))),
    ]
    try:
        import pytorch_finufft

        y = pytorch_finufft.functional.finufft_type2(tt.T.contiguous(), xt, isign=-1, modeord=0) / math.sqrt(h * w)
        rows.append(("pytorch_finufft (default eps=1e-6)", err(y.numpy())))
    except Exception as exc:  # optional comparison only
        rows.append((f"pytorch_finufft: not run ({type(exc).__name__})", float("nan")))
    return rows


def radial(spokes: int, samples: int) -> torch.Tensor:
    angles = torch.arange(spokes, dtype=torch.float64) * math.pi / spokes
    r = (torch.arange(samples, dtype=torch.float64) - samples // 2) * (2 * math.pi / samples)
    traj = torch.stack([r[None] * torch.cos(angles)[:, None], r[None] * torch.sin(angles)[:, None]], -1)
    return traj.reshape(-1, 2).float()


def nufft_speed_table(repeats: int, with_kb: bool) -> list[tuple]:
    C, h, w = 8, 256, 256
    traj = radial(402, 512)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(C, h, w, dtype=torch.complex64, generator=g)
    rows = []
    with torch.no_grad():
        for eps in (1e-3, 1e-4, 1e-5):
            op = NUFFT(traj, (h, w), eps=eps)
            label = f"ours: finufft eps={eps:.0e}" + (" (default)" if eps == 1e-4 else "")
            rows.append((label, timeit(lambda op=op: op.H(op(x)), repeats)))
        ours = NUFFT(traj, (h, w))
        normal = ours.N
        normal(x[:1])  # kernel
        rows.append(("ours: Toeplitz normal A.N (kernel precomputed)", timeit(lambda: normal(x), repeats)))
        try:
            import pytorch_finufft

            pts = traj.T.contiguous()

            def wrapper():
                y = pytorch_finufft.functional.finufft_type2(pts, x, isign=-1, modeord=0, eps=1e-4)
                pytorch_finufft.functional.finufft_type1(pts, y, (h, w), isign=1, modeord=0, eps=1e-4)

            rows.append(("pytorch_finufft type2 + type1, eps=1e-4", timeit(wrapper, repeats)))
        except Exception as exc:  # optional comparison only
            print(f"(pytorch_finufft not timed: {type(exc).__name__}: {exc})")
        xn, tn = x.numpy(), traj.numpy()
        t_sigpy = timeit(lambda: sigpy_adjoint(sigpy_forward(xn, tn), tn, xn.shape), max(1, repeats // 2))
        rows.append(("sigpy nufft + nufft_adjoint", t_sigpy))
        if with_kb:
            kb = NUFFT(traj, (h, w), backend="torchkbnufft")
            rows.append(("ours: torchkbnufft backend", timeit(lambda: kb.H(kb(x)), 1)))
    return [(name, t, t / t_sigpy) for name, t in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip the slow torchkbnufft timing")
    parser.add_argument("--heap", choices=("recon", "default"), default="recon",
                        help="recon: recon run's heap policy, no page faults for temporaries (default); "
                             "default: glibc's (page faults depend on the process's history; see the docstring)")
    args = parser.parse_args(argv)
    if args.heap == "recon":
        keep_solver_buffers()
    repeats = 3 if args.quick else 8
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, heap {args.heap}\n")

    print("1. SENSE forward + adjoint vs bare fft2 + ifft2 on (C, H, W), ms (min of repeats)")
    print("   (wall time with torch's threads; and CPU time of one thread, which load from others disturbs less)")
    print(f"{'arrays':<16}{'mask':<12}{'timing':<14}{'bare FFTs':>11}{'SENSE':>10}{'ratio':>8}")
    for arrays, mask, how, t_bare, t_op, ratio in sense_table(repeats):
        print(f"{arrays:<16}{mask:<12}{how:<14}{t_bare:>11.2f}{t_op:>10.2f}{ratio:>8.2f}")

    print("\n1b. FISTA L1-wavelet per iteration vs the SENSE normal-operator floor (plain torch fft2/ifft2), "
          "4x column mask, ms")
    print("   (FISTA/it: a 40-iteration solve / 40, set-up included; marginal: (T(80) - T(40)) / 40)")
    print(f"{'arrays':<16}{'floor':>9}{'A^H A':>9}{'FISTA/it':>10}{'A^H A/floor':>13}{'FISTA/floor':>13}"
          f"{'marginal':>10}{'marg./floor':>13}")
    for arrays, t_floor, t_normal, t_fista, r_normal, r_fista, t_marg, r_marg in fista_table(repeats):
        print(f"{arrays:<16}{t_floor:>9.2f}{t_normal:>9.2f}{t_fista:>10.2f}{r_normal:>13.2f}{r_fista:>13.2f}"
              f"{t_marg:>10.2f}{r_marg:>13.2f}")

    print("\n2. NUFFT accuracy vs exact NUDFT (32x32 image, 3000 random points), relative L2 error")
    for name, e in accuracy_table():
        print(f"{name:<48}{e:>10.2e}")

    print("\n3. NUFFT forward + adjoint, 8 coils, 256x256, radial 402 x 512, ms (min of repeats)")
    print(f"{'method':<48}{'time':>10}{'vs sigpy':>10}")
    for name, t, ratio in nufft_speed_table(max(2, repeats // 2), with_kb=not args.quick):
        print(f"{name:<48}{t:>10.1f}{ratio:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
