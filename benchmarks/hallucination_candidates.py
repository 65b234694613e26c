"""Score truth-free hallucination-map candidates offline on ``benchmarks/hallucination.py --dump`` files (issue 14).

Each ``ACCELx_POS.npz`` holds one slice's posterior samples, fully sampled k-space, column mask and ESPIRiT maps.
The truth-based positives are those of the benchmark (object pixels of the truth where ``|P_null(mean - truth)|``
exceeds 10 % of the object's mean true intensity). Candidates (all truth-free unless named ``oracle``):

* the summary's maps: ``hallucination`` (current), ``null_spread``, ``std``, ``null_mean`` = ``|P_null mean|``;
* a second reconstruction of the same data, L1-wavelet and TV (:mod:`recon.solvers.cs` defaults):
  ``d_l1``/``d_tv`` = ``|P_null(mean - x)|``, ``samples_l1`` = ``RMS_k |P_null(x_k - x_L1)|``, ``null_l1`` =
  ``|P_null x_L1|``, local RMS over boxes (``_boxN``), Gaussian windows, intensity-normalised, and sums with the
  current map's energy (``cur+``);
* ``accq_*``: the null-space energy the mask leaves for an image with independent pixels of the mean's (or the L1
  image's) intensity, ``sum_j |P_null[i, j]|^2 |x_j|^2`` per readout row, and ``null_diag`` (white noise);
* ``rograd_*``/``rohp*``: structure along the fully sampled readout (derivative, high-pass) of the mean, the L1
  image and ``A^H y``;
* ``oracle_*``: the TRUE ``|h|`` seen only as its local RMS (the ceiling of a map at that resolution), and
  ``oracle_box5*MAP_pattern``: that 5 x 5 envelope times a truth-free map's pixel detail (the map over its own
  5 x 5 RMS; also its square root): above the envelope alone only if the map knows where inside a window the
  error is.

Mean AUC per acceleration over the chosen slices and each held-out set (positions in the benchmark's order):

    PYTHONPATH=. python benchmarks/hallucination.py DATA/test --accel 8 4 --slices 24 --lesions 0 --threads 1 \\
        --dump DUMP
    PYTHONPATH=. python benchmarks/hallucination_candidates.py DUMP --chosen 6-11 --held 0-5 12-23 [--json OUT]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d, uniform_filter

from recon.metrics.hallucination import null_space_error, roc_auc
from recon.operators import ifft2c
from recon.solvers.cs import l1_wavelet, total_variation
from recon.solvers.diffusion.method import slice_model
from recon.solvers.diffusion.uncertainty import (_column_mask, _row_bases, exact_null_component, object_mask,
                                                 summarise)


def null(data, x: np.ndarray) -> np.ndarray:
    return exact_null_component(data, torch.as_tensor(x)[None].to(torch.complex64))[0].numpy()


def rms(energy: np.ndarray, w) -> np.ndarray:
    return np.sqrt(np.maximum(uniform_filter(energy, size=w, mode="nearest"), 0.0))


def grms(energy: np.ndarray, sigma: float) -> np.ndarray:
    return np.sqrt(np.maximum(gaussian_filter(energy, sigma, mode="nearest"), 0.0))


def plus(energy: np.ndarray, other: np.ndarray, w: int) -> np.ndarray:
    """``sqrt(energy + box_w[other])``: the current map's energy plus another map's local energy."""
    return np.sqrt(np.maximum(energy + uniform_filter(other, w, mode="nearest"), 0.0))


def left_null_energy(data, power: np.ndarray) -> np.ndarray:
    """``sum_j |P_null[i, j]|^2 power_j`` per readout row: the null-space energy of independent pixels."""
    h, w = power.shape
    out = power.astype(np.float64).copy()
    for i, basis in enumerate(_row_bases(data, _column_mask(data.op.mask, h, w), 1e-6)):
        if basis is not None:
            sup, vr = basis[0].numpy(), basis[1].resolve_conj().numpy()
            out[i, sup] = power[i, sup] @ np.abs(np.eye(len(sup)) - vr.T @ vr.conj()) ** 2
    return out


def readout_maps(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    grad = np.abs(np.diff(x, axis=0, append=x[-1:])) ** 2
    out = {f"rograd_{name}_box{w}": rms(grad, w) for w in (3, 5, 9)}
    for s in (1, 2):
        low = gaussian_filter1d(x.real, s, axis=0) + 1j * gaussian_filter1d(x.imag, s, axis=0)
        out[f"rohp{s}_{name}_box5"] = rms(np.abs(x - low) ** 2, 5)
    return out


def second_reconstruction_maps(data, summ, samples: np.ndarray, l1: np.ndarray, tv: np.ndarray) -> dict:
    mean = summ.mean_complex
    d_l1, d_tv, n_l1 = np.abs(null(data, mean - l1)), np.abs(null(data, mean - tv)), np.abs(null(data, l1))
    s_l1 = np.sqrt(np.mean([np.abs(null(data, x - l1)) ** 2 for x in samples], 0))
    c = {"d_l1": d_l1, "d_tv": d_tv, "d_l1_tv": np.abs(null(data, l1 - tv)), "null_l1": n_l1, "samples_l1": s_l1}
    for w in (3, 5, 9, 13):
        c |= {f"d_l1_box{w}": rms(d_l1 ** 2, w), f"d_tv_box{w}": rms(d_tv ** 2, w),
              f"d_l1tv_box{w}": rms((d_l1 ** 2 + d_tv ** 2) / 2, w), f"samples_l1_box{w}": rms(s_l1 ** 2, w),
              f"null_l1_box{w}": rms(n_l1 ** 2, w)}
    c |= {"null_l1_box21": rms(n_l1 ** 2, 21), "null_l1_gauss3": grms(n_l1 ** 2, 3),
          "null_l1_gauss5": grms(n_l1 ** 2, 5), "null_tv_box9": rms(np.abs(null(data, tv)) ** 2, 9)}
    level = float(summ.mean[object_mask(summ.mean)].mean())
    cur = (summ.hallucination.astype(np.float64) * level) ** 2
    for w in (5, 9):
        c |= {f"cur+d_l1_box{w}": plus(cur, d_l1 ** 2, w),
              f"cur+d_l1tv_box{w}": plus(cur, (d_l1 ** 2 + d_tv ** 2) / 2, w),
              f"cur+samples_l1_box{w}": plus(cur, s_l1 ** 2, w)}
    for w in (9, 13):
        c |= {f"cur+null_l1_box{w}": plus(cur, n_l1 ** 2, w),
              f"null_mean_box{w}": rms(summ.null ** 2, w),
              f"null_l1_norm_box{w}": rms(n_l1 ** 2, w) / np.maximum(rms(np.abs(l1) ** 2, w), 1e-12)}
    wn = left_null_energy(data, np.abs(mean) ** 2)
    c |= {"accq_null_mean2_box5": rms(wn, 5), "accq_null_l1sq_box5": rms(left_null_energy(data, np.abs(l1) ** 2), 5),
          "null_diag": left_null_energy(data, np.ones(mean.shape)), "cur+accq_box5": plus(cur, wn, 5)}
    return c


def candidates(d: dict) -> tuple[dict[str, float], float]:
    """Each candidate's ROC AUC on one dumped slice, and the fraction of the object that is positive."""
    k, mask, maps = d["k"], d["mask"], torch.from_numpy(d["maps"])
    ku = torch.from_numpy(np.ascontiguousarray(k * mask[None, None, :]))
    data = slice_model(ku, mask, maps)
    summ = summarise(torch.from_numpy(d["samples"]), data)
    truth = (maps.conj() * ifft2c(torch.from_numpy(k))).sum(0)
    h = null_space_error(data, torch.from_numpy(summ.mean_complex), truth).abs().numpy().astype(np.float64)
    tmag = truth.abs().numpy()
    obj = object_mask(tmag)
    labels = (h > 0.1 * float(tmag[obj].mean()))[obj]
    l1 = l1_wavelet(ku[None], maps[None], mask).image[0].numpy()
    tv = total_variation(ku[None], maps[None], mask).image[0].numpy()
    c = {"hallucination": summ.hallucination, "null_spread": summ.null_spread, "std": summ.std,
         "null_mean": summ.null, "mean_mag": summ.mean}
    c |= second_reconstruction_maps(data, summ, d["samples"], l1, tv)
    for name, x in (("mean", summ.mean_complex), ("l1", l1), ("aty", data.aty.numpy())):
        c |= readout_maps(name, x)
    c |= {f"oracle_box{w}": rms(h ** 2, w) for w in (3, 5, 9, 13)}
    c |= {"oracle_gauss1": grms(h ** 2, 1), "oracle_gauss2": grms(h ** 2, 2)}
    for name in ("null_spread", "null_mean", "d_l1", "null_l1", "samples_l1"):  # pixel detail of a truth-free map
        pattern = np.asarray(c[name], np.float64) / np.maximum(rms(np.asarray(c[name], np.float64) ** 2, 5), 1e-12)
        c |= {f"oracle_box5*{name}_pattern": c["oracle_box5"] * pattern,
              f"oracle_box5*sqrt({name}_pattern)": c["oracle_box5"] * np.sqrt(pattern)}
    return {n: roc_auc(np.asarray(v)[obj], labels) for n, v in c.items()}, float(labels.mean())


