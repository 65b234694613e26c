"""``recon run INPUT OUTPUT``: reconstruct one raw file into a ``.h5`` reconstruction or an image.

Progress goes to stderr, a one-line summary to stdout (``--json``: the summary dict as JSON).
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from recon.app.pipeline import METHODS

    p = sub.add_parser("run", help="reconstruct one raw file (fastMRI/MRD .h5, twix .dat, BART .cfl)")
    p.add_argument("input", help="raw data file")
    p.add_argument("output", help="output: .h5 (fastMRI submission layout), .png, .nii, .nii.gz, .dcm (Enhanced MR) or .mrd.h5 (ISMRMRD images)")
    p.add_argument("--method", default="zero-filled", choices=sorted(METHODS),
                   help="reconstruction method (default: zero-filled)")
    add_undersampling_arguments(p)
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (per worker in recon batch); default: OMP_NUM_THREADS if set, else "
                        "the physical cores free at start, at most 4, divided among batch workers (recon.app.runtime)")
    add_solver_arguments(p)
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="weights for varnet/modl/diffusion (a recon train checkpoint; default: the bundled ones)")
    add_adapt_arguments(p)
    add_ensemble_arguments(p)
    g = p.add_argument_group("posterior sampling (diffusion)")
    g.add_argument("--samples", type=int, default=None, metavar="K",
                   help="number of posterior samples per slice (default 4); their mean is the reconstruction")
    g.add_argument("--save-samples", action="store_true", help="also write the samples (S, K, H, W) magnitudes")
    g.add_argument("--steps", type=int, default=None, metavar="N",
                   help="sampler steps (default: 12 for dds, 50 for dps)")
    g.add_argument("--sampler", choices=("dds", "dps"), default=None, help="posterior sampler (default: dds)")
    g.add_argument("--calibration", default=None, metavar="FILE",
                   help="a 'recon calibrate' file: also write calibrated intervals lower/upper, and uncertainty = "
                        "their half-width (refused if made for other weights, options or acceleration)")
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


def add_adapt_arguments(p: argparse.ArgumentParser) -> None:
    """``--adapt/--adapt-steps/--adapt-per/--adapt-lr``: scan-specific self-supervised fine-tuning of a learned
    method (:mod:`recon.solvers.learned.adapt`)."""
    g = p.add_argument_group("scan-specific adaptation (varnet, modl)")
    g.add_argument("--adapt", action="store_true",
                   help="fine-tune a copy of the weights on the scan's own k-space first (self-supervised, with a "
                        "self-validation set choosing the step, step 0 = the given weights included); the weights "
                        "file is never changed")
    g.add_argument("--adapt-steps", type=int, default=None, metavar="N", help="adaptation steps (default 20)")
    g.add_argument("--adapt-per", choices=("slice", "volume"), default=None,
                   help="adapt per slice (default), or once per file (on its first slice) for all its slices")
    g.add_argument("--adapt-lr", type=float, default=None, metavar="LR", help="Adam learning rate (default 1e-3)")


def add_ensemble_arguments(p: argparse.ArgumentParser) -> None:
    """``--ensemble K``: a k-space split ensemble of a learned method, whose spread is its ``uncertainty`` and what
    ``recon calibrate`` turns into intervals (:func:`recon.solvers.learned.method.learned_reconstruction`)."""
    g = p.add_argument_group("uncertainty ensemble (varnet, modl)")
    g.add_argument("--ensemble", type=int, default=None, metavar="K",
                   help="also run the network K >= 2 more times, each without a random 20%% of the acquired lines "
                        "outside the calibration region; uncertainty = std of those K reconstructions (the "
                        "reconstruction itself is unchanged); needed for --calibration with varnet/modl")


def add_undersampling_arguments(p: argparse.ArgumentParser) -> None:
    """``--mask-type/--accel/--center-fraction/--seed``: retrospective undersampling of fully sampled input."""
    from recon.sampling import ALL_MASK_TYPES

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
    from recon.errors import UsageError
    from recon.app.pipeline import Undersampling

    if args.accel is None:
        if args.mask_type or args.center_fraction or args.seed is not None:
            raise UsageError("--mask-type/--center-fraction/--seed need --accel R")
        return None
    from recon.io.validate import check_accelerations

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


def lambda_value(text: str) -> float | str:
    """``--lambda``: a number, or ``auto`` (cross-validated, l1-wavelet and tv)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def add_solver_arguments(p: argparse.ArgumentParser) -> None:
    """``--lambda/--iterations/--solver``: options of the classical solvers (``recon.solvers``)."""
    g = p.add_argument_group("classical solvers (sense, grappa, l1-wavelet, tv)")
    g.add_argument("--lambda", dest="lam", type=lambda_value, default=None, metavar="LAM",
                   help="regularisation weight >= 0 (l1-wavelet/tv on auto-scaled data, default 0.005, l1-wavelet with a "
                        "2D mask 0.0025; "
                        "sense: Tikhonov, default 0; grappa: calibration Tikhonov, default 0.1); 'auto' (l1-wavelet, tv): "
                        "chosen per slice by k-space cross-validation on held-out samples (recon.solvers.autolambda)")
    g.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="solver iterations (defaults: sense 10, l1-wavelet 40, tv 30)")
    g.add_argument("--solver", choices=("fista", "admm", "pdhg"), default=None,
                   help="optimiser for l1-wavelet/tv (defaults: fista for l1-wavelet, admm for tv)")


