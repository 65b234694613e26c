"""Hallucination validation (issue 14): recon's truth-free ``hallucination`` map vs the truth-based one.

For each test slice with a fully sampled reference (fastMRI layout; e.g. ``examples/calibration_make_data.py``'s
``test`` folder, slices never used for calibration or training):

1. Undersample (fastMRI ``random`` column mask, ``--accel``, fastMRI's centre fraction), ESPIRiT maps from
   the centre, diffusion posterior samples (``--samples``, default steps) and their summary, exactly as
   ``recon run --method diffusion`` does.
2. The truth ``x = sum_c conj(S_c) ifft2c(k_c)`` of the FULLY sampled k-space with the same maps, and the
   truth-based hallucination ``h = P_null (xbar - x)`` (Bhadra et al., IEEE TMI 2021; the exact row-wise
   projection of :func:`recon.metrics.hallucination.exact_null_component`).
3. Positives: object pixels (of the truth) where ``|h|`` exceeds ``--level`` (default 0.1) x the object's
   mean true intensity (columns ``auc_*``; a slice with no positives gives NaN and is left out of the means);
   and, second, the top ``--top`` (default 0.1) fraction of the object's pixels by ``|h|`` (``auc_*_top``). Scores: ROC AUC over the object pixels of recon's ``hallucination`` map, of its
   ``null_spread`` map (the samples' null-space spread), and for comparison of the std map, ``|P_null xbar|`` and
   the map recon used before (``ratio``: ``|P_null xbar| / (spread + noise)``); the fraction of object pixels
   flagged at the default threshold (``HALLUCINATION_THRESHOLD``), and the fraction of those that are positives
   (precision) and of positives flagged (recall).
4. Lesion test (``--lesions`` slices): a disk of radius 3 px and contrast ``+0.5`` x the object's mean
   intensity (same phase as the truth there) added to the truth's k-space through the maps; undersampled,
   reconstructed with the same seed; reported: the fraction of the inserted contrast the posterior mean keeps,
   and the mean std / hallucination inside the lesion relative to the object's (1 = no special warning).

    PYTHONPATH=. python benchmarks/hallucination.py DATA_DIR [--accel 4 8] [--slices 8] [--first 0] [--samples 4]
        [--dump DIR]

Column ``auc_ceiling``: the AUC of an oracle that knows ``|h|`` but only as its 5 x 5 local RMS
(:func:`recon.metrics.hallucination.local_detector_ceiling`), the best a map at the ``hallucination`` map's
resolution can reach.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def slices_of(folder: Path, limit: int) -> list[tuple[Path, int]]:
    """``(file, slice index)`` pairs, the middle slice of each file, interleaved over the sources (file name
    prefixes before the last ``_``) so that every source is represented, then further slices likewise."""
    from recon.io import open_raw

    groups: dict[str, list[list[tuple[Path, int]]]] = {}
    for p in sorted(folder.glob("*.h5")):
        with open_raw(p) as rf:
            n = rf.num_slices
        order = sorted(range(n), key=lambda i: abs(i - (n - 1) / 2))
        groups.setdefault(p.stem.rsplit("_", 1)[0], []).append([(p, i) for i in order])
    queues = [[item for rnd in zip(*[f + [None] * (max(map(len, g)) - len(f)) for f in g]) for item in rnd
               if item is not None] for g in groups.values()]
    out: list[tuple[Path, int]] = []
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def run_slice(kspace: np.ndarray, mask: np.ndarray, prior, samples: int, seed: int):
    """Summary, model and samples ``(K, H, W)`` of one slice ``(C, H, W)`` undersampled by ``mask`` ``(W,)``."""
    from recon.solvers.diffusion.method import posterior_sample, slice_model
    from recon.solvers.diffusion.uncertainty import noise_level, summarise

    ku = kspace * mask[None, None, :]
    data = slice_model(torch.from_numpy(np.ascontiguousarray(ku)), mask)
    x, _ = posterior_sample(data, prior, samples=samples, seed=seed)
    summ = summarise(x, data, noise=noise_level(ku, mask))
    return summ, data, x


def disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def main() -> None:
    from recon.io import open_raw
    from recon.metrics.hallucination import detection_auc, local_detector_ceiling, null_space_error, roc_auc
    from recon.operators import fft2c, ifft2c
    from recon.sampling import mask_from_options
    from recon.solvers.diffusion.method import get_prior
    from recon.solvers.diffusion.uncertainty import HALLUCINATION_THRESHOLD, HALLUCINATION_WINDOW, object_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--accel", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--first", type=int, default=0, help="skip this many slices of the order (issue 14 chose maps on "
                    "--first 6 --slices 6 and reports --first 0 --slices 6 and --first 12 --slices 12); seeds follow "
                    "the position in the order, so a slice gets the same samples whatever --first")
    ap.add_argument("--dump", type=Path, default=None, help="write ACCELx_POS.npz per slice (samples, k-space, mask, "
                    "maps) to score other truth-free maps offline without sampling again")
    ap.add_argument("--lesions", type=int, default=2, help="slices per acceleration for the lesion test")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--level", type=float, default=0.1)
    ap.add_argument("--top", type=float, default=0.1, help="second positive set: this top fraction of |h|")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    prior = get_prior(None, "cpu")
    results = {}
    for accel in a.accel:
        rows, lesion_rows = [], []
        t0 = time.perf_counter()
        for j, (path, s) in enumerate(slices_of(a.data, a.first + a.slices)):
            if j < a.first:
                continue
            with open_raw(path) as rf:
                raw = rf.read_slices(s)
            k = np.asarray(raw.kspace[0], np.complex64)
            mask, _ = mask_from_options("random", k.shape[-2:], [accel], [{4: 0.08, 8: 0.04}.get(accel, 0.32 / accel)],
                                        path.name)
            mask = np.asarray(mask, bool).reshape(-1)
            summ, data, samples = run_slice(k, mask, prior, a.samples, seed=j)
            maps = data.op.maps
            if a.dump:
                a.dump.mkdir(parents=True, exist_ok=True)
                np.savez(a.dump / f"{accel}x_{j:02d}.npz", samples=samples.numpy(), k=k, mask=mask,
                         maps=maps.numpy(), fname=np.array(path.name), sl=s)
            truth = (maps.conj() * ifft2c(torch.from_numpy(k))).sum(0)
            h = null_space_error(data, torch.from_numpy(summ.mean_complex), truth).abs().numpy()
            tmag = truth.abs().numpy()
            obj = object_mask(tmag)
            level = float(tmag[obj].mean())
            auc, pos = detection_auc(summ.hallucination, h, obj, level, a.level)
            labels = (h > a.level * level)[obj]
            flagged = (summ.hallucination > HALLUCINATION_THRESHOLD)[obj]
            top = obj & (h >= np.quantile(h[obj], 1 - a.top))  # the top decile of |h| in the object
            rows.append({
                "file": path.name, "slice": s, "auc_hallucination": auc,
                "auc_ceiling": local_detector_ceiling(h, obj, level, a.level, HALLUCINATION_WINDOW),
                "auc_hallucination_top": roc_auc(summ.hallucination[obj], top[obj]),
                "auc_null_spread_top": roc_auc(summ.null_spread[obj], top[obj]),
                "auc_std_top": roc_auc(summ.std[obj], top[obj]),
                "auc_null_spread": roc_auc(summ.null_spread[obj], labels),
                "auc_std": roc_auc(summ.std[obj], labels), "auc_null_mean": roc_auc(summ.null[obj], labels),
                "auc_ratio": roc_auc((summ.null / (summ.spread + max(summ.noise, 1e-12)))[obj], labels),
                "positive_fraction": pos, "flagged_fraction": float(flagged.mean()),
                "precision": float(labels[flagged].mean()) if flagged.any() else float("nan"),
                "recall": float(flagged[labels].mean()) if labels.any() else float("nan"),
            })
            if j - a.first < a.lesions:
                # lesion inside the object, at the object pixel nearest the object's centroid
                ys, xs = np.nonzero(obj)
                c = (int(np.round(ys.mean())), int(np.round(xs.mean())))
                d = np.hypot(ys - c[0], xs - c[1])
                c = (int(ys[d.argmin()]), int(xs[d.argmin()]))
                les = disk(tmag.shape, c, 3.0)
                phase = torch.exp(1j * torch.angle(truth))
                lesion_img = torch.from_numpy(les.astype(np.float32)) * (0.5 * level) * phase
                k2 = k + fft2c(maps * lesion_img).numpy().astype(np.complex64)
                summ2, _, _ = run_slice(k2, mask, prior, a.samples, seed=j)
                kept = float((summ2.mean[les] - summ.mean[les]).mean() / (0.5 * level))
                lesion_rows.append({
                    "file": path.name, "slice": s, "contrast_kept": kept,
                    "std_lesion_vs_object": float(summ2.std[les].mean() / summ2.std[obj].mean()),
                    "hallucination_lesion_vs_object": float(summ2.hallucination[les].mean()
                                                            / summ2.hallucination[obj].mean()),
                    "flagged_in_lesion": float((summ2.hallucination[les] > HALLUCINATION_THRESHOLD).mean()),
                })
            r = rows[-1]
            print(f"{accel}x #{j} {path.name}[{s}]: AUC hallucination {r['auc_hallucination']:.3f} (5x5 oracle "
                  f"{r['auc_ceiling']:.3f}) std "
                  f"{r['auc_std']:.3f} null_spread {r['auc_null_spread']:.3f} |P_null mean| {r['auc_null_mean']:.3f} ratio {r['auc_ratio']:.3f}; positives {r['positive_fraction']:.3f}, "
                  f"flagged {r['flagged_fraction']:.3f}; top-{a.top:g} AUC hallucination {r['auc_hallucination_top']:.3f} "
                  f"null_spread {r['auc_null_spread_top']:.3f} std {r['auc_std_top']:.3f}", flush=True)
        summary = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k not in ("file", "slice")}
        summary["auc_hallucination_min"] = float(np.nanmin([r["auc_hallucination"] for r in rows]))
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        les_summary = ({k: float(np.mean([r[k] for r in lesion_rows])) for k in lesion_rows[0]
                        if k not in ("file", "slice")} if lesion_rows else {})
        results[f"{accel}x"] = {"slices": rows, "mean": summary, "lesions": lesion_rows, "lesion_mean": les_summary}
        print(f"== {accel}x, {len(rows)} slices: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
        if les_summary:
            print(f"== {accel}x lesion test ({len(lesion_rows)} slices): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in les_summary.items()))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
