"""``recon demo [--out out/demo] [--quick]``: the main job on the bundled sample (:mod:`recon.app.demo`).

Undersamples the bundled sample 4x and 8x, reconstructs it with every method (zero-filled, SENSE, GRAPPA,
L1-wavelet, TV, and the learned methods whose bundled weights load), writes one ``.h5`` per (method,
acceleration), ``demo.png``, ``metrics.md`` / ``metrics.json`` and ``report.html`` (``recon report``) into the
folder, and prints the metrics table on stdout (progress on stderr). A rerun replaces the demo's own outputs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from recon.app.runtime import configure_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="undersample the bundled sample 4x/8x, reconstruct it with every method, write out/demo/",
        description="Retrospective 4x/8x undersampling of the bundled sample (fastMRI random masks), "
                    "reconstructed with every method; writes one .h5 per method and acceleration, demo.png "
                    "(images and |error| maps) and metrics.md/metrics.json into the folder.")
    p.add_argument("--out", default="out/demo", help="output folder, created if missing (default: out/demo)")
    p.add_argument("--quick", action="store_true",
                   help="the middle slice at 4x with the classical methods only (a first look; tests)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: OMP_NUM_THREADS if set, else 1, fastest for the sample's small "
                        "slices on a shared machine)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    threads = configure_threads(args.threads, default=1)  # before torch is imported (recon.app.runtime)
    # deferred: loads torch, tqdm, which importing recon.app.cli.demo does not
    from recon.app.demo import DEFAULT, QUICK, run_demo

    config = QUICK if args.quick else DEFAULT
    out = Path(args.out)
    report = run_demo(out, config, threads=threads)
    print(f"recon demo: {report['sample']}, {'quick: ' if args.quick else ''}"
          f"{len(report['results'])} reconstructions in {report['seconds']:.1f} s")
    print()
    print(report["table"])
    print()
    for name, reason in report["skipped"].items():
        print(f"skipped {name}: {reason}")
    print(f"wrote {out / report['figure']}, {out / 'metrics.md'}, {out / 'metrics.json'}, "
          f"{out / report['report']} and {len(report['results'])} .h5 files into {out}")
    return 0
