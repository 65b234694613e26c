"""Volume speed benchmark (issue 4, Targets): ``recon run --method l1-wavelet`` on a 16-slice 256 x 256 8-coil
volume, end to end, per slice, against BART 0.8's per-slice ``ecalib`` + ``pics`` loop and SigPy per slice.

The volume: 16 consecutive axial slices of Colin 27 (``recon.simulate.load_colin27``, slices 82-97, centre-padded
to 256 x 256), 8 simulated coils, SNR 30 (``recon.simulate.write_dataset``), one fastMRI-layout file.

Per repeat (``--repeat``, interleaved: recon, BART, SigPy, recon, BART, SigPy, ...):

* recon: ``python -m recon run VOL.h5 OUT.h5 --method l1-wavelet --accel 4 --center-fraction 0.08 --seed 0
  --overwrite --json`` as a subprocess: wall time of the whole command (interpreter start, imports, reading,
  the fastMRI mask, ESPIRiT and FISTA per slice, metrics, writing the output) / 16. recon's own thread policy
  (``recon.app.runtime``: the free physical cores at start, at most 4; OpenMP's default waits).
* BART: the same undersampled k-space (the mask ``recon run`` stored in its output), per slice as a user
  scripts it: ``bart ecalib -m1 k_s sens_s`` then ``bart pics -S -R W:7:0:0.005 k_s sens_s x_s`` (BART's
  defaults otherwise; the calibration centre is 20 lines, so BART's default 6 x 6 kernel). Time = the 32
  subprocesses' wall time / 16 (writing the ``.cfl`` inputs and reading the outputs is not counted). BART's
  ``ecalib`` treats dims 0-2 as one 3D volume, so one call on the stacked slices is not the same calibration;
  the per-slice loop is how BART is used for 2D multi-slice data. The loop runs twice per repeat: with BART's
  OpenMP defaults (``OMP_WAIT_POLICY`` unset: threads spin while waiting) and with ``OMP_WAIT_POLICY=PASSIVE``
  (on a busy machine spinning costs BART several times its time); the target is checked against the faster
  of the two.
* SigPy (slow): ``--sigpy-slices`` slices per repeat (a different slice each repeat): ``EspiritCalib`` +
  ``L1WaveletRecon`` (lamda 0.005 on BART-scaled data), as ``benchmarks/classical.py`` runs it.

Printed: per tool the median seconds per slice over the repeats, PSNR (fastMRI definition over the volume; SigPy
over its slices, with recon's and BART's PSNR on the same slices beside it), and the ratios of one run.

    .venv/bin/python benchmarks/volume.py                      # 3 repeats, 1 SigPy slice each
    .venv/bin/python benchmarks/volume.py --repeat 5 --sigpy-slices 0
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import bart_available, bart_version, read_cfl, run_bart, run_measured, write_cfl  # noqa: E402

SLICES = 16
SIZE = 256
COILS = 8
FIRST_SLICE = 82
BART_LAMBDA = 0.005


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def simulate(folder: Path, slices: int) -> Path:
    """One fastMRI-layout file of ``slices`` Colin 27 slices, 8 coils, 256 x 256, SNR 30."""
    from recon.simulate import load_colin27, write_dataset

    vol = load_colin27(list(range(FIRST_SLICE, FIRST_SLICE + slices)), shape=(SIZE, SIZE))
    files = write_dataset(folder, vol, slices_per_file=slices, num_coils=COILS, snr=30.0, seed=0,
                          readout_oversampling=1, acquisition="AXT1_SIM", prefix="vol")
    return files[0]


def recon_run(vol: Path, out: Path) -> tuple[float, dict[str, Any]]:
    cmd = [sys.executable, "-m", "recon", "run", str(vol), str(out), "--method", "l1-wavelet", "--accel", "4",
           "--center-fraction", "0.08", "--seed", "0", "--overwrite", "--json"]
    res = run_measured(cmd).check(cmd)
    return res.seconds, json.loads(res.stdout)


def _bart(env: dict[str, str] | None, *args: str | Path) -> float:
    if env is None:
        return run_bart(*args).seconds
    cmd = ["bart", *[str(a) for a in args]]
    return run_measured(cmd, env=env).check(cmd).seconds


def bart_loop(ku: np.ndarray, tmp: Path, env: dict[str, str] | None = None) -> tuple[float, np.ndarray]:
    """Per slice ``ecalib -m1`` + ``pics -S -R W:7:0:0.005``: (summed subprocess seconds, |images| (S, H, W)).

    ``env``: the subprocesses' environment (None = this process's)."""
    n, c, h, w = ku.shape
    seconds = 0.0
    images = []
    for s in range(n):
        kb, sens, out = tmp / f"k{s}", tmp / f"s{s}", tmp / f"x{s}"
        write_cfl(kb, ku[s].transpose(1, 2, 0)[:, :, None, :])  # READ, PHS1, PHS2, COIL
        seconds += _bart(env, "ecalib", "-m1", kb, sens)
        seconds += _bart(env, "pics", "-S", "-R", f"W:7:0:{BART_LAMBDA}", kb, sens, out)
        images.append(np.abs(read_cfl(out).reshape(h, w)))
    return seconds, np.stack(images)


def sigpy_slice(y: np.ndarray, calib: int) -> tuple[float, np.ndarray]:
    """SigPy EspiritCalib + L1WaveletRecon on one slice ``(C, H, W)`` (BART-scaled): (seconds, |image|)."""
    import sigpy.mri.app as app
    import torch

    from recon.io.fourier import ifft2c
    from recon.solvers import bart_scale

    t0 = time.perf_counter()
    maps = app.EspiritCalib(y, calib_width=calib, kernel_width=6, show_pbar=False).run()
    adjoint = np.sum(np.conj(maps) * ifft2c(y), axis=0)
    scale = float(bart_scale(torch.from_numpy(np.ascontiguousarray(adjoint)))) or 1.0
    img = app.L1WaveletRecon((y / scale).astype(np.complex64), maps, lamda=BART_LAMBDA, show_pbar=False).run()
    return time.perf_counter() - t0, np.abs(np.asarray(img)) * scale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats (median reported; default 3)")
    ap.add_argument("--slices", type=int, default=SLICES, help=f"slices in the volume (default {SLICES})")
    ap.add_argument("--sigpy-slices", type=int, default=1, help="SigPy slices per repeat (default 1; 0 = none)")
    ap.add_argument("--no-bart-passive", dest="bart_passive", action="store_false",
                    help="skip the second BART loop with OMP_WAIT_POLICY=PASSIVE (BART is timed both ways; the faster counts)")
    ap.add_argument("--out", type=Path, default=Path("out/benchmarks/volume.json"))
    args = ap.parse_args(argv)
    if not bart_available():
        print("volume.py: BART (bart) is not on PATH", file=sys.stderr)
        return 2
    import h5py

    from recon.io import read_raw
    from recon.metrics import volume_metrics

    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"command": "python benchmarks/volume.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average "
                           f"{os.getloadavg()[0]:.1f} at start", "bart": bart_version()}
    times: dict[str, list[float]] = {"recon": [], "recon_pipeline": [], "bart": [], "bart_passive": [], "sigpy": []}
    passive = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"OMP_WAIT_POLICY": "PASSIVE"}
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    sig_images: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="recon-bench-vol-") as tmpdir:
        tmp = Path(tmpdir)
        log(f"simulating {args.slices} slices, {COILS} coils, {SIZE} x {SIZE} ...")
        vol = simulate(tmp / "data", args.slices)
        raw = read_raw(vol)
        n = raw.kspace.shape[0]
        ref = raw.reference.astype(np.float32)
        out = tmp / "out.h5"
        summary: dict[str, Any] = {}
        bart_img = None
        ku = None
        for rep in range(args.repeat):
            sec, summary = recon_run(vol, out)
            times["recon"].append(sec / n)
            times["recon_pipeline"].append(float(summary["seconds"]) / n)
            with h5py.File(out, "r") as f:
                recon_img = f["reconstruction"][()]
                mask = f["mask"][()].astype(bool)
            log(f"repeat {rep + 1}: recon run {sec:.2f} s ({sec / n:.3f} s/slice)")
            if ku is None:
                cols = mask.reshape(-1)
                ku = (raw.kspace * cols[None, None, None, :]).astype(np.complex64)
                calib = _centre_lines(cols)
            bsec, bart_img = bart_loop(ku, tmp, base)
            times["bart"].append(bsec / n)
            log(f"repeat {rep + 1}: bart ecalib + pics loop {bsec:.2f} s ({bsec / n:.3f} s/slice)")
            if args.bart_passive:
                bsec, _ = bart_loop(ku, tmp, passive)
                times["bart_passive"].append(bsec / n)
                log(f"repeat {rep + 1}: bart loop, OMP_WAIT_POLICY=PASSIVE {bsec:.2f} s ({bsec / n:.3f} s/slice)")
            for j in range(args.sigpy_slices):
                s = (rep * args.sigpy_slices + j) * 5 % n
                ssec, img = sigpy_slice(ku[s], calib)
                times["sigpy"].append(ssec)
                sig_images[s] = img
                log(f"repeat {rep + 1}: sigpy slice {s}: {ssec:.2f} s")
    med = {k: statistics.median(v) for k, v in times.items() if v}
    psnr = {"recon": volume_metrics(ref, recon_img)["psnr"], "bart": volume_metrics(ref, bart_img.astype(np.float32))["psnr"]}
    rows = [f"recon run ({n} slices, end to end) | {med['recon']:.3f} | {psnr['recon']:.2f} | 1.00",
            f"(of which recon's pipeline: read, ESPIRiT + FISTA per slice, metrics, write) | "
            f"{med['recon_pipeline']:.3f} | | {med['recon_pipeline'] / med['recon']:.2f}",
            f"BART ecalib + pics per slice | {med['bart']:.3f} | {psnr['bart']:.2f} | {med['bart'] / med['recon']:.2f}"]
    if "bart_passive" in med:
        rows.append(f"BART ecalib + pics per slice, OMP_WAIT_POLICY=PASSIVE | {med['bart_passive']:.3f} | "
                    f"{psnr['bart']:.2f} | {med['bart_passive'] / med['recon']:.2f}")
    if sig_images:
        idx = sorted(sig_images)
        sig_psnr = volume_metrics(ref[idx], np.stack([sig_images[i] for i in idx]).astype(np.float32))["psnr"]
        on_sub = {k: volume_metrics(ref[idx], img[idx].astype(np.float32))["psnr"]
                  for k, img in (("recon", recon_img), ("bart", bart_img))}
        rows.append(f"SigPy EspiritCalib + L1WaveletRecon (slices {idx}) | {med['sigpy']:.3f} | {sig_psnr:.2f} "
                    f"(recon {on_sub['recon']:.2f}, BART {on_sub['bart']:.2f} on these slices) | "
                    f"{med['sigpy'] / med['recon']:.2f}")
        psnr["sigpy_subset"], psnr["recon_subset"], psnr["bart_subset"] = sig_psnr, on_sub["recon"], on_sub["bart"]
    print(f"{n} slices x {COILS} coils x {SIZE}x{SIZE} (Colin 27, SNR 30), fastMRI random 4x, centre 0.08, seed 0; "
          f"median of {args.repeat} interleaved repeats; {settings['machine']}")
    print("| tool | s/slice | PSNR dB | time / recon's |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| " + r + " |")
    bart_best = min(v for k, v in med.items() if k.startswith("bart"))
    print(f"recon per-slice time / BART's per-slice time (its faster variant): {med['recon'] / bart_best:.2f} "
          f"({'PASS' if med['recon'] <= bart_best else 'FAIL'}: target <= 1)")
    if "sigpy" in med:
        print(f"SigPy / recon: {med['sigpy'] / med['recon']:.1f}x ({'PASS' if med['sigpy'] >= 10 * med['recon'] else 'FAIL'}: target >= 10x)")
    payload = {"settings": settings, "times_s_per_slice": times, "median": med, "psnr": psnr,
               "recon_summary": summary}
    from recon.io.atomic import atomic_path

    with atomic_path(args.out, overwrite=True) as tmp_out:
        Path(tmp_out).write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"JSON: {args.out}")
    return 0


def _centre_lines(cols: np.ndarray) -> int:
    """Width of the contiguous sampled run around the centre column."""
    c = cols.size // 2
    lo, hi = c, c
    while lo > 0 and cols[lo - 1]:
        lo -= 1
    while hi < cols.size - 1 and cols[hi + 1]:
        hi += 1
    return hi - lo + 1


if __name__ == "__main__":
    raise SystemExit(main())
