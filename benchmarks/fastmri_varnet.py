"""Forward speed and peak memory of the leaderboard-size fastMRI E2E-VarNet (12 cascades, 18 channels, 4 pools;
sensitivity U-Net 8 channels, 4 pools): recon's :class:`~recon.solvers.learned.fastmri_varnet.FastMRIVarNet`
against ``fastmri.models.VarNet`` 0.3.0 with the same random weights, in the same process.

Cases: a 640 x 368 15-coil knee slice (fastMRI multicoil knee size, 4x equispaced-fraction-like mask, 0.08
centre) and a 320 x 320 16-coil brain slice. Times: median of ``--repeats`` forward passes (``torch.no_grad``)
after one warm-up, the two implementations alternated so that a shared machine's load hits both alike.
Peak memory: CPU, the peak resident set of a child process that builds one model and runs one forward pass,
minus that child's resident set before the pass (``_common.PeakRSS``: VmHWM reset just before it); CUDA, ``torch.cuda.max_memory_allocated`` during the pass.

Usage: ``python benchmarks/fastmri_varnet.py [--threads 2] [--repeats 3] [--device cpu|cuda]``
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

CASES = {"knee": (15, 640, 368), "brain": (16, 320, 320)}
LEADERBOARD = dict(num_cascades=12, sens_chans=8, sens_pools=4, chans=18, pools=4)


def inputs(case: str, device: str):
    import torch

    c, h, w = CASES[case]
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(w, dtype=torch.bool)
    mask[::4] = True
    centre = round(0.08 * w)
    mask[w // 2 - centre // 2: w // 2 - centre // 2 + centre] = True
    k = torch.randn(1, c, h, w, 2, generator=g) * 1e-4 * mask.view(1, 1, 1, w, 1)
    return k.to(device), mask.view(1, 1, 1, w, 1).to(device)


def models(device: str):
    """(fastMRI's VarNet, recon's) with the same random (default-initialised) weights."""
    import torch
    from fastmri_oracle import load_fastmri

    from recon.solvers.learned.checkpoints import load_fastmri_blob

    torch.manual_seed(0)
    ref = load_fastmri()[0].VarNet(**LEADERBOARD).eval()
    ours = load_fastmri_blob(ref.state_dict(), "random").eval()
    return ref.to(device), ours.to(device)


def run(which: str, model, k, m):
    import torch

    with torch.no_grad():
        if which == "fastmri":
            return model(k, m)
        return model(torch.view_as_complex(k), m[..., 0])


def child(which: str, case: str, device: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    ref, ours = models(device)
    model = ref if which == "fastmri" else ours
    del ref, ours
    k, m = inputs(case, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run(which, model, k, m)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # VmHWM reset before the pass (ru_maxrss would keep the peak of building the models)
        from _common import PeakRSS

        with PeakRSS() as p:
            run(which, model, k, m)
        peak = p.mb
    print(json.dumps({"peak_mib": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.device, args.threads)
    import torch

    torch.set_num_threads(args.threads)
    ref, ours = models(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rows = []
    for case in args.cases:
        k, m = inputs(case, args.device)
        out = {}
        times: dict[str, list[float]] = {"fastmri": [], "recon": []}
        for which, model in (("fastmri", ref), ("recon", ours)):  # warm-up + outputs
            out[which] = run(which, model, k, m)
        for _ in range(args.repeats):
            for which, model in (("fastmri", ref), ("recon", ours)):
                sync()
                t0 = time.perf_counter()
                run(which, model, k, m)
                sync()
                times[which].append(time.perf_counter() - t0)
        rel = float((out["recon"] - out["fastmri"]).norm() / out["fastmri"].norm())
        peaks = {}
        for which in ("fastmri", "recon"):
            r = subprocess.run([sys.executable, __file__, "--child", which, case, "--device", args.device,
                                "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            peaks[which] = json.loads(r.stdout.strip().splitlines()[-1])["peak_mib"]
        t = {w: statistics.median(v) for w, v in times.items()}
        rows.append({"case": case, "coils_h_w": CASES[case], "fastmri_s": round(t["fastmri"], 3),
                     "recon_s": round(t["recon"], 3), "speed_ratio_fastmri_over_recon": round(t["fastmri"] / t["recon"], 3),
                     "fastmri_peak_mib": round(peaks["fastmri"], 1), "recon_peak_mib": round(peaks["recon"], 1),
                     "rel_diff": rel})
        print(json.dumps(rows[-1]), flush=True)
    print(f"device {args.device}, {args.threads} threads, median of {args.repeats}")


if __name__ == "__main__":
    main()
