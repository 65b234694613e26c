"""The bundled VarNet and MoDL against zero-filled and L1-wavelet on the real twix files, and why they lose.

Inputs: ``tests/data/twix/gre.dat`` (2 channels, 160 x 160, readout oversampling removed by the reader, a
phantom filling the field of view) and ``pulseq_vb_gre.dat`` (1 channel, 256 x 256, a phantom with vials).
Each fully sampled slice is undersampled with fastMRI random masks (4x, centre fraction 0.08), seeded by the
file name (what ``recon run --accel 4`` uses) and by 0..3; PSNR (dB) against the fully sampled RSS on fastMRI's
crop, as ``recon run`` reports it. Rows:

* zero-filled, L1-wavelet (``recon.reconstruct``, ESPIRiT maps), VarNet and MoDL with their learned maps;
* VarNet and MoDL given the same ESPIRiT maps as L1-wavelet (are the learned maps the problem?);
* controls: each file's fully sampled RSS image re-simulated with its own channel count and with 8 birdcage
  coils (SNR 30): the image content with the coils the networks were trained on (are the real coils the
  problem?).

Usage: ``python benchmarks/learned_real.py [--threads 1]``
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TWIX = ROOT / "tests" / "data" / "twix"


def scores(kspace: np.ndarray, header, name: str) -> dict[str, float]:
    """Mean PSNR over the masks of ``(1, C, H, W)`` fully sampled k-space, per method."""
    import torch

    from recon import reconstruct
    from recon.arrays import center_crop_or_pad, rss
    from recon.io.fourier import ifft2c
    from recon.metrics.reference import reference_metrics
    from recon.sampling import apply_mask, mask_from_options
    from recon.solvers.learned.method import get_model
    from recon.solvers.zero_filled import rss_reconstruction

    crop = header.recon_size
    ref = center_crop_or_pad(rss(ifft2c(kspace), axis=1), crop).astype(np.float32)
    out: dict[str, list[float]] = {}
    for seed in (name, 0, 1, 2, 3):
        mask, _ = mask_from_options("random", kspace.shape, [4], [0.08], seed)
        k, used = apply_mask(kspace, mask, header)
        kt, mt = torch.from_numpy(k), torch.from_numpy(used)
        l1 = reconstruct(k, "l1-wavelet", mask=used)
        res = {"zero-filled": rss_reconstruction(k, used), "l1-wavelet": np.asarray(l1.image)}
        with torch.no_grad():
            for model in ("varnet", "modl"):
                net = get_model(model)
                res[model] = net(kt, mt).numpy()
                res[f"{model} + ESPIRiT maps"] = net(kt, mt, maps=torch.as_tensor(l1.maps)).numpy()
        for method, image in res.items():
            out.setdefault(method, []).append(reference_metrics(center_crop_or_pad(image, crop), [ref])["psnr"])
    return {method: float(np.mean(v)) for method, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from recon.app.runtime import configure_threads

    configure_threads(args.threads)
    from recon.io import read_raw
    from recon.arrays import center_crop_or_pad, rss
    from recon.io.fourier import ifft2c
    from recon.simulate import simulate_multicoil

    rows: dict[str, dict[str, float]] = {}
    for fname in ("gre.dat", "pulseq_vb_gre.dat"):
        raw = read_raw(TWIX / fname)
        rows[f"{fname} ({raw.kspace.shape[1]} ch, real)"] = scores(raw.kspace, raw.header, fname)
        image = center_crop_or_pad(rss(ifft2c(raw.kspace), axis=1), raw.header.recon_size)
        for coils in sorted({raw.kspace.shape[1], 8}):
            sim = simulate_multicoil(image, num_coils=coils, snr=30.0, seed=0).raw
            rows[f"{fname} image, {coils} simulated coils"] = scores(sim.kspace, sim.header, fname)
    methods = list(next(iter(rows.values())))
    print("| input (4x, mean of 5 masks) | " + " | ".join(methods) + " |")
    print("|---|" + "---:|" * len(methods))
    for label, row in rows.items():
        print(f"| {label} | " + " | ".join(f"{row[m]:.2f}" for m in methods) + " |")


if __name__ == "__main__":
    main()
