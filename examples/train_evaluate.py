"""Measure the bundled (or given) VarNet and MoDL weights against L1-wavelet and zero-filled (MODEL_CARD.md).

1. Held-out validation slab (``examples/train_make_data.py``: Colin 27 slices 76-101, never trained on) at 4x
   and 8x (fastMRI random column masks, centre fractions 0.08 / 0.04, seeded by file name): fastMRI's volume
   NMSE / PSNR / SSIM per file (data range = the file's ``max``), averaged over files.
   L1-wavelet is ``recon.solvers.cs.l1_wavelet`` (FISTA, db4, cycle spinning) with ESPIRiT maps from
   ``recon.coils.espirit_maps`` on the undersampled data (kernel 4, no eigenvalue crop: the default kernel 6
   with crop 0.8 fails with the 8 calibration lines of 8x, L1-wavelet PSNR 3.5 dB, and is no better at 4x),
   at its default lambda and at the other lambdas of a small sweep (the best one is an oracle choice on the
   validation data itself, to be fair to CS).
2. Inference time of VarNet on one 256 x 256, 8-coil slice with 2 threads (median of 5).
3. Data unlike the training data: the dipy T1 coronal slice (another subject, contrast and orientation;
   8 birdcage coils, SNR 30), an ISMRMRD Shepp-Logan phantom with the generator's own coil maps
   (``ismrmrd_generate_cartesian_shepp_logan``), and real k-space: the twixtools Skyra phantom ``gre.dat``
   (2 channels, fully sampled, retrospectively undersampled), each at 4x and 8x.

    python examples/train_evaluate.py DATA_DIR [VARNET.pt MODL.pt] [--json OUT.json] [--quick]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recon.io import read_raw
from recon.metrics import volume_metrics
from recon.sampling import apply_mask, mask_from_options
from recon.solvers.learned import load_model
from recon.solvers.zero_filled import rss_reconstruction

ACCELS = ((4, 0.08), (8, 0.04))
LAMBDAS = (0.001, 0.002, 0.01, 0.02)  # and None = the default, 0.005


def l1_wavelet_recons(kspace: np.ndarray, mask: np.ndarray, lambdas) -> dict:
    """``(S, C, H, W)`` masked k-space -> ``{lam: (S, H, W) magnitude}`` by recon's L1-wavelet, ESPIRiT maps."""
    from recon.coils import espirit_maps
    from recon.solvers.cs import l1_wavelet

    maps = espirit_maps(kspace, mask=mask, kernel_size=4, crop=0.0)
    out = {}
    for lam in lambdas:
        opts = {} if lam is None else {"lam": lam}
        out[lam] = np.abs(l1_wavelet(kspace, maps, mask, **opts).image.cpu().numpy())
    return out


def learned(model: torch.nn.Module, kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(kspace[s:s + 1]), torch.from_numpy(mask)).numpy()
                               for s in range(kspace.shape[0])])


def crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from recon.arrays import center_crop_or_pad

    return np.asarray(center_crop_or_pad(x, shape))


def evaluate_raw(raw, name: str, models: dict, lambdas, accels=ACCELS) -> dict:
    """Metrics of every method on one fully sampled RawData at each acceleration."""
    target = raw.reference if raw.reference is not None else rss_reconstruction(raw.kspace)
    maxval = float(raw.header.attrs.get("max", target.max()))
    out: dict = {}
    for accel, cf in accels:
        mask, _ = mask_from_options("random", raw.kspace.shape, [accel], [cf], name)
        k, used = apply_mask(raw.kspace, mask, raw.header)
        recs = {"zero-filled": rss_reconstruction(k, used)}
        for mname, model in models.items():
            t0 = time.perf_counter()
            recs[mname] = learned(model, k, used)
            out.setdefault(f"{accel}x", {}).setdefault("seconds", {})[mname] = time.perf_counter() - t0
        for lam, rec in l1_wavelet_recons(k, used, lambdas).items():
            recs[f"l1-wavelet(lam={lam if lam is not None else 'default'})"] = rec
        res = out.setdefault(f"{accel}x", {})
        for mname, rec in recs.items():
            res[mname] = volume_metrics(target, crop(rec, target.shape[-2:]), maxval=maxval)
    return out


def average(per_file: list[dict]) -> dict:
    avg: dict = {}
    for acc in per_file[0]:
        avg[acc] = {}
        for m in per_file[0][acc]:
            if m == "seconds":
                continue
            avg[acc][m] = {k: float(np.mean([f[acc][m][k] for f in per_file])) for k in ("nmse", "psnr", "ssim")}
    return avg


def simulated(image: np.ndarray, coils: int = 8, seed: int = 7):
    from recon.simulate import simulate_multicoil

    return simulate_multicoil(image[None].astype(np.float32), num_coils=coils, snr=30.0, seed=seed).raw


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("varnet", nargs="?", default=None)
    p.add_argument("modl", nargs="?", default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="default lambda only, 2 validation files")
    args = p.parse_args()
    from recon.weights import bundled_weights

    models = {"varnet": load_model(args.varnet or bundled_weights("varnet")),
              "modl": load_model(args.modl or bundled_weights("modl"))}
    lambdas = (None,) if args.quick else (None, *LAMBDAS)
    report: dict = {}

    files = sorted((args.data / "val").glob("*.h5"))[: 2 if args.quick else None]
    per_file = [evaluate_raw(read_raw(f), f.name, models, lambdas) for f in files]
    report["validation"] = average(per_file)
    report["validation_slices"] = int(sum(read_raw(f).kspace.shape[0] for f in files))

    torch.set_num_threads(2)
    t1 = np.load("/work/shared/data/images/t1_coronal_slice.npy").astype(np.float32)
    t1 = t1 / t1.max()
    raw = simulated(t1)
    k = torch.from_numpy(raw.kspace)
    m = torch.zeros(256, dtype=torch.bool)
    m[::4] = True
    m[118:138] = True
    times = []
    with torch.no_grad():
        for _ in range(6):
            t0 = time.perf_counter()
            models["varnet"](k, m)
            times.append(time.perf_counter() - t0)
    report["varnet_seconds_256x256_8coils_2threads"] = float(np.median(times[1:]))
    report["dipy_t1_coronal"] = evaluate_raw(raw, "t1_coronal_slice.npy", models, (None,))

    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "shepp.h5"
        subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-o", str(h5), "-m", "256", "-c", "8",
                        "-n", "0.05"], check=True, capture_output=True)
        sl = read_raw(h5)
        sl.reference = None
        report["mrd_shepp_logan"] = evaluate_raw(sl, "shepp.h5", models, (None,))
    gre = read_raw(Path(__file__).resolve().parents[1] / "tests" / "data" / "twix" / "gre.dat")
    gre.reference = None  # target: RSS of the fully sampled real k-space (2 channels, Skyra phantom)
    report["twix_gre_phantom_real_kspace"] = evaluate_raw(gre, "gre.dat", models, (None,))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
