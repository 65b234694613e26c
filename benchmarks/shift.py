"""Out-of-distribution benchmark for the learned methods and their scan-specific adaptation (issue 12, item 4).

Every case is data the bundled VarNet/MoDL never trained on (they saw one simulated subject, Colin 27 T1, on
birdcage coils), each with its fully sampled reference, undersampled with fastMRI random column masks
(seed 0; 4x with centre fraction 0.08, 8x with 0.04):

- ``gre``: the real Siemens twix phantom ``tests/data/twix/gre.dat`` (2 channels, 160 x 160);
- ``pulseq-gre``: the real twix phantom ``tests/data/twix/pulseq_vb_gre.dat`` (1 channel, 256 x 256);
- ``t1-coronal``: the real dipy T1 coronal brain slice (another subject, orientation, scanner) on 8 birdcage
  coils, SNR 30;
- ``t1-coronal-realmaps``: the same image on the 2 *measured* coil maps of gre.dat (ESPIRiT, resampled), SNR 30;
- ``b0-epi``: a real dipy b0 echo-planar brain image (another contrast, 128 x 128) on gre.dat's maps, SNR 30;
- ``nibabel-epi``: a real nibabel echo-planar brain image (128 x 96) on 12 birdcage coils, SNR 20;
- ``shepp-logan``: ``bart phantom -s 8 -k -x 256`` (BART's analytic phantom, 8 coils, noiseless);
- ``ismrmrd``: ``ismrmrd_generate_cartesian_shepp_logan`` (8 coils, 2x readout oversampling, noise 0.05).

The dipy/nibabel cases need ``../shared/data/images`` (skipped with a note otherwise), BART and the ISMRMRD
generator their tools. Columns: zero-filled, L1-wavelet (default lambda, ESPIRiT maps), VarNet, VarNet adapted
(``--adapt`` defaults), MoDL, MoDL adapted: PSNR dB / SSIM (fastMRI's volume metrics on the recon-size crop of
the fully sampled RSS, data range its maximum) and seconds per slice. Then the means over cases per
acceleration and issue 12's target differences.

    .venv/bin/python benchmarks/shift.py [--threads 2] [--cases gre t1-coronal] [--accels 4 8] [--json out.json]
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGES = ROOT.parent / "shared" / "data" / "images"
METHODS = ("zero-filled", "l1-wavelet", "varnet", "varnet adapted", "modl", "modl adapted")


@functools.lru_cache(maxsize=1)
def _gre_maps() -> np.ndarray:
    """gre.dat's 2 measured coil maps: ESPIRiT of the fully sampled scan, no crop, ``(2, 160, 160)``."""
    from recon.coils import espirit_maps
    from recon.io import read_raw

    raw = read_raw(ROOT / "tests" / "data" / "twix" / "gre.dat")
    return np.asarray(espirit_maps(raw.kspace, crop=0.0))[0]


def real_maps(shape: tuple[int, int]) -> np.ndarray:
    """gre.dat's 2 measured coil maps (:func:`_gre_maps`), resampled to ``shape`` and normalised to
    ``sum |S|^2 = 1``: ``(2, H, W)`` complex64."""
    from scipy.ndimage import zoom

    maps = _gre_maps()
    factors = (shape[0] / maps.shape[-2], shape[1] / maps.shape[-1])
    out = np.stack([zoom(m.real, factors, order=1) + 1j * zoom(m.imag, factors, order=1) for m in maps])
    norm = np.sqrt((np.abs(out) ** 2).sum(0, keepdims=True))
    return (out / np.maximum(norm, 1e-6)).astype(np.complex64)


def _image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return img / img.max()


