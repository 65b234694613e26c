"""``recon eval --target-dir T --predictions-dir P``: fastMRI's evaluation over two folders.

stdout: ``NMSE = m +/- 2std  PSNR = ...  SSIM = ...`` (mean +- 2 standard deviations over volumes, as
fastMRI prints), followed by the metrics of the other ``--tiers`` (``pixel,feature,task``; default ``pixel``)
in the same form; stderr: how many volumes were evaluated / skipped. ``--json`` and ``--csv`` write reports
(replaced if they exist, atomically).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from recon.io.atomic import atomic_path, check_output_path
from recon.metrics.evaluation import evaluate_folders
from recon.metrics.tiers import parse_tiers, tier_metric_names

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="fastMRI's evaluation (NMSE, PSNR, SSIM) of a predictions folder against targets")
    p.add_argument("--target-dir", required=True, type=Path,
                   help="fastMRI files with reconstruction_rss (multi-coil) or reconstruction_esc (single-coil)")
    p.add_argument("--predictions-dir", required=True, type=Path,
                   help="reconstructions (dataset 'reconstruction') with the targets' relative file names")
    p.add_argument("--acquisition", default=None,
                   help="only targets with this acquisition attribute (e.g. CORPD_FBK, AXT2)")
    p.add_argument("--acceleration", type=float, default=None,
                   help="only targets with this acceleration (the target's attribute, else the prediction's mask)")
    p.add_argument("--challenge", choices=("multicoil", "singlecoil"), default=None,
                   help="target dataset reconstruction_rss (multicoil) or reconstruction_esc (singlecoil); "
                        "default: whichever the target has")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON")
    p.add_argument("--csv", type=Path, default=None, metavar="PATH", help="write one row per volume as CSV")
    p.add_argument("--tiers", default="pixel",
                   help="comma-separated evaluation tiers: pixel (NMSE, PSNR, SSIM), feature (HaarPSI, VIF, GMSD, "
                        "HFEN), task (tissue-class Dice, edge F1); default: pixel")
    p.set_defaults(handler=main)


def csv_text(result) -> str:
    """One row per volume: ``file,slices,nmse,psnr,ssim`` and one column per metric of the other tiers
    (full float precision)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "slices", *result.metric_names])
    for name, vals in result.files.items():
        writer.writerow([name, vals["slices"], *(repr(vals[m]) for m in result.metric_names)])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    tiers = parse_tiers(args.tiers)
    tier_metric_names(tiers)  # a tier whose module cannot load: a usage error before any work
    for out in (args.json, args.csv):  # before any work: the report folders must exist
        if out is not None:
            check_output_path(out, overwrite=True)
    recon_key = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}.get(args.challenge or "")
    result = evaluate_folders(args.target_dir, args.predictions_dir, acquisition=args.acquisition,
                              acceleration=args.acceleration, recon_key=recon_key, tiers=tiers)
    if args.json is not None:
        report = {**result.to_dict(), "target_dir": str(args.target_dir),
                  "predictions_dir": str(args.predictions_dir),
                  "filters": {"acquisition": args.acquisition, "acceleration": args.acceleration}}
        _write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.csv is not None:
        _write_text(args.csv, csv_text(result))
    skipped = f", {len(result.skipped)} skipped by the filters" if result.skipped else ""
    sys.stderr.write(f"recon: evaluated {result.count} volume(s){skipped}\n")
    print(result.summary_line())
    return 0
