"""ESPIRiT benchmark: recon.coils.espirit vs BART ``ecalib`` vs SigPy ``EspiritCalib``.

One 256 x 256 axial slice of the bundled Colin 27 T1 brain, 8 simulated birdcage coils (SNR 30), sampled at
every 4th phase-encode line plus a fully sampled centre of 24 lines (calibration region 24 x 24 for all
three, kernel 6 x 6, BART's threshold 0.001 and crop 0.8, one set of maps).

Timings (seconds, wall clock, best of ``--repeat`` after one warm-up run, except SigPy: one run):

* ours: ``espirit(kspace, mask=mask)`` on the torch device (default CPU; ``--device cuda``).
* bart total: writing the ``.cfl`` input + ``bart ecalib -m1`` + reading the output.
* bart ecalib: the subprocess alone; "bart own" subtracts the time of ``bart copy`` on the same input
  (process start + reading + writing), an estimate of BART's compute time.
* sigpy: ``sigpy.mri.app.EspiritCalib(...).run()`` on the CPU.

Agreement: mean and minimum over the object (pixels above 10 % of the maximum) of the per-pixel
phase-invariant correlation ``|<a, b>| / (|a| |b|)`` over coils, with the true maps and between methods.

Usage: ``python benchmarks/espirit.py [--repeat 5] [--size 256] [--no-sigpy] [--device cpu]``
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import best_time, read_cfl, write_cfl  # noqa: E402
from recon.coils import espirit  # noqa: E402
from recon.simulate import load_colin27, simulate_multicoil  # noqa: E402


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel |<a, b>| / (|a| |b|) over the coil axis 0 of ``(C, H, W)`` arrays."""
    num = np.abs(np.sum(np.conj(a) * b, axis=0))
    return num / np.maximum(np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0), 1e-30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--calib", type=int, default=24)
    ap.add_argument("--no-sigpy", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    n = args.size
    img = load_colin27([96], shape=(n, n))
    sim = simulate_multicoil(img, num_coils=8, snr=30, seed=0)
    mask = np.zeros(n, dtype=bool)
    mask[::4] = True
    mask[n // 2 - args.calib // 2: n // 2 - args.calib // 2 + args.calib] = True
    k = (sim.raw.kspace * mask)[0]  # (C, H, W)
    mag = np.abs(sim.images[0])
    obj = mag > 0.1 * mag.max()
    rows: list[tuple[str, float | None, str]] = []
    maps: dict[str, np.ndarray] = {"true": sim.maps}

    kt = torch.from_numpy(k).to(args.device)

    def ours() -> torch.Tensor:
        m = espirit(kt, mask=mask).maps
        if m.is_cuda:
            torch.cuda.synchronize()
        return m

    t_ours, m_ours = best_time(ours, args.repeat)
    maps["ours"] = m_ours[0, 0].cpu().numpy()  # type: ignore[index]
    rows.append(("ours (eig grid 64)", t_ours, f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}"))
    t_exact, m_exact = best_time(lambda: espirit(kt, mask=mask, eig_grid=None).maps, args.repeat)
    maps["ours exact"] = m_exact[0, 0].cpu().numpy()  # type: ignore[index]
    rows.append(("ours (every pixel)", t_exact, "eig_grid=None"))

    if shutil.which("bart"):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)

            def bart_total() -> np.ndarray:
                write_cfl(d / "k", k.transpose(1, 2, 0)[:, :, None, :])
                subprocess.run(["bart", "ecalib", "-m1", f"-r{args.calib}", str(d / "k"), str(d / "s")],
                               check=True, capture_output=True)
                return read_cfl(d / "s")

            t_total, s = best_time(bart_total, args.repeat)
            t_cmd, _ = best_time(lambda: subprocess.run(
                ["bart", "ecalib", "-m1", f"-r{args.calib}", str(d / "k"), str(d / "s")], check=True,
                capture_output=True), args.repeat)
            t_copy, _ = best_time(lambda: subprocess.run(
                ["bart", "copy", str(d / "k"), str(d / "c")], check=True, capture_output=True), args.repeat)
            version = subprocess.run(["bart", "version"], capture_output=True, text=True).stdout.strip()
        maps["bart"] = np.asarray(s).reshape(s.shape[:4])[:, :, 0, :].transpose(2, 0, 1)  # type: ignore[union-attr]
        rows.append(("bart ecalib, total", t_total, f"BART {version}: write cfl + command + read cfl"))
        rows.append(("bart ecalib, command", t_cmd, "subprocess only"))
        rows.append(("bart own (est.)", max(t_cmd - t_copy, 0.0), f"command - `bart copy` ({t_copy:.3f} s)"))
    else:
        rows.append(("bart ecalib", None, "bart not installed"))

    if not args.no_sigpy:
        from sigpy.mri.app import EspiritCalib

        t0 = time.perf_counter()
        maps["sigpy"] = EspiritCalib(k, calib_width=args.calib, thresh=float(np.sqrt(0.001)), kernel_width=6,
                                     crop=0.8, show_pbar=False).run()
        rows.append(("sigpy EspiritCalib", time.perf_counter() - t0, "one run, numpy CPU"))

    print(f"ESPIRiT on a {n}x{n} 8-coil slice, {args.calib}-line calibration region, k = 6, t = 0.001, c = 0.8")
    print(f"{'method':<24}{'seconds':>10}{'ours is x faster':>18}  note")
    for name, t, note in rows:
        ts = f"{t:10.3f}" if t is not None else f"{'-':>10}"
        ratio = f"{t / t_ours:18.1f}" if t is not None and not name.startswith("ours (eig") else f"{'':>18}"
        print(f"{name:<24}{ts}{ratio}  {note}")
    print()
    print(f"{'agreement in the object':<32}{'mean corr':>12}{'min corr':>12}")
    pairs = [(a, b) for a in ("ours", "ours exact", "bart", "sigpy") for b in ("true", "ours", "bart")
             if a in maps and b in maps and a != b and not (a == "bart" and b == "ours")]
    for a, b in pairs:
        c = correlation(maps[b], maps[a])[obj]
        print(f"{a + ' vs ' + b:<32}{c.mean():12.6f}{c.min():12.6f}")


if __name__ == "__main__":
    main()
