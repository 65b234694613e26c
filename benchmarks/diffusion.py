"""Diffusion posterior sampling (issue 7): quality, calibration and speed, printed as tables.

1. Quality and calibration on held-out slices at 8x (fastMRI ``random`` column mask, centre fraction 0.04,
   mask seed fixed, ``--seed``): fastMRI volume PSNR / SSIM (data range = the volume's max) of zero-filled,
   L1-wavelet (``recon.reconstruct(..., method="l1-wavelet")``, default lambda), the bundled VarNet and the
   diffusion posterior mean (``--samples`` K, default 8); for the diffusion samples the Spearman correlation
   of the std map with ``|mean - truth|`` and the coverage of ``truth`` by ``mean +- 2 std``, both inside the
   object of the truth (pixels above 10 % of its 99th percentile; per slice, then averaged). Data: the
   bundled sample (slices 80/88/96 of the held-out Colin 27 slab) and any fully sampled fastMRI files given
   with ``--data DIR`` (e.g. the validation folder of ``examples/train_make_data.py``).
2. Speed: one 256 x 256, 8-coil slice with 8 samples (torch ``--threads``, default 2), the default DDS
   schedule end to end (ESPIRiT, sampling, summary), and the same sampler with a score-MRI-style 1000-step
   schedule as the anchor (timed over ``--anchor-steps`` steps and extrapolated linearly; said so in the
   output).

    .venv/bin/python benchmarks/diffusion.py [--samples 8] [--steps 30] [--data DIR] [--weights PRIOR.pt]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from recon.io import read_raw
from recon.arrays import center_crop_or_pad
from recon.metrics import volume_metrics
from recon.sampling import apply_mask, mask_from_options


def diffusion_recon(kspace: np.ndarray, mask: np.ndarray, prior, samples: int, steps: int | None, sampler: str,
                    seed: int, **opts) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per slice of ``(S, C, H, W)``: (mean magnitudes (S, H, W), std (S, H, W), complex samples per slice)."""
    from recon.solvers.diffusion.method import posterior_sample, slice_model
    from recon.solvers.diffusion.uncertainty import summarise

    means, stds, all_samples = [], [], []
    for s in range(kspace.shape[0]):
        data = slice_model(torch.from_numpy(np.ascontiguousarray(kspace[s])), mask)
        x, _ = posterior_sample(data, prior, samples=samples, sampler=sampler, steps=steps, seed=seed + s, **opts)
        summ = summarise(x, None)
        means.append(summ.mean)
        stds.append(summ.std)
        all_samples.append(x.numpy())
    return np.stack(means), np.stack(stds), all_samples


