"""Selection rules for VarNet's adaptation, evaluated offline on recorded trajectories (issue 12, tuning ``--adapt``).

The rules differ only in which adapted state(s) give the reconstruction, so one adaptation run per case and split
seed answers for all of them: run ``benchmarks/adapt_sweep.py`` with ``--every 1 --save-images DIR --json J``
(the self-validation curve, and every state's image), then

    .venv/bin/python benchmarks/adapt_rules.py --json J0 J1 --images DIR [--steps 80]

prints, per rule and per split seed, the mean PSNR over the cases, the worst case against the unadapted VarNet
and the per-case PSNRs. An image average is the mean of the states' magnitude images.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recon.metrics import volume_metrics  # noqa: E402


def smooth(curve: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``curve`` over ``width`` points (fewer at the ends)."""
    half = width // 2
    return np.array([curve[max(0, i - half):i + half + 1].mean() for i in range(curve.size)])


def curve_noise(curve: np.ndarray) -> float:
    """The step-to-step scatter of a curve: median absolute first difference / (0.6745 sqrt 2)."""
    d = np.diff(curve)
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(2)) if d.size else 0.0


Rule = Callable[[np.ndarray], list[int]]  # validation curve (steps + 1,) -> the steps whose images are averaged


def rules(horizon: int) -> dict[str, Rule]:
    h = horizon
    out: dict[str, Rule] = {
        "argmin (current)": lambda c: [int(np.argmin(c[:h + 1]))],
        "step 0 (unadapted)": lambda c: [0],
        f"last step ({h})": lambda c: [h],
    }
    for w in (5, 11, 21):
        out[f"argmin of moving average w{w}"] = lambda c, w=w: [int(np.argmin(smooth(c[:h + 1], w)))]
    for k in (3, 5, 10, 20):
        out[f"average of the {k} lowest"] = lambda c, k=k: sorted(np.argsort(c[:h + 1], kind="stable")[:k].tolist())
    for k in (10, 20, 40):
        out[f"average of the last {k}"] = lambda c, k=k: list(range(max(0, h - k + 1), h + 1))
    for w in (5, 11):
        def win(c: np.ndarray, w: int = w) -> list[int]:
            s = int(np.argmin(smooth(c[:h + 1], w)))
            return list(range(max(0, s - w // 2), min(h, s + w // 2) + 1))
        out[f"average of the w{w} window at the smoothed argmin"] = win
    for tau in (1.0, 2.0, 3.0):
        for fallback in ("0", "last"):
            def test(c: np.ndarray, tau: float = tau, fallback: str = fallback) -> list[int]:
                c = c[:h + 1]
                best = int(np.argmin(c))
                if c[0] - c[best] > tau * curve_noise(c):
                    return [best]
                return [0] if fallback == "0" else [h]
            out[f"argmin if c0 - min > {tau:g} scatter, else {fallback}"] = test
    for patience in (5, 10, 20):
        out[f"early stop, patience {patience}"] = lambda c, p=patience: [early_stop(c[:h + 1], p)[0]]
    return out


def early_stop(curve: np.ndarray, patience: int) -> tuple[int, int]:
    """Adaptation that stops once ``patience`` steps passed without a new best self-validation loss (or at the
    curve's end): ``(best step, steps run)``."""
    best = 0
    for t in range(1, curve.size):
        if curve[t] < curve[best]:
            best = t
        elif t - best >= patience:
            return best, t
    return best, curve.size - 1


def evaluate(json_path: Path, images: Path, horizon: int) -> tuple[dict, dict]:
    data = json.loads(json_path.read_text())
    seed = data["settings"]["seed"]
    table: dict[str, dict[str, float]] = {}
    base: dict[str, float] = {}
    for accel, rows in data["results"].items():
        for name, row in rows.items():
            key = f"{name} {accel}"
            base[key] = row["unadapted"]
            npz = np.load(images / f"{name}_{accel}_seed{seed}.npz")
            ref, imgs = npz["reference"], npz["images"].astype(np.float32)
            assert list(npz["steps"]) == list(range(imgs.shape[0])), "needs --every 1"
            curve = np.asarray(row["curve"])
            cache: dict[tuple[int, ...], float] = {}
            for rname, rule in rules(horizon).items():
                steps = tuple(rule(curve))
                if steps not in cache:
                    cache[steps] = float(volume_metrics(ref, imgs[list(steps)].mean(0, keepdims=True))["psnr"])
                table.setdefault(rname, {})[key] = cache[steps]
            table.setdefault("oracle (best state, not a rule)", {})[key] = max(row["psnr_at"].values())
    return table, base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", nargs="+", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--steps", type=int, default=80, help="horizon: the rules see steps 0..steps")
    p.add_argument("--cases", action="store_true", help="print the per-case PSNRs")
    p.add_argument("--paired", action="store_true", help="average each rule's picks over the --json runs")
    args = p.parse_args()
    if args.paired:
        paired([Path(j) for j in args.json], Path(args.images), args.steps)
        return
    results = [evaluate(Path(j), Path(args.images), args.steps) for j in args.json]
    print(f"horizon {args.steps}; per split seed: mean PSNR | worst case - unadapted VarNet (case)")
    for rname in results[0][0]:
        cells = []
        for table, base in results:
            vals = table[rname]
            worst = min(vals, key=lambda k: vals[k] - base[k])
            cells.append(f"{np.mean(list(vals.values())):6.2f} | {vals[worst] - base[worst]:+5.2f} ({worst.split()[0]})")
        print(f"{rname:55s} " + "   ".join(cells))
        if args.cases:
            for table, base in results:
                print("    " + ", ".join(f"{k.split()[0]} {v:.2f}" for k, v in table[rname].items()))



def paired(json_paths: list[Path], images: Path, horizon: int) -> None:
    """Average of the images that one rule picks on each split seed's trajectory (several adaptations of
    ``horizon`` steps each with other self-validation sets, their outputs averaged)."""
    runs = [json.loads(Path(j).read_text()) for j in json_paths]
    seeds = [r["settings"]["seed"] for r in runs]
    table: dict[str, dict[str, float]] = {}
    base: dict[str, float] = {}
    cost: dict[int, dict[str, int]] = {}
    for accel, rows in runs[0]["results"].items():
        for name, row in rows.items():
            key = f"{name} {accel}"
            base[key] = row["unadapted"]
            loaded = [np.load(images / f"{name}_{accel}_seed{s}.npz") for s in seeds]
            ref = loaded[0]["reference"]
            imgs = [d["images"].astype(np.float32) for d in loaded]
            curves = [np.asarray(r["results"][accel][name]["curve"]) for r in runs]
            for rname, rule in rules(horizon).items():
                picks = [im[rule(c)].mean(0) for im, c in zip(imgs, curves)]
                table.setdefault(rname, {})[key] = float(volume_metrics(ref, np.mean(picks, 0)[None])["psnr"])
            for patience in (5, 10, 20):  # steps run, summed over the runs
                cost.setdefault(patience, {})[key] = sum(early_stop(c[:horizon + 1], patience)[1] for c in curves)
    print(f"average over split seeds {seeds} of each one's pick, horizon {horizon} each:")
    for rname, vals in table.items():
        worst = min(vals, key=lambda k: vals[k] - base[k])
        extra = ""
        if rname.startswith("early stop"):
            steps = cost[int(rname.split()[-1])]
            extra = f"  steps run (all runs) mean {np.mean(list(steps.values())):.0f}, max {max(steps.values())}"
        print(f"{rname:55s} {np.mean(list(vals.values())):6.2f} | {vals[worst] - base[worst]:+5.2f} ({worst.split()[0]})"
              + extra)


if __name__ == "__main__":
    main()
