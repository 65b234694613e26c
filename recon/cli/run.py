"""``recon run INPUT OUTPUT``: reconstruct one raw file into a ``.h5`` reconstruction or an image.

Progress goes to stderr, a one-line summary to stdout (``--json``: the summary dict as JSON).
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from recon.pipeline import METHODS

    p = sub.add_parser("run", help="reconstruct one raw file (fastMRI/MRD .h5, twix .dat, BART .cfl)")
    p.add_argument("input", help="raw data file")
    p.add_argument("output", help="output: .h5 (fastMRI submission layout), .png, .nii, .nii.gz or .dcm")
    p.add_argument("--method", default="zero-filled", choices=sorted(METHODS),
                   help="reconstruction method (default: zero-filled)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=main)


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"\rrecon: slice {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def options_from_args(args: argparse.Namespace) -> dict:
    """Method options given on the command line (only those set, so methods keep their defaults)."""
    options = {}
    if getattr(args, "device", None):
        options["device"] = args.device
    return options


def main(args: argparse.Namespace) -> int:
    from recon.pipeline import reconstruct_file

    summary = reconstruct_file(args.input, args.output, method=args.method, overwrite=args.overwrite,
                               progress=_progress, **options_from_args(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        shape = " x ".join(str(v) for v in summary["shape"])
        print(f"{summary['output']}: {summary['method']} reconstruction of {summary['input']} "
              f"({summary['format']}), {shape}, {summary['seconds']:.2f} s")
    return 0
