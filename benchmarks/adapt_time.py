"""Wall and process CPU time of VarNet's default adaptation on one 256 x 256 8-coil slice (issue 12's speed target:
under 60 s on 2 cores with the defaults).

The slice is ``benchmarks/shift.py``'s ``t1-coronal`` case (the dipy T1 coronal brain on 8 birdcage coils, SNR
30) under a fastMRI random 8x mask (centre 0.04, seed 0), so the 8x defaults apply (2 averaged runs,
``recon.solvers.learned.adapt.default_runs``); ``--steps`` times other step counts per run. Threads are set
with ``torch.set_num_threads`` only: OpenMP's default wait policy (spinning), as ``recon run`` has on an idle
machine (with fewer free cores than threads at start it sleeps instead, ``recon.app.runtime``, 1.3-2x slower).
Needs ``../shared/data/images``.

    .venv/bin/python benchmarks/adapt_time.py [--threads 2] [--steps 60 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import shift  # noqa: E402  (benchmarks/shift.py: the cases)
from recon.io.types import RawData  # noqa: E402
from recon.sampling import apply_mask, mask_from_options  # noqa: E402
from recon.solvers.learned.method import varnet_method  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, nargs="*", default=[], help="steps per run (default: the defaults)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    raw = shift.cases(["t1-coronal"])["t1-coronal"]
    mask, _ = mask_from_options("random", raw.kspace.shape, [8], [0.04], 0)
    k, used = apply_mask(raw.kspace, mask, raw.header)
    data = RawData(k, raw.header, used)
    for steps in args.steps or [None]:
        t, c = time.perf_counter(), time.process_time()
        out = varnet_method(data, adapt=True, adapt_steps=steps)
        runs = out["adapt_validation"].shape[1] if out["adapt_validation"].ndim == 3 else 1
        print(f"steps per run {out['adapt_validation'].shape[-1] - 1}, runs {runs}: "
              f"{time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} s process CPU "
              f"({args.threads} threads)", flush=True)


if __name__ == "__main__":
    main()
