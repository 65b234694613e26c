"""Batch throughput: local process pool with 1 and 2 workers vs a Dask LocalCluster, and peak memory per worker.

Data: a simulated fastMRI-size multi-coil dataset (``recon simulate``'s generator: real Colin 27 slices,
15 birdcage coils, 640 x 368 k-space = 320 x 368 images with 2x readout oversampling, SNR 30), ``--files``
volumes of ``--slices`` slices, plus volumes ``--long-factor`` times longer for the memory check.

Every configuration gets a fresh backend that is started and warmed up first (one file per worker, so torch
is imported and the FFT plans exist in every worker), then the whole dataset is timed with ``run_batch``:
slices/s = slices / wall time of the run. Peak RSS per worker is the largest ``ru_maxrss`` a worker reported
(``peak_rss_mb`` in the manifest). The ratios asked for in issue 5: 2 workers / 1 worker (>= 1.7 on two
otherwise idle cores), Dask / local pool with the same workers (within 15 %), and peak RSS on long volumes /
short volumes (about 1: memory does not grow with the volume).

    .venv/bin/python benchmarks/batch.py                # the table (a few minutes on 2 cores)
    .venv/bin/python benchmarks/batch.py --files 2 --slices 2 --no-dask   # quick check
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon.app.batch import DaskBackend, LocalPoolBackend, run_batch  # noqa: E402
from recon.app.batch.backends import available_cores  # noqa: E402


def make_data(folder: Path, files: int, slices: int, coils: int, size: tuple[int, int], seed: int) -> None:
    from recon.app.cli.simulate import slab_starts
    from recon.simulate import load_colin27, write_dataset

    import numpy as np

    colin = load_colin27(shape=size)
    volume = np.concatenate([colin[s:s + slices] for s in slab_starts(files, slices)], axis=0)
    write_dataset(folder, volume, slices_per_file=slices, num_coils=coils, snr=30.0, seed=seed,
                  readout_oversampling=2, acquisition="AXT1_SIM")


def measure(backend, data: Path, work: Path, label: str, method: str = "zero-filled") -> dict:
    """Warm the backend up on one file per worker, then time the whole dataset."""
    devnull = open(os.devnull, "w")
    opts = {} if method == "zero-filled" else {"undersampling": _undersampling()}
    with backend:
        run_batch(data, work / f"{label}-warmup", backend=backend, limit=backend.workers, stream=devnull,
                  method=method, **opts)
        t0 = time.perf_counter()
        res = run_batch(data, work / label, backend=backend, stream=devnull, method=method, **opts)
        wall = time.perf_counter() - t0
    files = res.manifest["files"].values()
    if res.summary["failed"]:
        raise SystemExit(f"{label}: {res.summary['failed']} file(s) failed: {res.manifest['files']}")
    slices = sum(e["slices"] for e in files)
    peaks: dict[str, float] = {}
    for e in files:
        peaks[e["worker"]] = max(peaks.get(e["worker"], 0.0), e.get("peak_rss_mb") or 0.0)
    return {"label": label, "workers": backend.workers, "slices": slices, "seconds": wall,
            "rate": slices / wall, "peak_rss_mb": max(peaks.values()), "workers_used": len(peaks)}


def _undersampling():
    """fastMRI random 4x (centre 0.08), seeded by file name: what ``recon batch --accel 4`` uses."""
    from recon.app.pipeline import Undersampling

    return Undersampling("random", (4.0,), (0.08,), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=4, help="volumes (default 4)")
    p.add_argument("--slices", type=int, default=3, help="slices per volume (default 3)")
    p.add_argument("--coils", type=int, default=15)
    p.add_argument("--size", type=int, nargs=2, default=(320, 368), metavar=("H", "W"),
                   help="image size; k-space is 2H x W (default 320 368 -> 640 x 368)")
    p.add_argument("--long-factor", type=int, default=3, help="slices factor of the long volumes (memory check)")
    p.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster rows")
    p.add_argument("--method", default="zero-filled",
                   help="method of every job (default zero-filled; e.g. l1-wavelet, at 4x, for jobs long enough "
                        "that start-up does not dominate the parallel efficiency)")
    p.add_argument("--keep", default=None, help="use/keep the datasets in this folder instead of a temporary one")
    args = p.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="recon-batch-bench-"))
    short, long = root / "short", root / "long"
    t0 = time.perf_counter()
    if not short.exists():
        make_data(short, args.files, args.slices, args.coils, tuple(args.size), seed=0)
    if not long.exists():
        make_data(long, 1, args.slices * args.long_factor, args.coils, tuple(args.size), seed=100)
    print(f"method {args.method}; data: {args.files} volumes x {args.slices} slices, {args.coils} coils, "
          f"{2 * args.size[0]} x {args.size[1]} k-space; memory check: 1 volume x "
          f"{args.slices * args.long_factor} slices; simulated in {time.perf_counter() - t0:.1f} s; "
          f"{available_cores()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="recon-batch-out-") as tmp:
        work = Path(tmp)
        rows = [measure(LocalPoolBackend(1), short, work, f"local pool, 1 worker ({available_cores()} threads)",
                        args.method),
                measure(LocalPoolBackend(2), short, work, "local pool, 2 workers", args.method)]
        if not args.no_dask:
            rows.insert(2, measure(DaskBackend("local", 2), short, work, "Dask LocalCluster, 2 workers", args.method))
        if available_cores() > 1:  # torch threads per worker = cores // workers; show 1 thread as well
            rows.append(measure(LocalPoolBackend(1, threads=1), short, work, "local pool, 1 worker (1 thread)",
                                args.method))
        long_row = measure(LocalPoolBackend(1), long, work, f"local pool, 1 worker, {args.long_factor}x longer volume",
                           args.method)

    print(f"\n{'configuration':<46} {'slices':>6} {'seconds':>8} {'slices/s':>9} {'peak RSS/worker':>16}")
    for r in rows + [long_row]:
        print(f"{r['label']:<46} {r['slices']:>6} {r['seconds']:>8.2f} {r['rate']:>9.2f} {r['peak_rss_mb']:>12.0f} MiB")
    one, two = rows[0], rows[1]
    print(f"\n2 workers / 1 worker throughput: {two['rate'] / one['rate']:.2f}x (issue target >= 1.7x on 2 idle cores)")
    single = [r for r in rows if r["label"].endswith("(1 thread)")]
    if single:
        print(f"2 workers / 1 worker with 1 thread: {two['rate'] / single[0]['rate']:.2f}x; parallel efficiency "
              f"{two['rate'] / (2 * single[0]['rate']):.2f} (2 workers x 1 thread over 2 x one worker x 1 thread; "
              f"issue 17 target >= 0.85)")
    if not args.no_dask:
        print(f"Dask LocalCluster / local pool (2 workers): {rows[2]['rate'] / two['rate']:.2f} (target within 15 %)")
    print(f"peak RSS per worker, {args.long_factor}x longer volume / short volumes (1 worker): "
          f"{long_row['peak_rss_mb'] / one['peak_rss_mb']:.2f} (about 1: memory does not grow with the volume)")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
