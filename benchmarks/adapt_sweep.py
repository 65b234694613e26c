"""Adaptation settings on the out-of-distribution cases of ``benchmarks/shift.py`` (issue 12: tuning ``--adapt``).

Runs VarNet adapted with one setting (``--steps``, ``--lr``, ``--loss-fraction``, ``--validation-fraction``,
``--masks-per-step``, ``--train``, ``--validation-selection``, ``--loss-selection``, ``--ema``) on the cases of ``shift.py`` (same masks: fastMRI random, seed 0) and
prints, per case, the unadapted PSNR, the PSNR of the state the self-validation curve picks within the first
``h`` steps for each horizon ``h`` of ``--horizons`` (so one run of N steps answers "what if the default were
h <= N steps"), and the chosen steps; then the means over cases per horizon and the worst case against the
unadapted VarNet. The PSNR of a state is measured only when it is a candidate (a new best of the
self-validation curve), plus every 10 steps for the (oracle, never used) PSNR curve (``--every N``; with
``--every 1 --save-images DIR`` every state's image is kept for ``benchmarks/adapt_rules.py``, which evaluates
selection rules and averages of runs offline). One adaptation run per case (``runs=1``).

    .venv/bin/python benchmarks/adapt_sweep.py --threads 1 --accels 8 --steps 80 --horizons 20 40 60 80
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import shift  # noqa: E402  (benchmarks/shift.py: the cases)
from recon.arrays import center_crop_or_pad, rss  # noqa: E402
from recon.io.fourier import ifft2c  # noqa: E402
from recon.io.types import RawData  # noqa: E402
from recon.metrics import volume_metrics  # noqa: E402
from recon.sampling import apply_mask, mask_from_options  # noqa: E402
from recon.solvers.learned import adapt as ad  # noqa: E402
from recon.solvers.learned.method import varnet_method  # noqa: E402


def run_case(raw, accel: int, settings: dict, every: int = 10, images: list | None = None) -> dict:
    crop = raw.header.recon_size
    ref = center_crop_or_pad(rss(ifft2c(raw.kspace), axis=1), crop).astype(np.float32)
    mask, _ = mask_from_options("random", raw.kspace.shape, [accel], [{4: 0.08, 8: 0.04}[accel]], 0)
    k, used = apply_mask(raw.kspace, mask, raw.header)
    data = RawData(k, raw.header, used)

    def psnr(image) -> float:
        image = center_crop_or_pad(np.asarray(image, dtype=np.float32), crop)
        if images is not None:
            images.append(image[0].astype(np.float32))
        return float(volume_metrics(ref, image)["psnr"])

    unadapted = psnr(varnet_method(data))
    if images is not None:
        images.clear()
    seen: dict[int, float] = {}
    original = ad.adapt_model

    def patched(model, kspace, m, **opts):
        mt = torch.from_numpy(np.asarray(m))

        def callback(step: int, tuned, is_best: bool) -> None:
            if is_best or step % every == 0:
                with torch.no_grad():
                    seen[step] = psnr(tuned(kspace, mt).cpu().numpy())

        return original(model, kspace, m, **{**opts, **settings, "callback": callback})

    ad.adapt_model = patched
    try:
        t0 = time.perf_counter()
        out = varnet_method(data, adapt=True, adapt_steps=settings["steps"], adapt_lr=settings["lr"])
        seconds = time.perf_counter() - t0
    finally:
        ad.adapt_model = original
    curve = np.asarray(out["adapt_validation"][0], dtype=np.float64)
    final = psnr(out["reconstruction"])
    if images is not None:
        images.pop()
    chosen = int(out["adapt_chosen_step"][0])
    if abs(seen[chosen] - final) > 1e-3:
        print(f"warning: callback PSNR {seen[chosen]:.3f} != output {final:.3f}", file=sys.stderr)
    return {"unadapted": unadapted, "final": final, "chosen": chosen, "seconds": seconds,
            "curve": curve.tolist(), "psnr_at": {str(s): v for s, v in sorted(seen.items())},
            "reference": ref, "validation_lines": int(ad.make_split(np.asarray(mask), np.random.default_rng(settings["seed"]),
                                                  settings["validation_fraction"]).validation.sum())}


def at_horizon(row: dict, h: int) -> tuple[int, float]:
    curve = np.asarray(row["curve"][:h + 1])
    step = int(np.argmin(curve))  # earliest minimum, as adapt_model
    return step, row["psnr_at"][str(step)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=None)
    p.add_argument("--accels", type=int, nargs="+", default=[8])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--horizons", type=int, nargs="+", default=None)
    p.add_argument("--lr", type=float, default=ad.DEFAULT_LR)
    p.add_argument("--loss-fraction", type=float, default=ad.LOSS_FRACTION)
    p.add_argument("--validation-fraction", type=float, default=ad.VALIDATION_FRACTION)
    p.add_argument("--masks-per-step", type=int, default=ad.MASKS_PER_STEP)
    p.add_argument("--train", default=ad.TRAIN, choices=ad.TRAIN_CHOICES)
    p.add_argument("--validation-selection", default=ad.VALIDATION_SELECTION, choices=ad.SELECTIONS)
    p.add_argument("--loss-selection", default=ad.LOSS_SELECTION, choices=ad.SELECTIONS)
    p.add_argument("--ema", type=float, default=ad.EMA)
    p.add_argument("--seed", type=int, default=0, help="adaptation seed (the masks stay seed 0)")
    p.add_argument("--json", default=None)
    p.add_argument("--every", type=int, default=10, help="oracle PSNR every N steps (1: every state)")
    p.add_argument("--save-images", default=None,
                   help="folder: per case and acceleration an .npz of the reference and every state's image "
                        "(with --every 1, to evaluate selection/averaging rules offline: adapt_rules.py)")
    args = p.parse_args()
    from recon.app.runtime import configure_threads

    configure_threads(args.threads)
    settings = {"steps": args.steps, "lr": args.lr, "loss_fraction": args.loss_fraction,
                "validation_fraction": args.validation_fraction, "masks_per_step": args.masks_per_step,
                "train": args.train, "validation_selection": args.validation_selection,
                "loss_selection": args.loss_selection, "ema": args.ema, "seed": args.seed,
                "runs": 1}  # one run: several averaged runs (adapt.default_runs) are evaluated by adapt_rules.py
    horizons = sorted(set(args.horizons or [args.steps]) | {args.steps})
    print("settings:", json.dumps(settings))
    results: dict = {}
    for name, raw in shift.cases(args.cases).items():
        for accel in args.accels:
            images: list | None = [] if args.save_images else None
            row = run_case(raw, accel, settings, args.every, images)
            reference = row.pop("reference")
            if args.save_images:
                Path(args.save_images).mkdir(parents=True, exist_ok=True)
                np.savez_compressed(Path(args.save_images) / f"{name}_{accel}x_seed{args.seed}.npz",
                                    reference=reference, steps=np.asarray(sorted(int(s) for s in row["psnr_at"])),
                                    images=np.stack(images).astype(np.float16))
            results.setdefault(f"{accel}x", {})[name] = row
            cells = ", ".join(f"h{h}: {at_horizon(row, h)[1]:.2f} (step {at_horizon(row, h)[0]})" for h in horizons)
            print(f"{name} {accel}x: varnet {row['unadapted']:.2f} | {cells} | {row['seconds']:.1f} s", flush=True)
    for key, rows in results.items():
        base = np.mean([r["unadapted"] for r in rows.values()])
        for h in horizons:
            vals = {n: at_horizon(r, h)[1] for n, r in rows.items()}
            worst = min(vals[n] - r["unadapted"] for n, r in rows.items())
            print(f"{key} h{h}: mean adapted {np.mean(list(vals.values())):.3f} (varnet {base:.2f}), worst "
                  f"adapted-varnet {worst:+.2f} ({len(rows)} cases)")
        print(f"{key} seconds: mean {np.mean([r['seconds'] for r in rows.values()]):.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=1))


if __name__ == "__main__":
    main()
