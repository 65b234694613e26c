"""``recon info FILE``: what a raw file is (format, shape, coils, slices, matrices, sampling, noise scans)."""
from __future__ import annotations

import argparse
import json
from recon.io import open_raw


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a raw file (fastMRI/MRD .h5, twix .dat, BART .cfl/.hdr)")
    p.add_argument("file", help="raw data file; a BART pair by its .cfl or .hdr")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    with open_raw(args.file) as f:
        info = f.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            if isinstance(value, (list, tuple)):
                value = " x ".join(str(v) for v in value) if key.endswith(("shape", "matrix")) else list(value)
            print(f"{key:<{width}}  {value}")
    return 0
