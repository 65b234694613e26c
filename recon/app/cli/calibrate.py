"""``recon calibrate CAL_DIR OUT.json --method diffusion|varnet|modl``: fit calibrated uncertainty intervals (issue 14).

Every raw file of CAL_DIR (fastMRI layout with fully sampled k-space; their ``reconstruction_rss``, or the RSS
of the k-space, is the truth) is undersampled as ``--mask-type/--accel/--center-fraction`` say and
reconstructed with posterior sampling (diffusion) or with a k-space split ensemble (varnet/modl
``--ensemble K``: the spread of K reconstructions each missing 20 % of the lines outside the centre). The scale ``lam`` of the intervals ``[mean - lam lo, mean + lam hi]``
(:mod:`recon.solvers.uncertainty.calibration`) is then fitted so that the fraction of object pixels outside their
interval is at most ``--alpha``: in expectation over new slices (``--guarantee crc``, conformal risk control,
the default) or with probability ``1 - --delta`` (``--guarantee rcps``, Hoeffding-Bentkus RCPS; needs many
slices) (:mod:`recon.metrics.conformal`). ``recon run|batch --calibration OUT.json`` then writes ``lower``,
``upper`` and the calibrated ``uncertainty``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recon.app.cli.run import (
    CALIBRATABLE,  # methods that produce samples (and so spreads to calibrate)
)
from recon.app.cli.run import (
    add_adapt_arguments,
    add_undersampling_arguments,
    check_method_options,
    ENSEMBLE_METHODS,
    options_from_args,
    undersampling_from_args,
)
from recon.errors import UsageError
from recon.io import open_raw
from recon.metrics.conformal import fit_scale, slice_scores
from recon.app.runtime import configure_threads
from recon import __version__
from recon.app.batch import DEFAULT_PATTERN
from recon.app.batch.discovery import find_inputs
from recon.io.atomic import atomic_path, check_output_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit calibrated uncertainty intervals on slices with references",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("cal_dir", help="folder of fully sampled raw files with references (fastMRI layout)")
    p.add_argument("out", help="calibration file to write (.json)")
    p.add_argument("--method", default="diffusion", choices=CALIBRATABLE, help="method (default: diffusion)")
    p.add_argument("--alpha", type=float, default=0.1, help="target fraction of missed object pixels (default 0.1)")
    p.add_argument("--delta", type=float, default=0.1,
                   help="failure probability of the rcps guarantee (default 0.1; recorded with crc too)")
    p.add_argument("--guarantee", choices=("crc", "rcps"), default="crc",
                   help="crc: miss rate <= alpha in expectation (default); rcps: with probability >= 1 - delta")
    add_undersampling_arguments(p)
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (as recon run)")
    p.add_argument("--weights", default=None, metavar="PATH", help="weights (default: the bundled ones)")
    g = p.add_argument_group("posterior sampling (diffusion)")
    g.add_argument("--samples", type=int, default=None, metavar="K", help="posterior samples per slice (default 4)")
    g.add_argument("--steps", type=int, default=None, metavar="N", help="sampler steps (default: 12 for dds)")
    g.add_argument("--sampler", choices=("dds", "dps"), default=None, help="posterior sampler (default: dds)")
    g = p.add_argument_group("k-space split ensemble (varnet, modl)")
    g.add_argument("--ensemble", type=int, default=None, metavar="K",
                   help="members of the split ensemble (K >= 2; required for varnet/modl)")
    add_adapt_arguments(p)
    p.add_argument("--pattern", default=None, metavar="GLOB", help="input file names to take (as recon batch)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N files (sorted)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.json")
    p.set_defaults(handler=main)


def _progress(msg: str) -> None:
    sys.stderr.write(f"recon calibrate: {msg}\n")
    sys.stderr.flush()


def collect_slices(files: list[Path], method: str, undersampling, options: dict, work: Path, progress=_progress):
    """Reconstruct ``files``; per slice the sorted object scores, and the measured accelerations.

    Returns ``(scores, accelerations, per_file)``: a list of 1D arrays (:func:`recon.metrics.conformal.slice_scores`),
    a list of floats, and ``[{"file", "slices"}]``.
    """
    # deferred: loads h5py, which importing recon.app.cli.calibrate does not
    import h5py

    # deferred: loads torch, tqdm, which importing recon.app.cli.calibrate does not
    from recon.metrics.reference import reference_slice
    # deferred: loads torch, tqdm, which importing recon.app.cli.calibrate does not
    from recon.app.pipeline import reconstruct_file
    # deferred: loads recon.solvers.uncertainty, which importing recon.app.cli.calibrate does not
    from recon.solvers.uncertainty.calibration import (
        heuristic_spread,
        measured_acceleration,
    )
    # deferred: loads recon.solvers.diffusion, recon.solvers.learned, scipy, torch, tqdm, which importing recon.app.cli.calibrate does not
    from recon.solvers.diffusion.uncertainty import object_mask

    scores, accels, per_file = [], [], []
    for k, path in enumerate(files):
        with open_raw(path) as rf:
            crop = rf.header.recon_size
            truth = np.concatenate([reference_slice(rf.read_slices(i), crop, fully_sampled_rss=True)
                                    for i in range(rf.num_slices)], axis=0)
        out = work / f"{k:04d}.h5"
        reconstruct_file(path, out, method=method, undersampling=undersampling, **options)
        with h5py.File(out, "r") as f:
            mean, std = f["reconstruction"][()], f["uncertainty"][()]
            noise = f["noise_level"][()]
            mask = f["mask"][()] if "mask" in f else None
        out.unlink()
        if mean.shape != truth.shape:
            raise UsageError(f"reconstruction {mean.shape} and reference {truth.shape} differ in shape", path)
        for i in range(mean.shape[0]):
            lo = heuristic_spread(std[i], float(noise[i]))
            scores.append(slice_scores(mean[i], truth[i], lo, lo, object_mask(truth[i])))
            if mask is not None:
                m = mask[i] if mask.ndim == 3 else mask
                accels.append(measured_acceleration(m))
        per_file.append({"file": path.name, "slices": int(mean.shape[0])})
        progress(f"[{k + 1}/{len(files)}] {path.name}: {mean.shape[0]} slice(s)")
    return scores, accels, per_file


def main(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
    # deferred: loads recon.solvers.uncertainty, which importing recon.app.cli.calibrate does not
    from recon.solvers.uncertainty import calibration as calib
    # deferred: loads recon.solvers.diffusion, recon.solvers.learned, scipy, torch, tqdm, which importing recon.app.cli.calibrate does not
    from recon.solvers.diffusion.uncertainty import OBJECT_FRACTION

    start = time.perf_counter()
    out = check_output_path(args.out, args.overwrite)
    if not 0 < args.alpha < 1 or not 0 < args.delta < 1:
        raise UsageError(f"--alpha and --delta must lie in (0, 1), got {args.alpha} and {args.delta}")
    cal_dir = Path(args.cal_dir)
    if not cal_dir.is_dir():
        raise UsageError("calibration folder not found", cal_dir)
    undersampling = undersampling_from_args(args)
    if undersampling is None:
        raise UsageError("recon calibrate needs --accel R (the calibration holds for one undersampling)")
    check_method_options(args)  # --adapt*, --ensemble K, --samples ... checked by the method's options class
    if args.method in ENSEMBLE_METHODS and args.ensemble is None:
        raise UsageError(f"recon calibrate --method {args.method} needs --ensemble K (K >= 2): the spread of the "
                         "k-space split ensemble is what the intervals are made of")
    options = options_from_args(args)
    with tempfile.TemporaryDirectory(prefix="recon-calibrate-") as tmp:
        items = find_inputs(cal_dir, Path(tmp) / "unused", pattern=args.pattern or DEFAULT_PATTERN, limit=args.limit)
        files = [Path(it.input) for it in items]
        if not files:
            raise UsageError("no raw files in the calibration folder", cal_dir)
        scores, accels, per_file = collect_slices(files, args.method, undersampling, options, Path(tmp))
    try:
        fit = fit_scale(scores, alpha=args.alpha, delta=args.delta, guarantee=args.guarantee)
    except ValueError as exc:
        raise UsageError(str(exc), cal_dir) from None
    record = {
        "format": calib.FORMAT, "version": calib.VERSION, "method": args.method,
        "options": calib.resolved_options(args.method, options),
        "weights": calib.weights_identity(args.method, options.get("weights")),
        "undersampling": {"mask_type": undersampling.mask_type,
                          "accelerations": [float(a) for a in undersampling.accelerations],
                          "center_fractions": [float(c) for c in undersampling.center_fractions],
                          "seed": undersampling.seed},
        "measured_acceleration": {"min": min(accels), "max": max(accels)} if accels else None,
        "guarantee": fit.guarantee, "alpha": fit.alpha, "delta": fit.delta,
        "slices": fit.n, "files": per_file,
        "scale": fit.scale, "calibration_risk": fit.calibration_risk, "ucb": fit.ucb,
        "heuristic": calib.HEURISTIC, "object_fraction": OBJECT_FRACTION,
        "seconds": round(time.perf_counter() - start, 2), "recon_version": __version__,
    }
    with atomic_path(out, overwrite=args.overwrite) as tmp_path:
        Path(tmp_path).write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"{out}: {fit.guarantee} scale {fit.scale:.4g} on {fit.n} slices of {len(per_file)} file(s), "
          f"calibration miss rate {fit.calibration_risk:.4f} (alpha {fit.alpha}), {record['seconds']:.1f} s")
    return 0
