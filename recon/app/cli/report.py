"""``recon report RUN_DIR [--tiers pixel,feature,task] [--target-dir DIR] [--overwrite/--no-overwrite]``:
``RUN_DIR/report.html``, one self-contained page (:mod:`recon.app.report`).

RUN_DIR is a ``recon batch`` OUTPUT_DIR (``manifest.json``), a ``recon demo`` folder (``metrics.json``), or any
folder of reconstruction ``.h5`` files (with ``--target-dir`` for references). The page is regenerated on
each call (written atomically); ``--no-overwrite`` refuses to replace an existing one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from recon.app.batch.lifetime import stale_run
from recon.app.batch.manifest import load_manifest, MANIFEST_NAME
from recon.app.report import build_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write RUN_DIR/report.html: images, error/uncertainty maps, tier metric tables, plots",
        description="One self-contained HTML page for a run folder (recon batch OUTPUT_DIR, recon demo folder, or "
                    "a folder of reconstruction .h5 files): run summary, per-tier metric tables per file and "
                    "aggregate, metric vs acceleration plots, and per file the reference, reconstruction, "
                    "|error| map and uncertainty/hallucination maps when present.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder; the page goes into it")
    p.add_argument("--tiers", default="pixel,feature,task",
                   help="comma-separated metric tiers: pixel, feature, task (default: all three); metrics the "
                        "run did not store are computed against the references")
    p.add_argument("--target-dir", type=Path, default=None, metavar="DIR",
                   help="fastMRI targets (reconstruction_rss) with the reconstructions' relative file names")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
                   help="replace an existing report.html (default: yes, the page is regenerated)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    why = stale_run(args.run_dir, load_manifest(args.run_dir / MANIFEST_NAME))
    if why:  # a SIGKILLed batch: its manifest still says "running"
        print(f"recon: {args.run_dir}: {why}; rerun recon batch to resume", file=sys.stderr)
    path = build_report(args.run_dir, tiers=args.tiers, target_dir=args.target_dir, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0