def calibration(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean over slices of (Spearman(std, |error|), coverage of truth by mean +- 2 std), inside the object."""
    from recon.solvers.diffusion.uncertainty import coverage, spearman_std_error

    rho = [spearman_std_error(std[i], mean[i], truth[i]) for i in range(truth.shape[0])]
    cov = [coverage(std[i], mean[i], truth[i]) for i in range(truth.shape[0])]
    return float(np.mean(rho)), float(np.mean(cov))


def evaluate_file(path: Path, args, prior, varnet) -> dict:
    from recon import reconstruct
    from recon.solvers.zero_filled import rss_reconstruction

    raw = read_raw(path)
    size = raw.header.recon_size
    truth = np.asarray(center_crop_or_pad(raw.reference, size)) if raw.reference is not None else \
        np.asarray(center_crop_or_pad(rss_reconstruction(raw.kspace), size))
    maxval = float((raw.header.attrs or {}).get("max", truth.max()))
    mask, _ = mask_from_options("random", raw.kspace.shape, [8], [0.04], args.seed)
    k, used = apply_mask(raw.kspace, mask, raw.header)
    col = np.asarray(used, dtype=bool)  # (W,) column mask
    recs, secs = {}, {}
    t0 = time.perf_counter()
    recs["zero-filled"] = rss_reconstruction(k, used)
    secs["zero-filled"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs["l1-wavelet"] = reconstruct(k, "l1-wavelet", mask=used).image
    secs["l1-wavelet"] = time.perf_counter() - t0
    if varnet is not None:
        t0 = time.perf_counter()
        with torch.no_grad():
            recs["varnet"] = np.concatenate([varnet(torch.from_numpy(k[s:s + 1]), torch.from_numpy(col)).numpy()
                                             for s in range(k.shape[0])])
        secs["varnet"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, std, _ = diffusion_recon(k, col, prior, args.samples, args.steps, args.sampler, args.sample_seed,
                                   **({"gamma": args.gamma} if args.gamma is not None else {}))
    secs["diffusion"] = time.perf_counter() - t0
    recs["diffusion"] = mean
    out = {"file": path.name, "slices": int(k.shape[0]), "methods": {}}
    for name, rec in recs.items():
        rec_c = np.asarray(center_crop_or_pad(np.asarray(rec, dtype=np.float32), size))
        m = volume_metrics(truth, rec_c, maxval)
        out["methods"][name] = {"psnr": float(m["psnr"]), "ssim": float(m["ssim"]), "seconds": secs[name]}
    rho, cov = calibration(np.asarray(center_crop_or_pad(mean, size)), np.asarray(center_crop_or_pad(std, size)), truth)
    out["spearman"], out["coverage"] = rho, cov
    return out


def synthetic_slice(n: int = 256, coils: int = 8):
    """One 256 x 256, 8-coil slice simulated from Colin 27 (fully sampled), with its 8x column mask."""
    from recon.simulate import load_colin27, simulate_multicoil

    img = load_colin27([88], shape=(n, n))
    sim = simulate_multicoil(img, num_coils=coils, snr=30.0, seed=0)
    mask, _ = mask_from_options("random", sim.raw.kspace.shape, [8], [0.04], 0)
    k, used = apply_mask(sim.raw.kspace, mask, sim.raw.header)
    return k[0], np.asarray(used, dtype=bool).reshape(-1)


def timing(args, prior) -> dict:
    from recon.solvers.diffusion.method import DEFAULT_STEPS, posterior_sample, slice_model
    from recon.solvers.diffusion.uncertainty import summarise

    kspace, mask = synthetic_slice()
    steps = args.steps or DEFAULT_STEPS[args.sampler]
    k = torch.from_numpy(np.ascontiguousarray(kspace))
    t0 = time.perf_counter()
    data = slice_model(k, mask)
    x, _ = posterior_sample(data, prior, samples=8, sampler=args.sampler, steps=steps, seed=0)
    summarise(x, data)
    full = time.perf_counter() - t0
    # the anchor: the same sampler with a 1000-step schedule, timed over a few steps and extrapolated
    t0 = time.perf_counter()
    posterior_sample(data, prior, samples=8, sampler=args.sampler, steps=args.anchor_steps, seed=0)
    per_step = (time.perf_counter() - t0) / args.anchor_steps
    return {"shape": list(kspace.shape), "samples": 8, "steps": steps, "seconds": full,
            "anchor_steps_timed": args.anchor_steps, "anchor_seconds_per_step": per_step,
            "anchor_1000_steps_seconds_extrapolated": per_step * 1000, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--sampler", choices=("dds", "dps"), default="dds")
    p.add_argument("--gamma", type=float, default=None, help="DDS gamma (default: the sampler's)")
    p.add_argument("--seed", type=int, default=0, help="mask seed")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=None, help="folder of held-out fully sampled fastMRI files")
    p.add_argument("--limit", type=int, default=None, help="at most this many files from --data")
    p.add_argument("--weights", default=None, help="diffusion prior (default: bundled)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--anchor-steps", type=int, default=5)
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import recon.data
    from recon.solvers.diffusion.method import get_prior
    from recon.solvers.learned.method import get_model

    prior = get_prior(args.weights)
    try:
        varnet = get_model("varnet")
    except Exception as exc:  # noqa: BLE001 - a table without VarNet is still useful
        print(f"(no VarNet: {exc})")
        varnet = None
    files = [recon.data.sample_path()]
    if args.data is not None:
        files += sorted(args.data.glob("*.h5"))[: args.limit]
    results = [evaluate_file(f, args, prior, varnet) for f in files]

    names = list(results[0]["methods"])
    print(f"\n8x random mask (centre 0.04, mask seed {args.seed}); diffusion: {args.sampler}, "
          f"{args.samples} samples, steps {args.steps or 'default'}")
    print("| file | " + " | ".join(f"{n} PSNR / SSIM" for n in names) + " | Spearman | coverage +-2 std |")
    print("|---|" + "---:|" * (len(names) + 2))
    for r in results:
        cells = [f"{r['methods'][n]['psnr']:.2f} / {r['methods'][n]['ssim']:.4f}" for n in names]
        print(f"| {r['file']} | " + " | ".join(cells) + f" | {r['spearman']:.3f} | {r['coverage']:.3f} |")
    if len(results) > 1:
        cells = [f"{np.mean([r['methods'][n]['psnr'] for r in results]):.2f} / "
                 f"{np.mean([r['methods'][n]['ssim'] for r in results]):.4f}" for n in names]
        print("| mean | " + " | ".join(cells) + f" | {np.mean([r['spearman'] for r in results]):.3f} | "
              f"{np.mean([r['coverage'] for r in results]):.3f} |")
    print("seconds per file: " + ", ".join(
        f"{n} {np.mean([r['methods'][n]['seconds'] for r in results]):.1f}" for n in names))
    out = {"results": results}
    if not args.no_timing:
        t = timing(args, prior)
        out["timing"] = t
        print(f"\nspeed, one 256x256 8-coil slice, 8 samples, {t['threads']} threads: {t['steps']} steps "
              f"{t['seconds']:.1f} s (ESPIRiT + sampling + maps); 1000-step anchor: "
              f"{t['anchor_seconds_per_step']:.2f} s/step x 1000 = {t['anchor_1000_steps_seconds_extrapolated']:.0f} s "
              f"(extrapolated from {t['anchor_steps_timed']} timed steps)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