def options_from_args(args: argparse.Namespace) -> dict:
    """Method options given on the command line (only those set, so methods keep their defaults)."""
    options = {}
    if getattr(args, "device", None):
        options["device"] = args.device
    if getattr(args, "weights", None):
        options["weights"] = args.weights
    for name in ("lam", "iterations", "solver", "samples", "steps", "sampler", "calibration"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if getattr(args, "save_samples", False):
        options["save_samples"] = True
    if getattr(args, "adapt", False):
        options["adapt"] = True
    for name in ("adapt_steps", "adapt_per", "adapt_lr", "ensemble"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
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
    from recon.app.runtime import configure_threads

    configure_threads(args.threads)  # before torch is imported (recon.app.runtime)
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


def check_adapt_args(args: argparse.Namespace) -> None:
    """``--adapt-steps/--adapt-per/--adapt-lr`` without ``--adapt``, or ``--adapt`` with a method that has no
    learnable weights to adapt (zero-filled, sense, grappa, l1-wavelet, tv, ...): a :class:`UsageError`."""
    import inspect

    from recon.errors import UsageError
    from recon.app.pipeline import get_method

    if not getattr(args, "adapt", False):
        given = [f"--{n.replace('_', '-')}" for n in ("adapt_steps", "adapt_per", "adapt_lr")
                 if getattr(args, n, None) is not None]
        if given:
            raise UsageError(f"{'/'.join(given)} need(s) --adapt")
        return
    if "adapt" not in inspect.signature(get_method(args.method, {})).parameters:
        raise UsageError(f"--adapt is for methods with learnable weights (varnet, modl), not {args.method!r}")


#: methods whose intervals ``recon calibrate`` fits and ``--calibration`` applies (varnet/modl with --ensemble)
CALIBRATABLE = ("diffusion", "varnet", "modl")  # = calibration.CALIBRATABLE (kept literal: no torch at parse time)
#: methods with a k-space split ensemble (``--ensemble K``)
ENSEMBLE_METHODS = ("varnet", "modl")


def check_ensemble_args(args: argparse.Namespace) -> None:
    """``--ensemble K`` with K < 2 or with a method that has no ensemble: a :class:`UsageError`."""
    from recon.errors import UsageError

    k = getattr(args, "ensemble", None)
    if k is None:
        return
    if args.method not in ENSEMBLE_METHODS:
        raise UsageError(f"--ensemble is for methods {', '.join(ENSEMBLE_METHODS)}, not {args.method!r}"
                         + (" (diffusion: --samples K)" if args.method == "diffusion" else ""))
    if k < 2:
        raise UsageError(f"--ensemble needs K >= 2 members (their spread is the uncertainty), got {k}")


def check_run_args(args: argparse.Namespace) -> None:
    """For ``recon run|batch --calibration FILE``: refuse, before any work, a calibration made for another
    method, other weights or options, or another nominal undersampling (slices are checked again);
    ``--adapt*`` for a method without adaptation (:func:`check_adapt_args`), ``--ensemble`` for a method without
    an ensemble (:func:`check_ensemble_args`); and ``--iterations`` below 1."""
    check_adapt_args(args)
    check_ensemble_args(args)
    iterations = getattr(args, "iterations", None)
    if iterations is not None and iterations < 1:  # 0 would return the solver's start image as its result
        from recon.errors import UsageError

        raise UsageError(f"--iterations must be >= 1, got {iterations} (0 iterations would return the "
                         f"starting image as a {args.method} reconstruction)")
    path = getattr(args, "calibration", None)
    if path is None:
        return
    from recon.errors import UsageError
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