def cases(wanted: list[str] | None) -> dict[str, object]:
    """The cases as fully sampled single-slice :class:`~recon.io.types.RawData`."""
    from recon.io import read_raw
    from recon.simulate import simulate_multicoil

    out: dict[str, object] = {}

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    for name, fname in (("gre", "gre.dat"), ("pulseq-gre", "pulseq_vb_gre.dat")):
        if want(name):
            out[name] = read_raw(ROOT / "tests" / "data" / "twix" / fname).slices(0)
    t1 = IMAGES / "t1_coronal_slice.npy"
    if IMAGES.is_dir():
        import nibabel as nib

        t1img = _image(np.load(t1))
        if want("t1-coronal"):
            out["t1-coronal"] = simulate_multicoil(t1img[None], num_coils=8, snr=30.0, seed=0).raw
        if want("t1-coronal-realmaps"):
            out["t1-coronal-realmaps"] = simulate_multicoil(t1img[None], snr=30.0, seed=1,
                                                            maps=real_maps(t1img.shape)).raw
        if want("b0-epi"):
            b0 = _image(np.asarray(nib.load(IMAGES / "S0_10slices.nii.gz").dataobj)[:, :, 5, 0])
            out["b0-epi"] = simulate_multicoil(b0[None], snr=30.0, seed=2, maps=real_maps(b0.shape)).raw
        if want("nibabel-epi"):
            e4 = _image(np.asarray(nib.load(IMAGES / "example4d.nii.gz").dataobj)[:, :, 12, 0])
            out["nibabel-epi"] = simulate_multicoil(e4[None], num_coils=12, snr=20.0, seed=3).raw
    else:
        print(f"note: {IMAGES} not found: the dipy/nibabel cases are skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        if want("shepp-logan"):
            if shutil.which("bart"):
                subprocess.run(["bart", "phantom", "-s", "8", "-k", "-x", "256", f"{tmp}/k"], check=True,
                               capture_output=True)
                out["shepp-logan"] = read_raw(f"{tmp}/k.cfl")
            else:
                print("note: bart not found, shepp-logan skipped", file=sys.stderr)
        if want("ismrmrd"):
            tool = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
            if tool:
                subprocess.run([tool, "-o", f"{tmp}/g.h5", "-c", "8", "-m", "256", "-n", "0.05"], check=True,
                               capture_output=True, cwd=tmp)
                out["ismrmrd"] = read_raw(f"{tmp}/g.h5").slices(0)
            else:
                print("note: ismrmrd_generate_cartesian_shepp_logan not found, ismrmrd skipped", file=sys.stderr)
    return out


def run_case(raw, accel: int, center: float, methods: tuple[str, ...] = METHODS
             ) -> dict[str, tuple[float, float, float]]:
    """``{method: (psnr, ssim, seconds)}`` for one fully sampled slice at one acceleration (``methods``: the
    columns to run)."""
    import recon
    from recon.arrays import center_crop_or_pad, rss
    from recon.io.fourier import ifft2c
    from recon.io.types import RawData
    from recon.metrics import volume_metrics
    from recon.sampling import apply_mask, mask_from_options
    from recon.solvers.learned.method import modl_method, varnet_method
    from recon.solvers.zero_filled import rss_reconstruction

    crop = raw.header.recon_size
    ref = center_crop_or_pad(rss(ifft2c(raw.kspace), axis=1), crop).astype(np.float32)
    mask, _ = mask_from_options("random", raw.kspace.shape, [accel], [center], 0)
    k, used = apply_mask(raw.kspace, mask, raw.header)
    data = RawData(k, raw.header, used)
    runs = {
        "zero-filled": lambda: rss_reconstruction(k, used),
        "l1-wavelet": lambda: recon.reconstruct(data, "l1-wavelet").image,
        "varnet": lambda: varnet_method(data),
        "varnet adapted": lambda: varnet_method(data, adapt=True)["reconstruction"],
        "modl": lambda: modl_method(data),
        "modl adapted": lambda: modl_method(data, adapt=True)["reconstruction"],
    }
    out = {}
    for method, fn in runs.items():
        if method not in methods:
            continue
        t0 = time.perf_counter()
        image = np.asarray(fn(), dtype=np.float32)
        seconds = time.perf_counter() - t0
        m = volume_metrics(ref, center_crop_or_pad(image, crop))
        out[method] = (float(m["psnr"]), float(m["ssim"]), seconds)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", nargs="+", default=None)
    p.add_argument("--accels", type=int, nargs="+", default=[4, 8])
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="COLUMN",
                   help=f"columns to run (default: all of {', '.join(METHODS)})")
    args = p.parse_args()
    columns = tuple(m for m in METHODS if m in args.methods)
    from recon.app.runtime import configure_threads

    configure_threads(args.threads)
    from recon.solvers.learned.method import get_model

    get_model("varnet"), get_model("modl")  # load once, outside the timings
    results: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {}
    print("| case | accel | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, raw in cases(args.cases).items():
        for accel in args.accels:
            row = run_case(raw, accel, {4: 0.08, 8: 0.04}.get(accel, 0.04), columns)
            results.setdefault(name, {})[f"{accel}x"] = row
            cells = " | ".join(f"{row[m][0]:.2f} / {row[m][1]:.3f} / {row[m][2]:.1f}" for m in columns)
            print(f"| {name} ({raw.kspace.shape[1]} ch, {raw.kspace.shape[-2]}x{raw.kspace.shape[-1]}) | {accel}x | "
                  f"{cells} |", flush=True)
    print("\nmean PSNR dB over cases (issue 12 targets: adapted VarNet >= L1 + 1 dB and >= VarNet + 1 dB; "
          "no case below VarNet by more than 0.2 dB)")
    for accel in args.accels:
        key = f"{accel}x"
        rows = [r[key] for r in results.values() if key in r]
        if not rows:
            continue
        mean = {m: float(np.mean([r[m][0] for r in rows])) for m in columns}
        line = f"{key}: " + ", ".join(f"{m} {mean[m]:.2f}" for m in columns)
        if {"varnet adapted", "l1-wavelet"} <= set(columns):
            line += f" | adapted-L1 {mean['varnet adapted'] - mean['l1-wavelet']:+.2f}"
        if {"varnet adapted", "varnet"} <= set(columns):
            worst = min(r["varnet adapted"][0] - r["varnet"][0] for r in rows)
            line += (f", adapted-VarNet {mean['varnet adapted'] - mean['varnet']:+.2f}, worst case adapted-VarNet "
                     f"{worst:+.2f}")
        print(line + f" ({len(rows)} cases)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
