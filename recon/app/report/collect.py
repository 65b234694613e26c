"""Read a run folder into a plain data model (:class:`RunData`) for the report.

Three kinds of folder are understood, looked for in this order:

* ``batch``: a ``recon batch`` OUTPUT_DIR, recognised by its ``manifest.json`` (:mod:`recon.app.batch.manifest`):
  the command, parameters and versions of the run, one entry per input with its status and metrics; the
  reconstruction of an entry is its ``output`` (relative paths are resolved against RUN_DIR, so a moved
  folder still reports). Reference per file: ``--target-dir``'s file of the same relative name, else the
  manifest's ``target``, else the input's own ``reconstruction_rss`` / ``reconstruction_esc``, else (for a
  retrospectively undersampled fully sampled input) the RSS of the input's k-space, as ``recon run`` scores it.
* ``demo``: a ``recon demo`` folder, recognised by ``metrics.json`` with ``results``: one entry per
  (method, acceleration) ``.h5``; the reference is the bundled sample's ``reconstruction_rss`` (its ``slices``).
* ``folder``: any folder holding reconstruction ``.h5`` files (a ``reconstruction`` dataset), searched
  recursively (hidden names skipped); references from ``--target-dir`` (same relative name, fastMRI's
  ``reconstruction_rss``), else none.

Per file, method and acceleration come from the ``.h5`` attributes (``method``, ``mask_acceleration``),
stored metrics from the manifest / ``metrics.json`` / the ``metric_*`` attributes. Nothing here computes
metrics or draws: see :mod:`recon.app.report.build`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import DataError, InputError
from recon.app.batch.lifetime import stale_run
from recon.data import sample_path

#: optional image datasets of a reconstruction file shown in the report (diffusion methods write them)
EXTRA_MAPS = ("uncertainty", "hallucination", "lower", "upper")
#: file names of the folder kinds
MANIFEST_NAME = "manifest.json"
DEMO_METRICS = "metrics.json"
H5_SUFFIXES = (".h5", ".hdf5")
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")


@dataclass(frozen=True)
class ReferenceSource:
    """Where a file's reference volume comes from.

    kind: ``"h5"`` (dataset ``key`` of ``path``) or ``"rss"`` (RSS of the fully sampled k-space of raw file
    ``path``, centre-cropped to its recon size). slices: the slice indices to take (None: all).
    """

    kind: str
    path: Path
    key: str = ""
    slices: tuple[int, ...] | None = None

    def describe(self) -> str:
        what = self.key if self.kind == "h5" else "RSS of the fully sampled k-space"
        sl = "" if self.slices is None else f", slices {list(self.slices)}"
        return f"{what} of {self.path.name}{sl}"


@dataclass
class FileRecord:
    """One reconstruction in the run.

    name: display name (path relative to the run folder / the batch's relative input name).
    path: the reconstruction ``.h5`` (None when the run did not produce one).
    status: ``ok`` / ``skipped`` (batch: an earlier run's output) / ``failed`` / ``pending`` / ``missing``.
    metrics: metric name -> value as stored by the run (None = not finite / not computed).
    reference: the reference volume's source, None when there is none.
    datasets: names of the file's datasets (``reconstruction``, ``mask``, ``uncertainty``, ...).
    """

    name: str
    path: Path | None
    method: str | None = None
    acceleration: float | None = None
    status: str = "ok"
    error: str | None = None
    seconds: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    reference: ReferenceSource | None = None
    datasets: tuple[str, ...] = ()
    slices: int | None = None

    @property
    def usable(self) -> bool:
        """True when the file holds a reconstruction the report can show."""
        return self.path is not None and "reconstruction" in self.datasets


@dataclass
class RunData:
    """A run folder, read.

    kind: ``batch`` / ``demo`` / ``folder``. summary: ordered (label, text) pairs for the run summary.
    tiers: the tiers the run itself recorded (batch ``parameters.tiers``), if any.
    """

    kind: str
    root: Path
    files: list[FileRecord]
    summary: list[tuple[str, str]] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None




def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def h5_info(path: Path) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """``(attributes, dataset names)`` of an HDF5 file, None when it cannot be opened."""
    # deferred: loads h5py, which importing recon.app.report.collect does not
    import h5py

    # deferred: loads h5py, which importing recon.app.report.collect does not
    from recon.io.hdf5 import read_attrs

    try:
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            names = tuple(k for k in f.keys() if isinstance(f[k], h5py.Dataset))
    except Exception:  # noqa: BLE001 - any unreadable file is reported as such, never a traceback
        return None
    return attrs, names


def _record_from_h5(name: str, path: Path, **known: Any) -> FileRecord:
    """A :class:`FileRecord` for ``path`` with method/acceleration/metrics from its attributes (``known``
    values win)."""
    info = h5_info(path)
    attrs, names = info if info is not None else ({}, ())
    metrics = {k.removeprefix("metric_"): _number(v) for k, v in attrs.items() if k.startswith("metric_")}
    metrics.update(known.pop("metrics", None) or {})
    rec = FileRecord(name, path, method=str(attrs["method"]) if "method" in attrs else None,
                     acceleration=_number(attrs.get("mask_acceleration")), metrics=metrics, datasets=names)
    for key, value in known.items():
        if value is not None:
            setattr(rec, key, value)
    if info is None:
        rec.status, rec.error = "unreadable", "cannot open as HDF5"
    elif "reconstruction" not in names:
        rec.status, rec.error = "unreadable", "no 'reconstruction' dataset"
    return rec


def _h5_reference(path: Path, slices: tuple[int, ...] | None = None) -> ReferenceSource | None:
    """The target dataset of ``path`` when it is an HDF5 file with one."""
    if not path.is_file() or path.suffix.lower() not in H5_SUFFIXES:
        return None
    info = h5_info(path)
    if info is None:
        return None
    key = next((k for k in TARGET_KEYS if k in info[1]), None)
    return None if key is None else ReferenceSource("h5", path, key, slices)


def _target_for(target_dir: Path | None, rel: str) -> ReferenceSource | None:
    if target_dir is None:
        return None
    return _h5_reference((target_dir / rel).with_suffix(".h5"))


def read_batch(root: Path, manifest: dict[str, Any], target_dir: Path | None) -> RunData:
    """A ``recon batch`` OUTPUT_DIR from its manifest (see the module doc)."""
    params = manifest.get("parameters") or {}
    versions = manifest.get("versions") or {}
    command = manifest.get("command")

    state = str(manifest.get("state", "unknown state"))
    if stale_run(root, manifest):  # SIGKILLed: the manifest could not say so itself
        state = "killed before it finished; rerun recon batch to resume"
    summary: list[tuple[str, str]] = [("run", f"recon batch ({state})")]
    if command:
        summary.append(("command", " ".join(str(c) for c in command)))
    for label, key in (("input folder", "input_dir"), ("output folder", "output_dir"),
                       ("started", "started"), ("finished", "finished")):
        if manifest.get(key):
            summary.append((label, str(manifest[key])))
    if params:
        summary.append(("method", f"{params.get('method')} {json.dumps(params.get('options') or {})}"))
        summary.append(("undersampling", json.dumps(params.get("undersampling"))))
        if params.get("target_dir"):
            summary.append(("target folder", str(params["target_dir"])))
    if versions:
        summary.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    s = manifest.get("summary") or {}
    if s:
        summary.append(("files", ", ".join(f"{s.get(k)} {k}" for k in ("files", "ok", "skipped", "failed", "pending")
                                           if s.get(k) is not None)))
    out_dir = Path(str(manifest.get("output_dir") or root))
    undersampling = params.get("undersampling") or None
    files: list[FileRecord] = []
    for rel, entry in (manifest.get("files") or {}).items():
        entry = entry if isinstance(entry, dict) else {}
        status = str(entry.get("status") or "unknown")
        err = entry.get("error")
        error = f"{err.get('type')}: {err.get('message')}" if isinstance(err, dict) else (str(err) if err else None)
        output = Path(str(entry.get("output") or ""))
        if output.is_absolute():  # the folder may have been moved: prefer the copy inside RUN_DIR
            try:
                moved = root / output.relative_to(out_dir)
            except ValueError:
                moved = output
            output = moved if moved.exists() or not output.exists() else output
        else:
            output = root / output
        metrics = {k: _number(v) for k, v in (entry.get("metrics") or {}).items()}
        known = {"status": status, "error": error, "seconds": _number(entry.get("seconds")),
                 "slices": entry.get("slices"), "metrics": metrics}
        if status in ("ok", "skipped") and output.is_file():
            rec = _record_from_h5(rel, output, **known)
        else:
            rec = FileRecord(rel, None, status=status if status != "ok" else "missing",
                             error=error or (None if status in ("failed", "pending") else "output file missing"),
                             seconds=known["seconds"], metrics=metrics)
        if rec.method is None:
            rec.method = params.get("method")
        if rec.acceleration is None and isinstance(undersampling, dict):
            accels = undersampling.get("accelerations") or []
            rec.acceleration = _number(accels[0]) if len(accels) == 1 else None
        ref = _target_for(target_dir, rel)
        if ref is None and params.get("target_dir"):
            ref = _target_for(Path(str(params["target_dir"])), rel)
        if ref is None and entry.get("target"):
            ref = _h5_reference(Path(str(entry["target"])))
        inp = Path(str(entry.get("input") or ""))
        if ref is None and entry.get("input"):
            ref = _h5_reference(inp)
        if ref is None and entry.get("input") and inp.is_file() and undersampling and rec.usable:
            ref = ReferenceSource("rss", inp)
        rec.reference = ref
        files.append(rec)
    return RunData("batch", root, files, summary, tiers=[str(t) for t in params.get("tiers") or []])


def read_demo(root: Path, report: dict[str, Any]) -> RunData:
    """A ``recon demo`` folder from its ``metrics.json``."""
    slices = tuple(int(i) for i in report.get("slices") or []) or None
    sample = sample_path()
    reference = None
    if report.get("sample") == sample.name:
        reference = _h5_reference(sample, slices)
    summary: list[tuple[str, str]] = [
        ("run", "recon demo"),
        ("command", "recon demo" + ("" if slices is None or len(slices) > 1 else " --quick")),
        ("sample", f"{report.get('sample')}, slices {list(slices) if slices else 'all'}"),
        ("reference", str(report.get("reference", ""))),
        ("metrics", str(report.get("metrics", ""))),
        ("undersampling", "fastMRI random masks seeded from the file name: "
         + ", ".join(sorted({f"{r.get('acceleration')}x (centre fraction {r.get('center_fraction')})"
                             for r in report.get("results") or []}))),
    ]
    if report.get("recon_version"):
        summary.append(("versions", f"recon {report['recon_version']}"))
    if report.get("seconds") is not None:
        summary.append(("wall time", f"{report['seconds']} s"))
    files: list[FileRecord] = []
    for row in report.get("results") or []:
        name = str(row.get("file"))
        path = root / name
        metrics = {k: _number(row.get(k)) for k in ("nmse", "psnr", "ssim") if k in row}
        metrics.update({k: _number(v) for k, v in (row.get("tier_metrics") or {}).items()})
        known = {"method": row.get("method"), "acceleration": _number(row.get("acceleration")),
                 "seconds": _number(row.get("seconds")), "metrics": metrics}
        if path.is_file():
            rec = _record_from_h5(name, path, **known)
        else:
            rec = FileRecord(name, None, status="missing", error="file missing", **known)
        rec.reference = reference
        files.append(rec)
    notes = [f"skipped {k}: {v}" for k, v in (report.get("skipped") or {}).items()]
    return RunData("demo", root, files, summary, notes=notes)


def read_folder(root: Path, target_dir: Path | None) -> RunData:
    """Any folder of reconstruction ``.h5`` files (recursive; hidden names and non-reconstructions skipped)."""
    files: list[FileRecord] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix.lower() not in H5_SUFFIXES \
                or any(part.startswith(".") for part in rel.parts):
            continue
        info = h5_info(path)
        if info is None or "reconstruction" not in info[1]:
            continue
        rec = _record_from_h5(rel.as_posix(), path)
        rec.reference = _target_for(target_dir, rel.as_posix())
        files.append(rec)
    summary = [("run", "folder of reconstructions"), ("folder", str(root.absolute()))]
    if target_dir is not None:
        summary.append(("target folder", str(target_dir.absolute())))
    return RunData("folder", root, files, summary)


def collect_run(run_dir: str | Path, target_dir: str | Path | None = None) -> RunData:
    """Read ``run_dir`` (see the module doc).

    Raises
    ------
    InputError: ``run_dir`` (or ``target_dir``) is missing or not a folder, or holds nothing reportable.
    """
    root = Path(run_dir)
    if not root.exists():
        raise InputError("run folder does not exist", root)
    if not root.is_dir():
        raise InputError("run folder is not a folder", root)
    tdir = Path(target_dir) if target_dir is not None else None
    if tdir is not None and not tdir.is_dir():
        raise InputError("--target-dir is not a folder", tdir)
    manifest = _read_json(root / MANIFEST_NAME)
    if manifest is None and (root / MANIFEST_NAME).is_file():  # there, but truncated or not JSON (issue 18)
        raise DataError("is not a valid manifest (truncated or corrupt JSON); rerun recon batch to rewrite it",
                        root / MANIFEST_NAME)
    demo = _read_json(root / DEMO_METRICS)
    if manifest is not None and isinstance(manifest.get("files"), dict):
        run = read_batch(root, manifest, tdir)
    elif demo is not None and isinstance(demo.get("results"), list):
        run = read_demo(root, demo)
    else:
        run = read_folder(root, tdir)
    if not any(f.usable for f in run.files):
        if run.kind == "folder":
            why = "no reconstruction .h5 files (nor a recon batch manifest.json or recon demo metrics.json)"
        else:
            counts: dict[str, int] = {}
            for f in run.files:
                counts[f.status] = counts.get(f.status, 0) + 1
            listed = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no files"
            why = (f"the {'manifest.json' if run.kind == 'batch' else 'metrics.json'} names no finished "
                   f"reconstruction ({listed})")
        raise InputError(f"nothing to report: {why}", root)
    return run


def load_reference(source: ReferenceSource, cache: dict[ReferenceSource, np.ndarray] | None = None) -> np.ndarray:
    """The reference volume ``(S, h, w)`` float32 of ``source`` (memoised in ``cache`` when given)."""
    if cache is not None and source in cache:
        return cache[source]
    if source.kind == "h5":
        # deferred: loads h5py, which importing recon.app.report.collect does not
        import h5py

        try:
            with h5py.File(source.path, "r") as f:
                data = np.asarray(f[source.key][()], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read '{source.key}': {exc}", source.path) from None
    else:
        # deferred: loads torch, tqdm, which importing recon.app.report.collect does not
        from recon.metrics.reference import reference_volume

        data = reference_volume(source.path)
    if source.slices is not None:
        data = data[list(source.slices)]
    if cache is not None:
        cache[source] = data
    return data


def load_volume(path: Path, name: str) -> np.ndarray | None:
    """Dataset ``name`` of ``path`` as float32 (None when absent)."""
    # deferred: loads h5py, which importing recon.app.report.collect does not
    import h5py

    with h5py.File(path, "r") as f:
        if name not in f:
            return None
        return np.asarray(f[name][()], dtype=np.float32)
