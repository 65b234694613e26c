"""``recon run INPUT OUTPUT``: reconstruct one raw file into a ``.h5`` reconstruction or an image.

Progress goes to stderr, a one-line summary to stdout (``--json``: the summary dict as JSON).
"""
from __future__ import annotations

import argparse
import json
import sys

from recon.solvers.methods import lambda_value  # noqa: F401 - re-exported (``--lambda``'s parser)
from recon.solvers.methods import command_line_options, get_method, METHODS
from recon.sampling import ALL_MASK_TYPES
from recon.errors import UsageError
from recon.io.validate import check_accelerations
from recon.app.runtime import configure_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="reconstruct one raw file (fastMRI/MRD .h5, twix .dat, BART .cfl)")
    p.add_argument("input", help="raw data file")
    p.add_argument("output", help="output: .h5 (fastMRI submission layout), .png, .nii, .nii.gz, .dcm (Enhanced MR) or .mrd.h5 (ISMRMRD images)")
    p.add_argument("--method", default="zero-filled", choices=sorted(METHODS),
                   help="reconstruction method (default: zero-filled): " + "; ".join(
                       f"{m.name}: {m.summary}" for m in METHODS.values() if m.summary))
    add_undersampling_arguments(p)
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (per worker in recon batch); default: OMP_NUM_THREADS if set, else "
                        "the physical cores free at start, at most 4, divided among batch workers (recon.app.runtime)")
    add_method_arguments(p)
    p.add_argument("--no-epi-correction", dest="epi_correction", action="store_false",
                   help="EPI: no ramp-sampling regridding and no Nyquist-ghost correction (data_specs/epi.md)")
    p.add_argument("--partial-fourier", dest="partial_fourier", choices=("pocs", "homodyne", "zero"), default="pocs",
                   help="partial Fourier (phase encode or asymmetric echo, from the header) completed by POCS "
                        "(default), homodyne or zero filling, for zero-filled, grappa and sense; the iterative "
                        "and learned methods leave it as unsampled k-space (data_specs/twix.md)")
    p.add_argument("--no-prewhiten", dest="prewhiten", action="store_false",
                   help="do not whiten the coils' noise with the input's noise scans (default: whiten, with the "
                        "noise/data bandwidth ratio, whenever the input has noise scans; data_specs/conventions.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=main)


def add_method_arguments(p: argparse.ArgumentParser, groups: tuple[str, ...] | None = None) -> None:
    """The methods' options as flags, generated from their options classes (:mod:`recon.solvers.methods`):
    flag, type, choices and help come from the field's :class:`~recon.solvers.methods.Option`; each group's
    title lists the methods that take its options. Every flag defaults to None (not given: the method's own
    default applies and nothing is recorded). ``groups``: only these group names (None: all)."""
    made: dict[str, argparse._ArgumentGroup | argparse.ArgumentParser] = {}
    options = command_line_options()
    for name, (spec, methods) in options.items():
        if groups is not None and spec.group not in groups:
            continue
        target = made.get(spec.group)
        if target is None:
            takers = sorted({m for (s, ms) in options.values() if s.group == spec.group for m in ms})
            target = made[spec.group] = (p if not spec.group else
                                         p.add_argument_group(f"{spec.group} ({', '.join(takers)})"))
        if spec.parse is None:  # a switch
            target.add_argument(spec.flag, dest=name, action="store_true", default=None, help=spec.help)
        else:
            target.add_argument(spec.flag, dest=name, type=spec.parse, choices=spec.choices, default=None,
                                metavar=spec.metavar, help=spec.help)


def add_adapt_arguments(p: argparse.ArgumentParser) -> None:
    """``--adapt/--adapt-steps/--adapt-per/--adapt-lr``: scan-specific self-supervised fine-tuning of a learned
    method (:mod:`recon.solvers.learned.adapt`), as :func:`add_method_arguments` makes them."""
    add_method_arguments(p, groups=("scan-specific adaptation",))


def add_undersampling_arguments(p: argparse.ArgumentParser) -> None:
    """``--mask-type/--accel/--center-fraction/--seed``: retrospective undersampling of fully sampled input."""
    g = p.add_argument_group("retrospective undersampling (fully sampled inputs)")
    g.add_argument("--mask-type", choices=ALL_MASK_TYPES, default=None,
                   help="fastMRI column mask type, or poisson/gaussian 2D masks (default: random when --accel is given)")
    g.add_argument("--accel", type=float, nargs="+", default=None, metavar="R",
                   help="acceleration(s); several = one drawn per file, as fastMRI")
    g.add_argument("--center-fraction", type=float, nargs="+", default=None, metavar="F",
                   help="fully sampled centre fraction(s), paired with --accel (default: 0.08 for 4x, 0.04 for 8x)")
    g.add_argument("--seed", default=None,
                   help="mask seed (integer); default: seeded from the file name as fastMRI's transforms do")


#: fastMRI's pairing of accelerations with centre fractions (its challenge settings)
_DEFAULT_CENTER_FRACTION = {4.0: 0.08, 8.0: 0.04}


def undersampling_from_args(args: argparse.Namespace):
    """The :class:`recon.app.pipeline.Undersampling` the arguments ask for, or None."""
    # deferred: loads torch, tqdm, which importing recon.app.cli.run does not
    from recon.app.pipeline import Undersampling

    if args.accel is None:
        if args.mask_type or args.center_fraction or args.seed is not None:
            raise UsageError("--mask-type/--center-fraction/--seed need --accel R")
        return None

    check_accelerations(args.accel, args.center_fraction)  # 0, negative, nan, inf: one clear line (issue 18)
    accels = tuple(int(a) if float(a).is_integer() else float(a) for a in args.accel)
    if args.center_fraction is None:
        fractions = tuple(_DEFAULT_CENTER_FRACTION.get(float(a), 0.32 / float(a)) for a in accels)
    else:
        fractions = tuple(args.center_fraction)
    seed = args.seed
    if seed is not None:
        try:
            seed = int(seed)
        except ValueError:
            raise UsageError(f"--seed must be an integer, got {seed!r}") from None
    return Undersampling(args.mask_type or "random", accels, fractions, seed)


def _progress(done: int, total: int) -> None:
    """A live counter on a terminal; plain lines (one per slice) when stderr is a file or pipe."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\rrecon: slice {done}/{total}" + ("\n" if done == total else ""))
    else:
        sys.stderr.write(f"recon: slice {done}/{total}\n")
    sys.stderr.flush()


def options_from_args(args: argparse.Namespace) -> dict:
    """Method options given on the command line (only those set, so methods keep their defaults): every
    registry option (:func:`add_method_arguments`) whose value is not None, switches only when on."""
    options = {}
    for name, (spec, _) in command_line_options().items():
        value = getattr(args, name, None)
        if value is None or (spec.parse is None and not value) or (name == "device" and not value):
            continue
        options[name] = value
    if getattr(args, "partial_fourier", None) not in (None, "pocs"):  # the default is not an option (resume)
        options["partial_fourier"] = args.partial_fourier
    return options


def _metrics_text(summary: dict) -> str:
    """``, NMSE 0.0123, PSNR 31.20 dB, SSIM 0.8765`` when the summary has metrics, else ``""``."""
    m = summary.get("metrics")
    if not m:
        return ""
    return f", NMSE {m['nmse']:.4g}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}"


def _prewhitening_text(summary: dict) -> str:
    """``, prewhitened (bandwidth ratio 0.967)`` when the noise was whitened, else ``""``."""
    pw = summary.get("prewhitening") or {}
    if not pw.get("prewhitened"):
        return ""
    return f", prewhitened (bandwidth ratio {pw['bandwidth_ratio']:.4g})"


def main(args: argparse.Namespace) -> int:
    configure_threads(args.threads)  # before torch is imported (recon.app.runtime)
    # deferred: loads torch, tqdm, which importing recon.app.cli.run does not
    from recon.app.pipeline import reconstruct_file

    check_run_args(args)  # a calibration for another method/weights/acceleration: exit 2 before any work

    summary = reconstruct_file(args.input, args.output, method=args.method, overwrite=args.overwrite,
                               progress=_progress, undersampling=undersampling_from_args(args),
                               epi_correction=args.epi_correction, prewhiten=args.prewhiten,
                               **options_from_args(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        shape = " x ".join(str(v) for v in summary["shape"])
        print(f"{summary['output']}: {summary['method']} reconstruction of {summary['input']} "
              f"({summary['format']}), {shape}, {summary['seconds']:.2f} s" + _metrics_text(summary)
              + _prewhitening_text(summary))
    return 0


def check_method_options(args: argparse.Namespace) -> None:
    """The options given on the command line, checked once by the method's options class
    (:meth:`recon.solvers.methods.Method.parse_options`): an option the method does not take (``--adapt``
    with sense, ``--ensemble`` with diffusion, ...), a bad value (``--iterations 0``, ``--ensemble 1``,
    ``--lambda auto`` with sense, ...) or one that needs another (``--adapt-steps`` without ``--adapt``) is a
    :class:`UsageError` before any work."""
    # deferred: loads torch, tqdm, which importing recon.app.cli.run does not
    from recon.app.pipeline import PIPELINE_OPTIONS

    get_method(args.method).parse_options(options_from_args(args), PIPELINE_OPTIONS)


def _methods_that(attribute: str) -> tuple[str, ...]:
    return tuple(m.name for m in METHODS.values() if getattr(m, attribute))


#: methods whose intervals ``recon calibrate`` fits and ``--calibration`` applies (varnet/modl with --ensemble)
CALIBRATABLE = _methods_that("calibratable")
#: methods with a k-space split ensemble (``--ensemble K``)
ENSEMBLE_METHODS = _methods_that("has_ensemble")


def check_run_args(args: argparse.Namespace) -> None:
    """Before any work: the method's options (:func:`check_method_options`), and for ``recon run|batch
    --calibration FILE`` a calibration made for another method, other weights or options, or another nominal
    undersampling (slices are checked again)."""
    check_method_options(args)
    path = getattr(args, "calibration", None)
    if path is None:
        return
    # deferred: loads recon.solvers.uncertainty, which importing recon.app.cli.run does not
    from recon.solvers.uncertainty import calibration as calib

    cal = calib.load_calibration(path)
    if args.method not in CALIBRATABLE:
        raise UsageError(f"--calibration is for method(s) {', '.join(CALIBRATABLE)}, not {args.method!r}"
                         f" (the calibration was made for {cal.get('method')!r})", path)
    if args.method in ENSEMBLE_METHODS and getattr(args, "ensemble", None) is None:
        raise UsageError(f"--calibration for {args.method} needs --ensemble K (the calibration was made with "
                         f"{(cal.get('options') or {}).get('ensemble')!r})", path)
    o = options_from_args(args)
    calib.check_calibration(cal, path, method=args.method, weights=o.get("weights"),
                            options=calib.resolved_options(args.method, o),
                            undersampling=undersampling_from_args(args))
