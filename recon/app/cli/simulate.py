"""``recon simulate OUT_DIR``: a fastMRI-layout multi-coil dataset from the bundled real Colin 27 T1 volume.

Each file holds ``--slices`` consecutive axial slices of the brain, with simulated birdcage coil
sensitivities, a smooth background phase, readout oversampling and complex Gaussian noise
(:func:`recon.simulate.write_dataset`); file ``i`` uses seed ``--seed + i``. Files are ``sim_000.h5``,
``sim_001.h5``, ... with ``kspace`` (slices, coils, H * oversampling, W) complex64, ``reconstruction_rss``
(slices, H, W) and an ``ismrmrd_header``, so ``recon batch``, ``recon eval`` and training read them as
fastMRI files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from recon.errors import UsageError
from recon.simulate import load_colin27, write_dataset
from recon.io.validate import check_finite_option

#: axial Colin 27 slices that cut through the brain (below: neck and skull base; above: vertex)
BRAIN_SLICES = (30, 150)


def slab_starts(files: int, slices: int, region: tuple[int, int] = BRAIN_SLICES) -> list[int]:
    """First axial slice of each file's slab: ``files`` slabs of ``slices`` spread evenly over ``region``.

    Slabs overlap when ``files * slices`` exceeds the region (the files still differ: each has its own seed
    for noise and phase).
    """
    lo, hi = region
    if slices > hi - lo:
        raise UsageError(f"--slices must be at most {hi - lo} (the brain's axial extent), got {slices}")
    last = hi - slices
    if files == 1:
        return [lo + (last - lo) // 2]
    return [int(round(v)) for v in np.linspace(lo, last, files)]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a fastMRI-layout multi-coil dataset simulated from real brain images")
    p.add_argument("out_dir", help="folder to write (created if missing; its parent must exist)")
    p.add_argument("--files", type=int, default=4, metavar="K", help="number of files (volumes) (default: 4)")
    p.add_argument("--slices", type=int, default=4, metavar="N", help="slices per file (default: 4)")
    p.add_argument("--coils", type=int, default=8, metavar="C", help="receive coils (default: 8)")
    p.add_argument("--snr", type=float, default=30.0,
                   help="mean object signal / noise std per coil (default: 30); 0 = noiseless")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="image size (readout H, phase encode W): centre crop/zero pad of the 217 x 181 slices")
    p.add_argument("--oversampling", type=int, default=2,
                   help="readout oversampling factor, as on scanners and in fastMRI (default: 2)")
    p.add_argument("--noise-correlation", type=float, default=0.0, metavar="RHO",
                   help="coil noise correlation rho^|i-j| between channels (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="file i uses seed + i (default: 0)")
    p.add_argument("--prefix", default="sim", help="file names PREFIX_000.h5, ... (default: sim)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files of the same names")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.files < 1 or args.slices < 1:
        raise UsageError(f"--files and --slices must be >= 1, got {args.files} and {args.slices}")
    if args.coils < 1:
        raise UsageError(f"--coils must be >= 1, got {args.coils}")
    if args.size is not None and min(args.size) < 1:
        raise UsageError(f"--size must be positive, got {args.size[0]} {args.size[1]}")

    if args.snr != float("inf"):
        check_finite_option("--snr", args.snr)  # nan is not "noiseless" (issue 18); inf is
    if args.snr < 0:
        raise UsageError(f"--snr must be >= 0 (0 = noiseless), got {args.snr}")
    starts = slab_starts(args.files, args.slices)
    colin = load_colin27(shape=tuple(args.size) if args.size else None)
    volume = np.concatenate([colin[s:s + args.slices] for s in starts], axis=0)

    def report(i: int, n: int, path: Path) -> None:
        print(f"recon simulate: [{i + 1}/{n}] {path}", flush=True)

    paths = write_dataset(
        args.out_dir, volume, slices_per_file=args.slices, num_coils=args.coils,
        snr=args.snr if args.snr > 0 else None, seed=args.seed, readout_oversampling=args.oversampling,
        noise_correlation=args.noise_correlation, prefix=args.prefix, overwrite=args.overwrite, progress=report,
    )
    h, w = volume.shape[-2:]
    print(f"recon simulate: wrote {len(paths)} file(s) to {args.out_dir}: {args.slices} slices x {args.coils} coils "
          f"x {h * args.oversampling} x {w} k-space each (Colin 27 axial slices from {starts[0]} to "
          f"{starts[-1] + args.slices - 1}, SNR {args.snr or 'inf'})")
    return 0
