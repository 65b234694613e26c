"""Classical reconstruction benchmark: recon vs BART 0.8 ``pics`` vs SigPy's apps (issue 4, item 5).

Problems (``--problems``):

* ``sample``: the bundled sample (``recon/data/sample_brain.h5``: 3 slices, 8 coils, 224 x 192); reference =
  its ``reconstruction_rss`` (RSS of the fully sampled, noisy k-space).
* ``shepp-logan``: ``bart phantom -s 8 -k -x 256`` (8 coils, 256 x 256) + ``bart noise -n VAR``;
* ``tubes``: ``bart phantom -s 8 -k -T -x 256`` + ``bart noise -n VAR``. Reference of a phantom = RSS of its
  noiseless, fully sampled k-space. Phantoms are cached in ``--cache`` (BART's analytic k-space phantom
  takes 10-20 s to compute).

Masks (``--masks``): fastMRI ``random`` column masks over phase encode (W), 4x with centre fraction 0.08 and
8x with 0.04 (``1d4``, ``1d8``), and 2D variable-density Poisson disc (``recon.sampling`` ``poisson``) with a
calibration box of the same fractions (``poisson4``, ``poisson8``). Seed 0 for every mask.

Methods, all on the same undersampled k-space:

* recon: ``recon.reconstruct(kspace, method, mask=mask)`` with DEFAULT parameters for ``zero-filled``,
  ``sense``, ``l1-wavelet`` and ``tv`` (ESPIRiT maps computed inside; all slices in one batched call).
* BART: per slice ``bart ecalib -m1`` then ``bart pics -S -R W:7:0:LAMBDA`` (L1-wavelet) and
  ``bart pics -S -R T:3:0:LAMBDA`` (TV), with BART's usual default lambda 0.005 and with the best lambda of a
  grid (``--grid``); all other options BART's defaults. Where the fully sampled centre is narrower than 12
  lines (8x: 0.04 x 256 = 10 lines), BART's default 6x6 ESPIRiT kernel is unreliable (on the sample's 8 lines
  it fails), so everything is run twice: with ``ecalib -k 4`` (the rule recon applies) and with the default
  kernel; the Targets compare with the better of the two.
* SigPy: ``EspiritCalib`` (calibration width = the fully sampled centre, kernel 4 where it is < 12 lines,
  other options default) then ``L1WaveletRecon``, ``TotalVariationRecon`` (lamda 0.005) and ``SenseRecon``
  (lamda 0) with their default iterations, ``show_pbar=False``. SigPy does not scale the data, so the
  k-space is divided by BART's robust scale (``recon.solvers.bart_scale`` of the coil-combined adjoint image)
  before and the image multiplied by it after: lamda 0.005 then means what it means to BART and recon.
  SigPy is slow, so by default it runs only on the first mask of each problem (``--sigpy all``: every one;
  ``--sigpy none``: never); ``--quick`` runs it on the first problem only.

Columns: PSNR (dB) / SSIM / NMSE with fastMRI's definitions (``recon.metrics.volume_metrics``: magnitude
volumes, data range = reference volume max) against the reference on the full grid; seconds per slice (wall
clock, ESPIRiT included for every method that uses maps; BART: the ``ecalib`` + ``pics`` subprocesses; the
grid's extra runs are not counted); "x recon": that time over recon's time for the same regulariser on the
same problem in this run; peak memory in MiB: BART = largest ``ru_maxrss`` of its subprocesses (the whole
process), in-process methods = peak RSS increase during the call (``/proc/self`` VmHWM; torch's and numpy's
allocations included).

Then the issue's Targets as PASS/FAIL lines, and with ``--memory`` the peak RSS of ``recon run --method
l1-wavelet`` (a subprocess) on a simulated 15-coil 640 x 368 fastMRI-size volume of 4 and of 32 slices.

Outputs: ``--out`` JSON (every row, the targets, the settings) and the same path with ``.md``: the markdown
table for the README.

    .venv/bin/python benchmarks/classical.py --quick            # a few minutes on 2 cores
    .venv/bin/python benchmarks/classical.py                    # every problem and mask (long)
    .venv/bin/python benchmarks/classical.py --problems sample --masks 1d4 1d8 --sigpy none
    .venv/bin/python benchmarks/classical.py --memory --memory-only --memory-iterations 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    PeakRSS,
    bart_available,
    bart_version,
    read_cfl,
    run_bart,
    run_measured,
    write_cfl,
)

PROBLEMS = ("sample", "shepp-logan", "tubes")
MASKS = {  # name: (label, mask type, acceleration, centre fraction)
    "1d4": ("1D 4x", "random", 4, 0.08),
    "1d8": ("1D 8x", "random", 8, 0.04),
    "poisson4": ("Poisson 4x", "poisson", 4, 0.08),
    "poisson8": ("Poisson 8x", "poisson", 8, 0.04),
}
GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
QUICK_GRID = (0.002, 0.005, 0.01, 0.02)
BART_DEFAULT_LAMBDA = 0.005
SIGPY_LAMBDA = 0.005
NARROW_CALIB = 12  # fully sampled centre narrower than this: ESPIRiT kernel 4 instead of 6
RECON_METHODS = ("zero-filled", "sense", "l1-wavelet", "tv")
FAMILY = {"zero-filled": "zf", "sense": "sense", "l1-wavelet": "l1", "tv": "tv"}
BART_REG = {"l1": "W:7:0:{lam}", "tv": "T:3:0:{lam}"}
QUALITY_MARGIN_DB = 0.3
SIGPY_SPEEDUP = 10.0
MEMORY_GROWTH_LIMIT = 1.25  # "bounded": 32-slice peak RSS within 25 % of the 4-slice one


@dataclass
class Problem:
    """One benchmark volume: fully sampled k-space ``(S, C, H, W)`` complex64, reference ``(S, H, W)`` float32."""

    name: str
    kspace: np.ndarray
    reference: np.ndarray
    description: str


@dataclass
class Row:
    """One method on one problem and mask."""

    problem: str
    mask: str
    tool: str
    family: str
    method: str
    lam: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    nmse: float | None = None
    sec_per_slice: float | None = None
    x_recon: float | None = None
    peak_mb: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- problems -------------------------------------------------------------------------------------------

def load_sample() -> Problem:
    from recon.data import sample_path
    from recon.io import read_raw

    raw = read_raw(sample_path())
    s, c, h, w = raw.kspace.shape
    return Problem("sample", raw.kspace, raw.reference.astype(np.float32),
                   f"bundled sample: {s} slices, {c} coils, {h}x{w}, reference = reconstruction_rss")


def load_phantom(name: str, cache: Path, noise_var: float) -> Problem:
    """``bart phantom -s 8 -k [-T] -x 256`` plus ``bart noise -s 1 -n noise_var`` (cached in ``cache``)."""
    from recon.io.bart import bart_to_raw
    from recon.arrays import rss
    from recon.io.fourier import ifft2c

    cache.mkdir(parents=True, exist_ok=True)
    clean, noisy = cache / f"{name}", cache / f"{name}_noise{noise_var:g}"
    if not clean.with_suffix(".cfl").exists():
        log(f"  bart phantom ({name}) ...")
        run_bart("phantom", "-s", "8", "-k", *(["-T"] if name == "tubes" else []), "-x", "256", clean)
    if not noisy.with_suffix(".cfl").exists():
        run_bart("noise", "-s", "1", "-n", f"{noise_var:g}", clean, noisy)
    k_clean = bart_to_raw(read_cfl(clean))
    k_noisy = bart_to_raw(read_cfl(noisy))
    ref = rss(ifft2c(k_clean), axis=1).astype(np.float32)
    sigma = float(np.std(k_noisy - k_clean))
    obj = ref > 0.1 * ref.max()
    snr = float(ref[obj].mean() / sigma)
    flag = " -T" if name == "tubes" else ""
    return Problem(name, k_noisy, ref,
                   f"bart phantom -s 8 -k{flag} -x 256 + bart noise -n {noise_var:g} (complex noise std {sigma:.2f}, "
                   f"mean RSS in the object / std = {snr:.0f}); reference = RSS of the noiseless k-space")


def make_mask(key: str, shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    from recon.sampling import mask_from_options

    _, kind, accel, cf = MASKS[key]
    return mask_from_options(kind, shape, accel, cf, seed=0)


def calib_width(kspace: np.ndarray, mask: np.ndarray) -> int:
    """Smallest side of the fully sampled centre box (recon's detection, the same for every tool)."""
    import torch

    from recon.coils.calibration import detect_calibration_size, sampled_pattern

    m = mask.reshape((1, 1, 1, -1)) if mask.ndim == 1 else mask[None, None]
    ch, cw = detect_calibration_size(sampled_pattern(torch.from_numpy(kspace[:1]), m))
    return int(min(ch, cw))


def metrics(reference: np.ndarray, image: np.ndarray) -> dict[str, float]:
    from recon.metrics import volume_metrics

    return volume_metrics(reference, np.abs(image).astype(np.float32))


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(output, seconds, peak RSS increase MiB)`` of ``fn()``."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return out, seconds, mem.mb


# --- the three tools ---------------------------------------------------------------------------------------

def run_recon(p: Problem, ku: np.ndarray, mask: np.ndarray, mask_label: str) -> list[Row]:
    import recon

    rows = []
    n = ku.shape[0]
    for method in RECON_METHODS:
        res, sec, mb = timed(lambda: recon.reconstruct(ku, method, mask=mask))
        m = metrics(p.reference, res.image)
        lam = res.parameters.get("lam", res.parameters.get("lambda"))
        rows.append(Row(p.name, mask_label, "recon", FAMILY[method], f"recon {method}",
                        lam=None if lam is None else float(lam), sec_per_slice=sec / n, peak_mb=mb,
                        note="defaults", **m))
        log(f"  recon {method:<12} PSNR {m['psnr']:6.2f}  {sec / n:7.2f} s/slice")
    return rows


def run_bart_problem(p: Problem, ku: np.ndarray, calib: int, mask_label: str, grid: tuple[float, ...],
                     tmp: Path) -> list[Row]:
    """ecalib + pics per slice at the default lambda and over the grid.

    With a narrow fully sampled centre (< 12 lines) everything is done twice: with ``ecalib -k 4`` and with
    BART's default 6x6 kernel (which may fail there; then that variant is one row saying so).
    """
    rows = []
    for kernel in ((4, 6) if calib < NARROW_CALIB else (6,)):
        try:
            rows += bart_variant(p, ku, kernel, mask_label, grid, tmp)
        except RuntimeError as exc:
            rows.append(Row(p.name, mask_label, "bart", "l1", "bart W default lambda", lam=BART_DEFAULT_LAMBDA,
                            note=f"ecalib kernel {kernel} FAILED: {str(exc)[:120]}"))
            log(f"  bart, ecalib kernel {kernel}: FAILED {exc}")
    return rows


def bart_variant(p: Problem, ku: np.ndarray, kernel: int, mask_label: str, grid: tuple[float, ...],
                 tmp: Path) -> list[Row]:
    """Rows of BART W and T at the default and the best lambda, ESPIRiT with a ``kernel`` x ``kernel`` kernel."""
    n, c, h, w = ku.shape
    kernel_args = [] if kernel == 6 else ["-k", str(kernel)]
    lams = sorted(set(grid) | {BART_DEFAULT_LAMBDA})
    images: dict[str, dict[float, list[np.ndarray]]] = {f: {lam: [] for lam in lams} for f in BART_REG}
    pics_sec: dict[str, dict[float, float]] = {f: {lam: 0.0 for lam in lams} for f in BART_REG}
    pics_mb: dict[str, dict[float, float]] = {f: {lam: 0.0 for lam in lams} for f in BART_REG}
    ecalib_sec = ecalib_mb = 0.0
    for s in range(n):
        kb, sens, out = tmp / f"k{s}", tmp / f"s{s}", tmp / f"x{s}"
        write_cfl(kb, ku[s].transpose(1, 2, 0)[:, :, None, :])  # (H, W, 1, C): READ, PHS1, PHS2, COIL
        r = run_bart("ecalib", "-m1", *kernel_args, kb, sens)
        ecalib_sec += r.seconds
        ecalib_mb = max(ecalib_mb, r.max_rss_mb)
        for fam, reg in BART_REG.items():
            for lam in lams:
                r = run_bart("pics", "-S", "-R", reg.format(lam=lam), kb, sens, out)
                pics_sec[fam][lam] += r.seconds
                pics_mb[fam][lam] = max(pics_mb[fam][lam], r.max_rss_mb)
                images[fam][lam].append(np.abs(read_cfl(out).reshape(h, w)))
    rows = []
    kname = f"ecalib -k {kernel}" if kernel != 6 else "ecalib default (k 6)"
    for fam in BART_REG:
        scored = {lam: metrics(p.reference, np.stack(images[fam][lam])) for lam in lams}
        best = max(lams, key=lambda lam: scored[lam]["psnr"])
        reg_name = "W" if fam == "l1" else "T"
        for label, lam in (("default", BART_DEFAULT_LAMBDA), ("best", best)):
            rows.append(Row(p.name, mask_label, "bart", fam, f"bart {reg_name} {label} lambda", lam=lam,
                            sec_per_slice=(ecalib_sec + pics_sec[fam][lam]) / n,
                            peak_mb=max(ecalib_mb, pics_mb[fam][lam]), note=kname,
                            extra={"grid_psnr": {str(k): v["psnr"] for k, v in scored.items()}} if label == "best" else {},
                            **scored[lam]))
        log(f"  bart {reg_name} ({kname}): default PSNR {scored[BART_DEFAULT_LAMBDA]['psnr']:6.2f}, best "
            f"{scored[best]['psnr']:6.2f} (lambda {best}), {(ecalib_sec + pics_sec[fam][BART_DEFAULT_LAMBDA]) / n:6.2f} s/slice")
    return rows


def run_sigpy(p: Problem, ku: np.ndarray, calib: int, mask_label: str, methods: tuple[str, ...]) -> list[Row]:
    import sigpy.mri.app as app
    import torch

    from recon.io.fourier import ifft2c
    from recon.solvers import bart_scale

    n, c, h, w = ku.shape
    kernel = 4 if calib < NARROW_CALIB else 6
    out: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    sec = {m: 0.0 for m in methods}
    mb = {m: 0.0 for m in methods}
    for s in range(n):
        y = ku[s]
        maps, t_maps, mb_maps = timed(lambda: app.EspiritCalib(y, calib_width=calib, kernel_width=kernel,
                                                               show_pbar=False).run())
        adjoint = np.sum(np.conj(maps) * ifft2c(y), axis=0)
        scale = float(bart_scale(torch.from_numpy(np.ascontiguousarray(adjoint))))
        scale = scale if scale > 0 else 1.0
        ys = (y / scale).astype(np.complex64)
        runs = {
            "l1": lambda: app.L1WaveletRecon(ys, maps, lamda=SIGPY_LAMBDA, show_pbar=False).run(),
            "tv": lambda: app.TotalVariationRecon(ys, maps, lamda=SIGPY_LAMBDA, show_pbar=False).run(),
            "sense": lambda: app.SenseRecon(ys, maps, show_pbar=False).run(),
        }
        for m in methods:
            img, t, peak = timed(runs[m])
            out[m].append(np.abs(np.asarray(img)) * scale)
            sec[m] += t_maps + t
            mb[m] = max(mb[m], mb_maps, peak)
    rows = []
    names = {"l1": "sigpy L1WaveletRecon", "tv": "sigpy TotalVariationRecon", "sense": "sigpy SenseRecon"}
    for m in methods:
        met = metrics(p.reference, np.stack(out[m]))
        rows.append(Row(p.name, mask_label, "sigpy", m, names[m], lam=0.0 if m == "sense" else SIGPY_LAMBDA,
                        sec_per_slice=sec[m] / n, peak_mb=mb[m], note=f"EspiritCalib calib {calib}, kernel {kernel}",
                        **met))
        log(f"  {names[m]:<26} PSNR {met['psnr']:6.2f}  {sec[m] / n:7.2f} s/slice")
    return rows


# --- targets -----------------------------------------------------------------------------------------------

def find(rows: list[Row], problem: str, mask: str, method: str) -> list[Row]:
    """Every scored row of ``method`` on ``problem`` / ``mask`` (BART: one per ESPIRiT kernel)."""
    return [r for r in rows if r.problem == problem and r.mask == mask and r.method == method and r.psnr is not None]


def best_psnr(rows: list[Row]) -> Row | None:
    return max(rows, key=lambda r: r.psnr) if rows else None


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    """The issue's Targets, one check per problem and mask (quality) or per 256x256 8-coil problem (speed).

    Where BART ran with two ESPIRiT kernels (narrow centre), its better result is the one to reach.
    """
    checks = []
    combos = list(dict.fromkeys((r.problem, r.mask) for r in rows))
    for prob, mask in combos:
        for ours, reg in (("recon l1-wavelet", "W"), ("recon tv", "T")):
            mine = best_psnr(find(rows, prob, mask, ours))
            default = best_psnr(find(rows, prob, mask, f"bart {reg} default lambda"))
            best = best_psnr(find(rows, prob, mask, f"bart {reg} best lambda"))
            if mine is None or default is None or best is None:
                continue
            checks.append({"target": f"{ours} default PSNR >= bart {reg} lambda 0.005 PSNR ({default.note})",
                           "problem": prob, "mask": mask, "ours": mine.psnr, "theirs": default.psnr,
                           "pass": mine.psnr >= default.psnr})
            checks.append({"target": f"{ours} default PSNR within {QUALITY_MARGIN_DB} dB of bart {reg} best lambda "
                                     f"({best.lam:g}, {best.note})",
                           "problem": prob, "mask": mask, "ours": mine.psnr, "theirs": best.psnr,
                           "pass": mine.psnr >= best.psnr - QUALITY_MARGIN_DB})
        if prob in ("shepp-logan", "tubes"):  # 256 x 256, 8 coils
            mine = best_psnr(find(rows, prob, mask, "recon l1-wavelet"))
            timed_rows = [r for r in find(rows, prob, mask, "bart W default lambda") if r.sec_per_slice]
            default = min(timed_rows, key=lambda r: r.sec_per_slice) if timed_rows else None  # BART's fastest
            sig = best_psnr(find(rows, prob, mask, "sigpy L1WaveletRecon"))
            if mine and default:
                checks.append({"target": f"recon l1-wavelet s/slice (ESPIRiT included) <= bart ecalib + pics ({default.note})",
                               "problem": prob, "mask": mask, "ours": mine.sec_per_slice,
                               "theirs": default.sec_per_slice, "pass": mine.sec_per_slice <= default.sec_per_slice})
            if mine and sig:
                checks.append({"target": f"recon l1-wavelet >= {SIGPY_SPEEDUP:g}x faster than sigpy L1WaveletRecon",
                               "problem": prob, "mask": mask, "ours": mine.sec_per_slice, "theirs": sig.sec_per_slice,
                               "pass": sig.sec_per_slice >= SIGPY_SPEEDUP * mine.sec_per_slice})
    return checks


# --- memory target -----------------------------------------------------------------------------------------

def memory_check(slices: tuple[int, ...], iterations: int | None, workdir: Path) -> list[dict[str, Any]]:
    """Peak RSS of ``recon run --method l1-wavelet`` on simulated 15-coil 640 x 368 volumes of each length."""
    from recon.simulate import load_colin27, write_dataset

    out = []
    for n in slices:
        folder = workdir / f"mem{n}"
        start = 90 - n // 2
        log(f"memory: simulating {n} slices, 15 coils, 640 x 368 ...")
        files = write_dataset(folder, load_colin27(list(range(start, start + n)), shape=(320, 368)),
                              slices_per_file=n, num_coils=15, snr=30.0, seed=0, readout_oversampling=2,
                              acquisition="AXT1_SIM")
        cmd = [sys.executable, "-m", "recon", "run", str(files[0]), str(workdir / f"mem{n}.h5"),
               "--method", "l1-wavelet", "--accel", "4", "--center-fraction", "0.08", "--seed", "0", "--json"]
        if iterations is not None:
            cmd += ["--iterations", str(iterations)]
        log(f"memory: {' '.join(cmd[1:])}")
        res = run_measured(cmd).check(cmd)
        out.append({"slices": n, "peak_rss_mb": res.max_rss_mb, "seconds": res.seconds,
                    "iterations": iterations if iterations is not None else "default",
                    "file_mb": files[0].stat().st_size / 2**20})
        log(f"memory: {n} slices: peak RSS {res.max_rss_mb:.0f} MiB, {res.seconds:.0f} s")
        for f in files:
            f.unlink()
    return out


# --- output ------------------------------------------------------------------------------------------------

def fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


HEAD = ("problem", "mask", "method", "lambda", "PSNR", "SSIM", "NMSE", "s/slice", "x recon", "peak MiB", "note")


def row_cells(r: Row) -> list[str]:
    return [r.problem, r.mask, r.method, fmt(r.lam, "g"), fmt(r.psnr, ".2f"), fmt(r.ssim, ".4f"),
            fmt(r.nmse, ".4f"), fmt(r.sec_per_slice, ".2f"), fmt(r.x_recon, ".2f"), fmt(r.peak_mb, ".0f"), r.note]


def print_table(rows: list[Row]) -> None:
    cells = [list(HEAD)] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    for i, c in enumerate(cells):
        print("  ".join(v.ljust(widths[j]) if j in (0, 1, 2, 10) else v.rjust(widths[j]) for j, v in enumerate(c)))
        if i == 0:
            print("  ".join("-" * wd for wd in widths))


def markdown(rows: list[Row], checks: list[dict[str, Any]], memory: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    lines = [f"Measured with `{settings['command']}` ({settings['machine']}; BART {settings['bart']}, "
             f"torch {settings['torch']}, sigpy {settings['sigpy']}).", "",
             "| " + " | ".join(HEAD) + " |", "|" + "|".join("---" if i in (0, 1, 2, 10) else "---:" for i in range(len(HEAD))) + "|"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    if checks:
        lines += ["", "| target | problem | mask | recon | other | result |", "|---|---|---|---:|---:|---|"]
        for c in checks:
            lines.append(f"| {c['target']} | {c['problem']} | {c['mask']} | {c['ours']:.2f} | {c['theirs']:.2f} | "
                         f"{'PASS' if c['pass'] else 'FAIL'} |")
    if memory:
        lines += ["", "| recon run --method l1-wavelet, 15 coils, 640x368 | peak RSS MiB | seconds | iterations |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {m['slices']} slices | {m['peak_rss_mb']:.0f} | {m['seconds']:.0f} | {m['iterations']} |" for m in memory]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    from recon.io.atomic import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        Path(tmp).write_text(text)


# --- main --------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="shepp-logan with 1D 4x and 8x masks only, a 4-lambda grid, SigPy L1 on the first mask only")
    ap.add_argument("--problems", nargs="+", choices=PROBLEMS, default=None)
    ap.add_argument("--masks", nargs="+", choices=tuple(MASKS), default=None)
    ap.add_argument("--grid", nargs="+", type=float, default=None, help=f"BART lambda grid (default {GRID})")
    ap.add_argument("--sigpy", choices=("first", "all", "none"), default=None,
                    help="where SigPy runs: the first mask of each problem (default), every mask, nowhere")
    ap.add_argument("--noise-var", type=float, default=10.0, help="bart noise -n for the phantoms (default 10)")
    ap.add_argument("--no-bart", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also the peak-RSS check of recon run on 4 and 32 slices")
    ap.add_argument("--memory-only", action="store_true", help="only the memory check")
    ap.add_argument("--memory-slices", nargs="+", type=int, default=[4, 32])
    ap.add_argument("--memory-iterations", type=int, default=None,
                    help="--iterations for the memory runs (default: the solver's)")
    ap.add_argument("--cache", type=Path, default=Path("out/benchmarks/cache"), help="phantom cache folder")
    ap.add_argument("--out", type=Path, default=Path("out/benchmarks/classical.json"))
    args = ap.parse_args(argv)

    from recon.app.runtime import configure_threads

    # recon run's thread policy (passive OpenMP waits, min(cores, 4) threads), set before torch loads: with
    # torch's spinning default, in-process timings on a busy machine were several times too slow
    configure_threads()
    import sigpy
    import torch

    from recon.errors import OutputError
    from recon.io.atomic import check_output_path

    if not args.out.parent.is_dir():
        args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        check_output_path(args.out, overwrite=True)
    except OutputError as exc:
        print(f"classical.py: {exc}", file=sys.stderr)
        return 2
    problems = args.problems or (["shepp-logan"] if args.quick else list(PROBLEMS))
    masks = args.masks or (["1d4", "1d8"] if args.quick else list(MASKS))
    grid = tuple(args.grid) if args.grid else (QUICK_GRID if args.quick else GRID)
    sigpy_where = args.sigpy or "first"
    use_bart = not args.no_bart and bart_available()
    settings = {
        "command": "python benchmarks/classical.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start",
        "bart": bart_version() if use_bart else None, "torch": torch.__version__, "sigpy": sigpy.__version__,
        "torch_threads": torch.get_num_threads(), "problems": problems, "masks": masks, "grid": list(grid),
        "sigpy_where": sigpy_where, "noise_var": args.noise_var,
    }
    rows: list[Row] = []
    descriptions: dict[str, str] = {}
    start = time.perf_counter()

    if not args.memory_only:
        import recon

        # warm-up (imports, FFT plans, wavelet filters) on a small problem, not timed
        warm = np.random.default_rng(0).standard_normal((1, 8, 64, 64)).astype(np.complex64)
        wmask = np.zeros(64, bool)
        wmask[::2] = True
        wmask[24:40] = True
        for method in RECON_METHODS:
            recon.reconstruct(warm * wmask, method, mask=wmask, iterations=None if method == "zero-filled" else 2)

        for pi, name in enumerate(problems):
            p = load_sample() if name == "sample" else load_phantom(name, args.cache, args.noise_var)
            descriptions[name] = p.description
            log(f"{name}: {p.description}")
            for mi, key in enumerate(masks):
                label = MASKS[key][0]
                mask, info = make_mask(key, p.kspace.shape)
                from recon.sampling import apply_mask

                ku, _ = apply_mask(p.kspace, mask)
                calib = calib_width(ku, mask)
                if mi == 0:  # first-call costs at this image size (FFT plans, allocations), not timed; they
                    # made the first 256 x 256 problem (Shepp-Logan 1D 4x) look 2x slower than the rest
                    recon.reconstruct(ku[:1], "l1-wavelet", mask=mask, iterations=2)
                log(f"{name}, {label}: achieved {info['achieved_acceleration']:.2f}x, centre {calib} lines")
                here = run_recon(p, ku, mask, label)
                if use_bart:
                    with tempfile.TemporaryDirectory(prefix="recon-bench-bart-") as tmp:
                        here += run_bart_problem(p, ku, calib, label, grid, Path(tmp))
                run_sig = sigpy_where == "all" or (sigpy_where == "first" and mi == 0 and (not args.quick or pi == 0))
                if run_sig:
                    here += run_sigpy(p, ku, calib, label, ("l1",) if args.quick else ("l1", "tv", "sense"))
                ours = {r.family: r.sec_per_slice for r in here if r.tool == "recon"}
                for r in here:
                    if r.sec_per_slice is not None and ours.get(r.family):
                        r.x_recon = r.sec_per_slice / ours[r.family]
                    r.extra.setdefault("achieved_acceleration", info["achieved_acceleration"])
                    r.extra.setdefault("calibration_lines", calib)
                rows += here

    memory: list[dict[str, Any]] = []
    if args.memory or args.memory_only:
        with tempfile.TemporaryDirectory(prefix="recon-bench-mem-") as tmp:
            memory = memory_check(tuple(args.memory_slices), args.memory_iterations, Path(tmp))

    checks = targets(rows)
    if memory and len(memory) >= 2:
        lo, hi = memory[0], memory[-1]
        checks.append({"target": f"recon run peak RSS, {hi['slices']} slices <= {MEMORY_GROWTH_LIMIT:g} x "
                                 f"{lo['slices']} slices (15 coils, 640x368)",
                       "problem": "simulated", "mask": "1D 4x", "ours": hi["peak_rss_mb"], "theirs": lo["peak_rss_mb"],
                       "pass": hi["peak_rss_mb"] <= MEMORY_GROWTH_LIMIT * lo["peak_rss_mb"]})
    settings["seconds"] = time.perf_counter() - start

    for name, d in descriptions.items():
        print(f"{name}: {d}")
    if rows:
        print()
        print_table(rows)
    if memory:
        print()
        for m in memory:
            print(f"recon run --method l1-wavelet, {m['slices']} slices x 15 coils x 640x368 "
                  f"(iterations {m['iterations']}): peak RSS {m['peak_rss_mb']:.0f} MiB, {m['seconds']:.0f} s")
    print()
    for c in checks:
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['target']}  [{c['problem']}, {c['mask']}: "
              f"recon {c['ours']:.3f} vs {c['theirs']:.3f}]")

    payload = {"settings": settings, "problems": descriptions, "rows": [r.__dict__ for r in rows],
               "targets": checks, "memory": memory}
    write_atomic(args.out, json.dumps(payload, indent=1, default=float) + "\n")
    md = args.out.with_suffix(".md")
    write_atomic(md, markdown(rows, checks, memory, settings))
    print(f"\nJSON: {args.out}\nmarkdown: {md}\n({settings['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
