"""``recon export-weights IN.pt OUT.pt --format fastmri``: write the plain fastMRI ``state_dict`` of a
fastMRI-architecture model (a ``recon train --model fastmri-varnet`` checkpoint, a recon weights file, a
Lightning .ckpt or a state dict), which ``fastmri.models.VarNet`` / ``Unet`` load with ``strict=True``."""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-weights", help="export a fastMRI-architecture model's weights for fastMRI's scripts")
    p.add_argument("input", metavar="IN.pt", help="checkpoint or weights file of a fastMRI-architecture model")
    p.add_argument("output", metavar="OUT.pt", help="plain state dict to write (torch.save(model.state_dict()))")
    p.add_argument("--format", required=True, choices=["fastmri"], help="output layout (fastmri: plain state dict)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.pt if it exists")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    # deferred: loads recon.solvers.learned, torch, tqdm, which importing recon.app.cli.export_weights does not
    from recon.solvers.learned.checkpoints import export_fastmri

    config = export_fastmri(args.input, args.output, overwrite=args.overwrite)
    print(json.dumps({"output": str(args.output), "format": args.format, "architecture": config}))
    return 0