def positions(spec: str) -> list[int]:
    a, _, b = spec.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", type=Path)
    ap.add_argument("--chosen", default="6-11")
    ap.add_argument("--held", nargs="+", default=["0-5", "12-23"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sets = {f"chosen {a.chosen}": positions(a.chosen)} | {f"held {s}": positions(s) for s in a.held}
    per_slice: dict[str, dict[str, float]] = {}
    for f in sorted(a.dump.glob("*x_*.npz")):
        if int(f.stem.split("_")[1]) in {p for v in sets.values() for p in v}:
            aucs, pos = candidates(dict(np.load(f)))
            per_slice[f.stem] = {"positive_fraction": pos, **aucs}
            print(f"{f.stem}: positives {pos:.3f}, hallucination {aucs['hallucination']:.3f}", flush=True)
    accels = sorted({s.split("x_")[0] for s in per_slice}, key=int)
    cols = [(acc, name, idx) for acc in accels for name, idx in sets.items()]
    table = {}
    for n in next(iter(per_slice.values())):
        vals = [[per_slice[f"{acc}x_{i:02d}"][n] for i in idx if f"{acc}x_{i:02d}" in per_slice]
                for acc, _, idx in cols]
        table[n] = [float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for v in vals]
    key = next((j for j, (acc, name, _) in enumerate(cols) if acc == accels[-1] and name.startswith("chosen")), 0)
    print(f"{'candidate':28s} " + " ".join(f"{acc + 'x ' + name:>16s}" for acc, name, _ in cols))
    for n, v in sorted(table.items(), key=lambda t: -np.nan_to_num(t[1][key])):
        print(f"{n:28s} " + " ".join(f"{x:16.3f}" for x in v))
    if a.json:
        a.json.write_text(json.dumps({"slices": per_slice, "mean": table, "columns": [c[:2] for c in cols]}, indent=1))


if __name__ == "__main__":
    main()
