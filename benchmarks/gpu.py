"""GPU path check (issue 17, item 4): operators, ESPIRiT, L1-wavelet, VarNet and the diffusion sampler on a
torch device against the CPU, with parity (same PSNR to 0.01 dB) and timings.

Case: one 320 x 320 16-coil slice (Colin 27 axial slice 88 on birdcage coils, SNR 30), fastMRI random 4x
(centre 0.08, seed 0). Per component: the CPU result and time, the device result and time (median of
``--repeats`` after a warm-up, ``torch.cuda.synchronize`` around each), the PSNR of each against the fully
sampled RSS and their difference. Targets on a GPU: ESPIRiT + 30 FISTA iterations under 0.1 s, VarNet forward
under 0.05 s, diffusion 8 samples under 3 s; PSNR differences under 0.01 dB.

Then the host synchronisations (torch's CUDA sync debug mode) of the solver loops: FISTA (L1-wavelet, random
shifts, gradient restart) and CG-SENSE with few and with many iterations; a loop without host synchronisation
makes the same number either way (CG reads its stopping flag every ``recon.solvers.cg.CHECK_EVERY``
iterations on a GPU).

Without CUDA the script says so and exits 0 (``--device cpu`` runs the same code on the CPU twice: a check
of the script itself, not of a GPU).

    .venv/bin/python benchmarks/gpu.py [--device cuda] [--repeats 5] [--threads 2] [--json gpu.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def case():
    from recon.io.types import RawData
    from recon.sampling import apply_mask, mask_from_options
    from recon.simulate import load_colin27, simulate_multicoil

    full = simulate_multicoil(load_colin27([88], shape=(320, 320)), num_coils=16, snr=30.0, seed=0).raw
    mask, _ = mask_from_options("random", full.kspace.shape, [4], [0.08], 0)
    k, used = apply_mask(full.kspace, mask, full.header)
    return full, RawData(k, full.header, used)


def timed(fn, device: str, repeats: int):
    """``(median seconds, last output)`` of ``fn()`` after one warm-up, synchronising a CUDA device."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    out = fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def components(data, device: str):
    """name -> callable returning a ``(1, H, W)`` magnitude image as numpy."""
    import torch

    import recon
    from recon.solvers.diffusion.method import diffusion_method
    from recon.solvers.learned.method import get_model

    k = torch.from_numpy(data.kspace)
    m = torch.from_numpy(np.asarray(data.mask))

    def normal_op():
        problem = sense_problem(data, device)
        x = problem.aty
        for _ in range(30):
            x = problem.normal(x)
        return (x.abs() / x.abs().max()).cpu().numpy()

    def l1():
        return np.asarray(recon.reconstruct(data, "l1-wavelet", iterations=30, device=device).image)

    model = get_model("varnet", device=device)

    def varnet():
        with torch.no_grad():
            return model(k.to(device), m.to(device)).cpu().numpy()

    def diffusion():
        return diffusion_method(data, samples=8, device=device)["reconstruction"]

    return {"ESPIRiT + 30 SENSE normal operators": normal_op, "ESPIRiT + L1-wavelet (30 FISTA)": l1,
            "VarNet forward": varnet, "diffusion, 8 samples": diffusion}


def sense_problem(data, device: str):
    """The SENSE data term of ``data`` on ``device`` with ESPIRiT maps (no crop): k-space and mask moved by
    :func:`recon.operators.device.to_device` (pinned, non-blocking to a GPU)."""
    import torch

    from recon.coils import espirit_maps
    from recon.operators.device import to_device
    from recon.solvers.sense import cartesian_problem

    k = to_device(data.kspace, device)
    m = to_device(np.asarray(data.mask), device)[None, None, None]
    problem, _ = cartesian_problem(k, espirit_maps(k, mask=m, crop=0.0), m.to(torch.float32))
    return problem


def solver_syncs(data, device: str) -> dict[str, list[int]]:
    """Loop name -> host synchronisations ``[few iterations, many iterations]`` on ``device``."""
    from recon.operators.device import count_host_syncs
    from recon.solvers.cg import conjugate_gradient
    from recon.solvers.cs import solve_scaled

    problem = sense_problem(data, device)
    fista = [count_host_syncs(lambda n=n: solve_scaled(problem, "l1-wavelet", iterations=n)) for n in (10, 40)]
    cg = [count_host_syncs(lambda n=n: conjugate_gradient(problem.normal, problem.aty, max_iter=n, tol=0.0))
          for n in (8, 40)]
    return {"FISTA L1-wavelet, 10 / 40 iterations": fista, "CG-SENSE, 8 / 40 iterations (tol 0)": cg}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="write the table and the synchronisation counts here")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: benchmarks/gpu.py did not run (it needs a GPU; --device cpu checks the script)")
        return
    from recon.arrays import center_crop_or_pad, rss
    from recon.io.fourier import ifft2c
    from recon.metrics import volume_metrics

    full, data = case()
    ref = center_crop_or_pad(rss(ifft2c(full.kspace), axis=1), full.header.recon_size).astype(np.float32)
    cpu, dev = components(data, "cpu"), components(data, args.device)
    print(f"{'component':<38} {'cpu s':>8} {args.device + ' s':>9} {'speed-up':>9} {'PSNR cpu':>9} "
          f"{'PSNR dev':>9} {'diff dB':>8}")
    rows = []
    for name in cpu:
        t_cpu, out_cpu = timed(cpu[name], "cpu", max(1, args.repeats // 2))
        t_dev, out_dev = timed(dev[name], args.device, args.repeats)
        row = {"component": name, "cpu_s": t_cpu, "device_s": t_dev}
        if name.startswith("ESPIRiT + 30 SENSE"):  # not an image of the object: compare the two outputs
            row["relative_difference"] = float(np.linalg.norm(out_dev - out_cpu) / np.linalg.norm(out_cpu))
            print(f"{name:<38} {t_cpu:8.3f} {t_dev:9.4f} {t_cpu / t_dev:9.1f} {'':>9} {'':>9} "
                  f"rel. difference {row['relative_difference']:.1e}", flush=True)
        else:
            row["psnr_cpu"] = volume_metrics(ref, center_crop_or_pad(out_cpu, ref.shape[-2:]))["psnr"]
            row["psnr_device"] = volume_metrics(ref, center_crop_or_pad(out_dev, ref.shape[-2:]))["psnr"]
            print(f"{name:<38} {t_cpu:8.3f} {t_dev:9.4f} {t_cpu / t_dev:9.1f} {row['psnr_cpu']:9.2f} "
                  f"{row['psnr_device']:9.2f} {row['psnr_device'] - row['psnr_cpu']:+8.3f}", flush=True)
        rows.append(row)
    report = {"device": args.device, "rows": rows}
    if args.device.startswith("cuda"):
        report["syncs"] = solver_syncs(data, args.device)
        for loop, (few, many) in report["syncs"].items():
            print(f"host synchronisations, {loop}: {few} / {many}", flush=True)
        report["device_name"] = torch.cuda.get_device_name()
        report["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        print(f"{report['device_name']}; peak device memory {report['peak_memory_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
