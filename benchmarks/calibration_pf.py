"""Reference-line GRAPPA and partial-Fourier completion on files derived from the real gre.dat (issue 15).

    PYTHONPATH=. python benchmarks/calibration_pf.py [--out DIR]

Writes derived twix files (``recon.io.twix_derive``) and prints NRMSE against the fully sampled image
(RSS of the original file, centre-cropped to the recon matrix):

* GRAPPA with separate / integrated reference lines (24 lines) at R=2, 3; beside it GRAPPA calibrated on the
  same lines taken from the fully sampled data in memory, and the figure before reference lines were read
  (separate: GRAPPA refuses, the fallback is zero-filled; integrated: the lines were already image lines);
* partial Fourier 5/8, 6/8, 7/8 in phase encode and readout: zero-filled, POCS, homodyne (readout: against the
  full image with the readout oversampling kept, as the asymmetric-echo file is read), and the share of the
  removed k-space energy that is noise (estimated from the k-space corners): gre.dat is a 2-coil phantom
  scan whose outer k-space is mostly noise, which no completion can recover;
* the same completion on a high-SNR simulation made from gre.dat's image (its magnitude, 8 simulated coils,
  a smooth phase, SNR 100; ``recon.simulate``), where the removed part holds signal.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from recon.io import open_raw
from recon.arrays import center_crop_or_pad
from recon.io.twix_derive import derive_partial_fourier, derive_pat, pat_lines
from recon.io.types import RawData
from recon.solvers.partial_fourier import partial_fourier_method
from recon.solvers.reconstruct import reconstruct

GRE = Path(__file__).resolve().parents[1] / "tests" / "data" / "twix" / "gre.dat"


def nrmse(ref: np.ndarray, x: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def full_image(raw: RawData) -> np.ndarray:
    return center_crop_or_pad(reconstruct(raw, "zero-filled").image, raw.header.recon_size)


def grappa_rows(out: Path, full: RawData, ref: np.ndarray, n_ref: int = 24) -> list[dict]:
    rows = []
    crop = full.header.recon_size
    w = full.kspace.shape[-1]
    for accel in (2, 3):
        imaging, lines = pat_lines(w, w // 2, accel, n_ref)
        for mode in ("separate", "integrated"):
            path = derive_pat(GRE, out / f"gre_R{accel}_{mode}.dat", accel, n_ref, mode)
            raw = open_raw(path).read()
            ours = nrmse(ref, center_crop_or_pad(reconstruct(raw, "grappa").image, crop))
            image_lines = imaging if mode == "separate" else imaging | lines
            k = full.kspace * image_lines
            cal = full.kspace * lines
            oracle_raw = RawData(k, full.header, image_lines, calibration=cal, calibration_mask=lines)
            oracle = nrmse(ref, center_crop_or_pad(reconstruct(oracle_raw, "grappa").image, crop))
            before_raw = RawData(raw.kspace, raw.header, raw.mask)  # reference lines ignored
            try:
                before = nrmse(ref, center_crop_or_pad(reconstruct(before_raw, "grappa").image, crop))
                before_note = "grappa"
            except Exception as exc:  # no ACS in the image lines
                before = nrmse(ref, center_crop_or_pad(reconstruct(before_raw, "zero-filled").image, crop))
                before_note = f"grappa refused ({type(exc).__name__}); zero-filled"
            rows.append({"R": accel, "mode": mode, "grappa_nrmse": round(ours, 4),
                         "oracle_nrmse": round(oracle, 4), "ratio": round(ours / oracle, 3),
                         "before_nrmse": round(before, 4), "before": before_note})
    return rows


def noise_share(k: np.ndarray, removed: np.ndarray) -> float:
    """Share of the energy in ``k[..., removed]`` that is noise (noise power from the four 10x10 corners)."""
    corners = np.concatenate([k[..., a, b].ravel() for a in (slice(0, 10), slice(-10, None))
                              for b in (slice(0, 10), slice(-10, None))])
    return float(np.mean(np.abs(corners) ** 2) * k[..., removed].size / (np.abs(k[..., removed]) ** 2).sum())


def pf_rows(out: Path, ref: np.ndarray, crop: tuple[int, int]) -> list[dict]:
    from recon.io.twix import open_twix

    rows = []
    full = open_raw(GRE).read().kspace
    ref_os = full_image(open_twix(GRE, remove_oversampling=False).read())  # the asymmetric echo keeps it
    for axis in ("phase", "readout"):
        for frac, name in ((0.625, "5/8"), (0.75, "6/8"), (0.875, "7/8")):
            path = derive_partial_fourier(GRE, out / f"gre_pf_{axis}_{name.replace('/', 'of')}.dat", frac, axis)
            raw = open_raw(path).read()
            row = {"axis": axis, "fraction": name}
            if axis == "phase":
                removed = np.zeros(full.shape[-2:], dtype=bool)
                removed[:, :int(round(full.shape[-1] * (1 - frac)))] = True
                row["noise_share_of_removed"] = round(noise_share(full, removed), 3)
            for mode in ("zero", "pocs", "homodyne"):
                img = partial_fourier_method(raw, "zero-filled", mode)
                row[mode] = round(nrmse(ref if axis == "phase" else ref_os, center_crop_or_pad(img, crop)), 4)
            row["pocs_vs_zero"] = round(1 - row["pocs"] / row["zero"], 3)
            rows.append(row)
    return rows


def simulated_pf_rows(full_image_2d: np.ndarray, snr: float = 100.0) -> list[dict]:
    """Phase-encode partial Fourier on a high-SNR simulation made from gre.dat's image (recon.simulate)."""
    from recon.io.fourier import ifft2c
    from recon.simulate.multicoil import simulate_multicoil
    from recon.solvers.partial_fourier import PartialFourier, complete

    k = np.asarray(simulate_multicoil(full_image_2d, num_coils=8, snr=snr, seed=0).raw.kspace)
    h, w = k.shape[-2:]
    ref = np.sqrt((np.abs(ifft2c(k)) ** 2).sum(axis=1))
    rows = []
    for frac, name in ((0.625, "5/8"), (0.75, "6/8"), (0.875, "7/8")):
        pf = PartialFourier((h, w), (0, h), (int(round(w * (1 - frac))), w))
        row = {"axis": "phase", "fraction": name, "snr": snr}
        for mode in ("zero", "pocs", "homodyne"):
            row[mode] = round(nrmse(ref, np.sqrt((np.abs(complete(k, pf, mode)) ** 2).sum(axis=1))), 4)
        row["pocs_vs_zero"] = round(1 - row["pocs"] / row["zero"], 3)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="folder for the derived files (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        full = open_raw(GRE).read()
        ref = full_image(full)
        result = {"grappa": grappa_rows(out, full, ref), "partial_fourier": pf_rows(out, ref, full.header.recon_size),
                  "partial_fourier_simulated": simulated_pf_rows(ref[0])}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
