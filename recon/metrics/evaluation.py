"""fastMRI's evaluation over two folders (what ``recon eval`` runs).

The rules of ``fastmri/evaluate.py``:

* targets: fastMRI files with ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil);
  predictions: the file of the same (relative) name in the predictions folder, dataset ``reconstruction``;
* ``acquisition``: keep only targets whose ``acquisition`` attribute equals it;
* ``acceleration``: keep only targets whose ``acceleration`` attribute equals it (fastMRI's test/challenge
  files carry it). A fully sampled target has none; then the prediction's ``mask_acceleration`` attribute
  (written by ``recon run --accel``) is used;
* both volumes are centre-cropped to ``(W, W)``, ``W`` the target's width (:func:`fastmri_crop_size`), and
  NMSE, PSNR, SSIM computed per volume (:func:`recon.metrics.volume_metrics`), with mean and standard deviation
  over volumes (sample standard deviation, ``ddof = 1``, as fastMRI's ``runstats``; 0 for one volume).

Beyond fastMRI: ``tiers`` adds the feature and task tiers (:mod:`recon.metrics.tiers`), computed on the same
crop and summarised the same way.

Differences from fastMRI, where fastMRI would crash: a missing prediction, a target without a reference and
shapes that cannot be compared are :mod:`recon.errors` exceptions naming the files; sub-folders are searched
(``OUT_DIR`` of ``recon batch`` mirrors its input folder); hidden files (``.name.part`` temporaries) are skipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import DataError, FormatError, InputError
from recon.metrics._common import METRIC_NAMES, fastmri_crop_size
from recon.metrics.tiers import parse_tiers, tier_metric_names, volume_tier_metrics

#: target datasets, in the order they are looked for
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class EvalResult:
    """Per-volume metrics and their statistics.

    Attributes
    ----------
    files: relative target path -> ``{metric: value}`` for every name of ``metric_names`` (plus ``slices``),
        in sorted order.
    mean, std: metric -> mean / sample standard deviation over the volumes (std 0 for a single volume).
    skipped: relative names of targets left out by the ``acquisition`` / ``acceleration`` filters.
    tiers: the evaluated tiers (:data:`recon.metrics.tiers.TIER_NAMES`).
    metric_names: the metrics of those tiers, in report order (:func:`recon.metrics.tiers.tier_metric_names`).
    """

    files: dict[str, dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    skipped: list[str] = field(default_factory=list)
    tiers: list[str] = field(default_factory=lambda: ["pixel"])
    metric_names: list[str] = field(default_factory=lambda: list(METRIC_NAMES))

    @property
    def count(self) -> int:
        return len(self.files)

    def summary_line(self) -> str:
        """fastMRI's printout: ``NMSE = m +/- 2 std  PSNR = ...  SSIM = ...`` (``.4g``), then the other tiers'
        metrics the same way."""
        return "  ".join(f"{name.upper()} = {self.mean[name]:.4g} +/- {2 * self.std[name]:.4g}"
                         for name in self.metric_names)

    def to_dict(self) -> dict[str, Any]:
        """``{"nmse": {"mean", "std"}, "psnr": ..., "ssim": ..., <other tiers' metrics>: {"mean", "std"},
        "count", "files": {name: {...}}, "skipped", "tiers"}``; non-finite values (PSNR of a perfect prediction)
        become None so that the result is valid JSON."""
        out: dict[str, Any] = {name: {"mean": _finite(self.mean[name]), "std": _finite(self.std[name])}
                               for name in self.metric_names}
        out["count"] = self.count
        out["files"] = {k: {m: _finite(v) if isinstance(v, float) else v for m, v in vals.items()}
                        for k, vals in self.files.items()}
        out["skipped"] = list(self.skipped)
        out["tiers"] = list(self.tiers)
        return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _statistics(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for fewer than two values)."""
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return mean, std


