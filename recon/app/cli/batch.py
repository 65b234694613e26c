"""``recon batch INPUT_DIR OUTPUT_DIR``: reconstruct a whole folder, resumably, locally or on Dask.

Every ``recon run`` option (method, solver, undersampling, device) is accepted: they are copied from the
``run`` parser itself, so an option added there works here too. Progress goes to stderr; the summary table
to stdout. Exit code 0 when every file succeeded (or was skipped as finished), 1 when any file failed, 2 for
bad usage or an unusable output folder.
"""
from __future__ import annotations

import argparse
import sys
from recon.app.cli import run as run_cli
from recon.app.batch.backends import available_cores
from recon.app.runtime import configure_threads, resolve_threads
from recon.app.cli.run import check_run_args, options_from_args, undersampling_from_args
from recon.app.batch import DEFAULT_PATTERN, format_summary, run_batch
from recon.errors import UsageError

#: ``recon run`` options that make no sense per batch (batch has --resume/--no-resume instead of --overwrite)
_RUN_ONLY = {"input", "output", "overwrite", "json", "help"}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Copy the options of ``recon run`` (with their argument groups) onto ``p``."""
    holder = argparse.ArgumentParser(add_help=False)
    sub = holder.add_subparsers()
    run_cli.add_parser(sub)
    run_p = sub.choices["run"]
    for group in run_p._action_groups:
        actions = [a for a in group._group_actions if a.dest not in _RUN_ONLY]
        if not actions:
            continue
        plain = group.title in ("options", "optional arguments", "positional arguments")
        target = p if plain else p.add_argument_group(group.title, group.description)
        for action in actions:
            target._add_action(action)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="reconstruct every raw file of a folder (resumable; local workers or Dask)",
        description="One output per input, same relative path and name (.h5, fastMRI submission layout), "
                    "plus OUTPUT_DIR/manifest.json. A finished output made with the same settings is skipped; "
                    "one made with other settings is an error for that file (use another OUTPUT_DIR or "
                    "--no-resume, which overwrites).")
    p.add_argument("input_dir", help="folder of raw files (searched recursively)")
    p.add_argument("output_dir", help="folder for the reconstructions and manifest.json (created if missing)")
    _add_run_options(p)
    g = p.add_argument_group("batch")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: the number of cores); with --scheduler local, Dask workers")
    g.add_argument("--scheduler", default=None, metavar="local|tcp://HOST:PORT",
                   help="run on Dask distributed: 'local' starts a LocalCluster on 127.0.0.1, an address "
                        "connects to a running scheduler (needs pip install 'recon-mri[distributed]')")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip inputs whose output is finished with the same settings (default); "
                        "--no-resume reconstructs everything and overwrites existing outputs")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N inputs (sorted)")
    g.add_argument("--pattern", default=None, metavar="GLOB",
                   help="input file names to take, at any depth; comma-separated globs allowed (default: every raw "
                        "format: *.h5,*.hdf5,*.dat,*.cfl); with a '/', a relative path glob")
    g.add_argument("--target-dir", default=None, metavar="DIR",
                   help="ground-truth files at the same relative paths: NMSE/PSNR/SSIM per file and overall")
    g.add_argument("--tiers", default="pixel", metavar="pixel,feature,task",
                   help="metric tiers to score per file and overall: pixel (NMSE, PSNR, SSIM), feature (HaarPSI, "
                        "VIF, GMSD, HFEN), task (tissue-class Dice, edge F1); against --target-dir, else the "
                        "input's own reference; default: pixel")
    g.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="a live bar (terminal default) or one log line per file")
    p.set_defaults(handler=main)


def _threads_per_worker(args: argparse.Namespace) -> int | None:
    """torch threads per worker (``recon.app.runtime``'s policy; None for a remote Dask cluster without
    ``--threads``: its cores are unknown here). Also configures this process, before torch is imported, so
    that its own torch work follows the policy too."""
    remote = args.scheduler not in (None, "local")
    per_worker = args.threads if remote else resolve_threads(args.threads, args.workers or available_cores())
    configure_threads(per_worker)
    return per_worker


def batch_options(args: argparse.Namespace) -> dict:
    """``recon run``'s options of a batch (:func:`recon.app.cli.run.options_from_args`), plus ``epi_correction:
    False`` for ``--no-epi-correction``: the workers pass it to ``reconstruct_file`` and a resumed output must
    have been made with it (its ``parameters`` record it)."""
    options = options_from_args(args)
    if getattr(args, "epi_correction", True) is False:
        options["epi_correction"] = False
    return options


def main(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")

    check_run_args(args)  # a calibration for another method/weights/acceleration: exit 2 before any work
    live = {"auto": None, "bar": True, "lines": False}[args.progress]
    threads = _threads_per_worker(args)
    result = run_batch(
        args.input_dir, args.output_dir, method=args.method, options=batch_options(args),
        undersampling=undersampling_from_args(args), workers=args.workers, scheduler=args.scheduler,
        threads=threads,
        prewhiten=getattr(args, "prewhiten", True),
        resume=args.resume, limit=args.limit, pattern=args.pattern or DEFAULT_PATTERN, target_dir=args.target_dir,
        tiers=args.tiers, live=live, command=["recon", *sys.argv[1:]],
    )
    print(format_summary(result.manifest))
    print(f"manifest: {result.manifest_path}")
    return result.exit_code