def _text(value: Any) -> Any:
    # deferred: loads h5py, which importing recon.metrics.evaluation does not
    from recon.io.hdf5 import attr_value

    return attr_value(value)


def _same_number(value: Any, wanted: float) -> bool:
    try:
        return float(_text(value)) == float(wanted)
    except (TypeError, ValueError):
        return False


def _list_targets(target_dir: Path) -> list[Path]:
    return sorted(p for p in target_dir.rglob("*")
                  if p.is_file() and p.suffix.lower() in H5_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(target_dir).parts))


def _check_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} folder does not exist", p)
    if not p.is_dir():
        raise InputError(f"{what} is not a folder", p)
    return p


def _target_key(f: Any, path: Path, recon_key: str | None) -> str:
    """The target dataset of an open file: ``recon_key``, else the first of :data:`TARGET_KEYS` present."""
    keys = (recon_key,) if recon_key else TARGET_KEYS
    key = next((k for k in keys if k in f), None)
    if key is None:
        raise FormatError(f"target has no {' or '.join(keys)} dataset; datasets: {sorted(f.keys()) or 'none'}", path)
    return key


def _read_target(path: Path, recon_key: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    # deferred: loads h5py, which importing recon.metrics.evaluation does not
    from recon.io.hdf5 import open_h5, read_attrs

    with open_h5(path) as f:
        key = _target_key(f, path, recon_key)
        attrs = read_attrs(f)
        try:
            data = np.asarray(f[key][()])
        except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError for damaged files
            raise InputError(f"cannot read '{key}': {exc}", path) from None
    if data.ndim != 3:
        raise DataError(f"'{key}' must be (slices, H, W), got shape {data.shape}", path)
    return data, attrs


def _check_shapes(tpath: Path, ppath: Path, recon_key: str | None) -> None:
    """:class:`FormatError` / :class:`DataError` unless the two files can be compared (shapes only, no data read)."""
    # deferred: loads h5py, which importing recon.metrics.evaluation does not
    from recon.io.hdf5 import open_h5

    with open_h5(tpath) as f:
        key = _target_key(f, tpath, recon_key)
        tshape = tuple(getattr(f[key], "shape", None) or ())
    if len(tshape) != 3:
        raise DataError(f"'{key}' must be (slices, H, W), got shape {tshape}", tpath)
    with open_h5(ppath) as f:
        if "reconstruction" not in f:
            raise FormatError(f"no 'reconstruction' dataset; datasets: {sorted(f.keys()) or 'none'}", ppath)
        pshape = tuple(getattr(f["reconstruction"], "shape", None) or ())
    size = fastmri_crop_size(tshape)
    if len(pshape) != 3 or pshape[0] != tshape[0] or pshape[-2] < size[0] or pshape[-1] < size[1]:
        raise DataError(f"prediction shape {pshape} does not fit target shape {tshape} "
                        f"(both are centre-cropped to {size[0]} x {size[1]})", ppath)
    if min(size) < 7:
        raise DataError(f"target of shape {tshape} is smaller than the 7 x 7 SSIM window", tpath)


def _h5_attrs(path: Path) -> dict[str, Any]:
    """The file attributes of an HDF5 file (bytes decoded, numpy scalars as Python values)."""
    # deferred: loads h5py, which importing recon.metrics.evaluation does not
    from recon.io.hdf5 import open_h5, read_attrs

    with open_h5(path) as f:
        return read_attrs(f)


def _select_pairs(targets: list[Path], tdir: Path, pdir: Path, acquisition: str | None,
                  acceleration: float | None) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """fastMRI's filters over the target files: ``(selected (relative name, target, prediction), skipped
    relative names, relative names whose prediction is missing)``, in the order of ``targets``."""
    selected: list[tuple[str, Path, Path]] = []
    skipped: list[str] = []
    missing: list[str] = []
    for tpath in targets:
        rel = tpath.relative_to(tdir).as_posix()
        ppath = pdir / rel
        attrs = _h5_attrs(tpath)
        if acquisition is not None and _text(attrs.get("acquisition")) != acquisition:
            skipped.append(rel)
            continue
        if acceleration is not None:
            if "acceleration" in attrs:
                if not _same_number(attrs["acceleration"], acceleration):
                    skipped.append(rel)
                    continue
            elif not ppath.is_file():
                missing.append(rel)
                continue
            elif not _same_number(_h5_attrs(ppath).get("mask_acceleration"), acceleration):
                skipped.append(rel)
                continue
        if not ppath.is_file():
            missing.append(rel)
            continue
        selected.append((rel, tpath, ppath))
    return selected, skipped, missing


def _file_metrics(selected: list[tuple[str, Path, Path]], recon_key: str | None, tier_list: Any,
                  names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per file (relative name): each metric of ``names`` over its volume ``(S, H, W)`` and ``slices``."""
    # deferred: loads h5py, which importing recon.metrics.evaluation does not
    from recon.io.fastmri import read_reconstruction

    files: dict[str, dict[str, float]] = {}
    for rel, tpath, ppath in selected:
        target, _ = _read_target(tpath, recon_key)
        prediction, _ = read_reconstruction(ppath)
        try:
            metrics = volume_tier_metrics(target, prediction, tier_list, crop=fastmri_crop_size(target.shape))
        except DataError as exc:  # e.g. a target without three intensity classes (task tier): name the file
            raise DataError(exc.reason, exc.path or tpath) from None
        files[rel] = {**{name: metrics[name] for name in names}, "slices": int(target.shape[0])}
    return files


def evaluate_folders(
    target_dir: str | Path,
    predictions_dir: str | Path,
    *,
    acquisition: str | None = None,
    acceleration: float | None = None,
    recon_key: str | None = None,
    tiers: str | Sequence[str] = ("pixel",),
) -> EvalResult:
    """fastMRI's evaluation of every target in ``target_dir`` against ``predictions_dir`` (see module doc).

    Parameters
    ----------
    target_dir: fastMRI files (``.h5``) with ``reconstruction_rss`` or ``reconstruction_esc`` ``(S, H, W)``.
    predictions_dir: files of the same relative names with ``reconstruction`` ``(S, h, w)`` float32.
    acquisition, acceleration: fastMRI's filters (None: all volumes).
    recon_key: the target dataset to use; None = ``reconstruction_rss``, else ``reconstruction_esc``.
    tiers: the metric tiers (``"pixel,feature,task"`` or a sequence; :func:`recon.metrics.tiers.parse_tiers`).

    Raises
    ------
    UsageError: an unknown tier, or a tier whose module cannot be loaded;
    InputError: a folder is missing, no target matches, predictions are missing (all listed);
    DataError: a prediction's shape does not fit its target's.
    """
    tier_list = parse_tiers(tiers)
    names = tier_metric_names(tier_list)
    tdir = _check_dir(target_dir, "target")
    pdir = _check_dir(predictions_dir, "predictions")
    targets = _list_targets(tdir)
    if not targets:
        raise InputError("no .h5 target files", tdir)

    selected, skipped, missing = _select_pairs(targets, tdir, pdir, acquisition, acceleration)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{len(missing)} prediction(s) missing for targets: {shown}", pdir)
    if not selected:
        filters = ", ".join(f"{k}={v}" for k, v in (("acquisition", acquisition), ("acceleration", acceleration))
                            if v is not None)
        raise InputError(f"no target files match ({filters}); {len(targets)} target(s) found", tdir)

    for rel, tpath, ppath in selected:  # every file checked before any metric is computed
        _check_shapes(tpath, ppath, recon_key)

    files = _file_metrics(selected, recon_key, tier_list, names)
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for name in names:
        mean[name], std[name] = _statistics([v[name] for v in files.values()])
    return EvalResult(files, mean, std, skipped, tier_list, names)

