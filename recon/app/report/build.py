"""Build ``RUN_DIR/report.html``: read the run (:mod:`~recon.app.report.collect`), fill in the tier metrics the
run did not store, draw the pictures (:mod:`~recon.app.report.figures`), render the page (:mod:`~recon.app.report.html`)
and write it atomically.

Metrics: a file's stored values (manifest / ``metrics.json`` / ``metric_*`` attributes) are used as they are;
the metrics of a tier the run did not store are computed against the file's reference with
:func:`recon.metrics.tiers.volume_tier_metrics` on fastMRI's crop of the reference (so they are the numbers
``recon eval --tiers ...`` gives); without a reference they are left empty. Aggregates are mean and sample
standard deviation (``ddof = 1``, as fastMRI's ``evaluate.py``) over the files with a value, per
(method, acceleration) group and over all files.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recon.arrays import center_crop_or_pad
from recon.errors import ReconError
from recon.app.report.collect import EXTRA_MAPS, FileRecord, RunData, collect_run, load_reference, load_volume
from recon.metrics import fastmri_crop_size
from recon.metrics.tiers import higher_is_better, parse_tiers, tier_metric_names, TIER_NAMES, volume_tier_metrics
from recon.app.report.figures import acceleration_figure, file_figure
from recon.app.viz import error_map, error_scale
from recon import __version__
from recon.io.atomic import atomic_path, check_output_path
from recon.app.report.html import render
from recon.app.report.intervals import interval_rows

REPORT_NAME = "report.html"
#: posterior samples shown per file (diffusion outputs with a ``samples`` dataset)
SHOWN_SAMPLES = 2
#: files whose images are drawn (the first ones, in the run's order): ~250 kB of PNG each keeps the page
#: below ~15 MB for a large batch; every file is still in the tables
MAX_IMAGE_FILES = 60
#: what the tiers measure, for the page
TIER_TITLES = {"pixel": "Pixel tier: fidelity (fastMRI's NMSE, PSNR in dB, SSIM)",
               "feature": "Feature tier: perceptual realism (HaarPSI, VIF, GMSD, HFEN)",
               "task": "Task tier: clinical proxies (tissue-class Dice CSF/GM/WM, edge F1)"}


@dataclass
class Aggregate:
    """Mean +- sample std of each metric over ``n`` files of a group labelled ``label``."""

    label: str
    values: dict[str, tuple[float | None, float | None, int]]


@dataclass
class TierTable:
    """One tier's metric table: ``columns`` metric names, per-file ``rows`` (FileRecord, values) and
    ``aggregates``; ``higher`` says which direction is better per metric."""

    tier: str
    title: str
    columns: list[str]
    higher: dict[str, bool]
    rows: list[tuple[FileRecord, dict[str, float | None]]]
    aggregates: list[Aggregate]
    sources: dict[str, str] = field(default_factory=dict)  # file name -> "stored" / "computed" / "no reference"


@dataclass
class Figure:
    """An embedded PNG: ``png`` bytes, ``caption`` text, ``alt`` text."""

    png: bytes
    caption: str
    alt: str


@dataclass
class Report:
    """Everything the page shows."""

    run: RunData
    tiers: list[str]
    tables: list[TierTable]
    plots: list[Figure]
    images: list[Figure]
    generated: str
    version: str
    seconds: float = 0.0
    intervals: list = field(default_factory=list)  #: recon.app.report.intervals.IntervalRow per calibrated file


def _stats(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    arr = np.asarray(vals)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0, int(arr.size)


def _accel_label(a: float | None) -> str:
    return "-" if a is None else f"{a:g}x"


def _crop_pair(ref: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop both ``(..., H, W)`` arrays to their common (smallest) size."""
    size = (min(ref.shape[-2], rec.shape[-2]), min(ref.shape[-1], rec.shape[-1]))
    return np.asarray(center_crop_or_pad(ref, size)), np.asarray(center_crop_or_pad(rec, size))


def compute_metrics(run: RunData, tiers: Sequence[str], *, log: Callable[[str], None]) -> dict[str, str]:
    """Fill each usable file's ``metrics`` with the metrics of ``tiers`` it lacks, computed against its
    reference (see the module doc). Returns file name -> where its values come from."""
    cache: dict[Any, np.ndarray] = {}
    sources: dict[str, str] = {}
    for rec in run.files:
        if not rec.usable:
            continue
        missing = [t for t in tiers if any(n not in rec.metrics for n in tier_metric_names([t]))]
        if not missing:
            sources[rec.name] = "stored by the run"
            continue
        if rec.reference is None:
            sources[rec.name] = "no reference: only stored metrics"
            continue
        try:
            target = load_reference(rec.reference, cache)
            prediction = load_volume(rec.path, "reconstruction")
        except Exception as exc:  # noqa: BLE001 - one bad file is reported on the page, not fatal
            sources[rec.name] = f"reference unreadable ({exc})"
            continue
        size = fastmri_crop_size(target.shape)
        if prediction is None or prediction.ndim != 3 or target.ndim != 3 or prediction.shape[0] != target.shape[0] \
                or prediction.shape[-2] < size[0] or prediction.shape[-1] < size[1] or min(size) < 7:
            sources[rec.name] = (f"reference {target.shape} and reconstruction "
                                 f"{None if prediction is None else prediction.shape} cannot be compared")
            continue
        t0 = time.perf_counter()
        failed: list[str] = []
        for tier in missing:  # tier by tier: a tier that cannot score this file leaves the others
            try:
                values = volume_tier_metrics(target, prediction, [tier], crop=size)
            except ReconError as exc:
                failed.append(f"{tier}: {exc}")
                continue
            for name, value in values.items():
                v = float(value)
                rec.metrics[name] = v if math.isfinite(v) else None
        log(f"  {rec.name}: {', '.join(missing)} tier(s) computed in {time.perf_counter() - t0:.1f} s")
        stored = [t for t in tiers if t not in missing]
        sources[rec.name] = ("computed against " + rec.reference.describe()
                             + (f" (stored: {', '.join(stored)})" if stored else "")
                             + (f"; not computed: {'; '.join(failed)}" if failed else ""))
    return sources


def tier_tables(run: RunData, tiers: Sequence[str], sources: dict[str, str]) -> list[TierTable]:
    """One :class:`TierTable` per tier: every file of the run, then per-group and overall aggregates."""
    tables: list[TierTable] = []
    groups: dict[tuple[str, str], list[FileRecord]] = {}
    for rec in run.files:
        if rec.usable:
            groups.setdefault((rec.method or "-", _accel_label(rec.acceleration)), []).append(rec)
    for tier in tiers:
        cols = list(tier_metric_names([tier]))
        rows = [(rec, {c: rec.metrics.get(c) for c in cols}) for rec in run.files]
        aggs: list[Aggregate] = []
        if len(groups) > 1 and any(len(g) > 1 for g in groups.values()):
            for (method, accel), members in groups.items():
                aggs.append(Aggregate(f"{method} {accel}",
                                      {c: _stats([m.metrics.get(c) for m in members]) for c in cols}))
        usable = [r for r in run.files if r.usable]
        aggs.append(Aggregate("all files", {c: _stats([m.metrics.get(c) for m in usable]) for c in cols}))
        tables.append(TierTable(tier, TIER_TITLES.get(tier, tier), cols, {c: higher_is_better(c) for c in cols},
                                rows, aggs, dict(sources)))
    return tables


def acceleration_plots(run: RunData, tiers: Sequence[str]) -> list[Figure]:
    """Metric vs acceleration (one line per method, mean over the method's files), one figure per tier,
    when the run has more than one acceleration."""
    usable = [r for r in run.files if r.usable and r.acceleration is not None]
    accels = sorted({r.acceleration for r in usable})
    if len(accels) < 2:
        return []
    out: list[Figure] = []
    for tier in tiers:
        cols = [c for c in tier_metric_names([tier]) if any(r.metrics.get(c) is not None for r in usable)]
        if not cols:
            continue
        series: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for c in cols:
            per: dict[str, list[tuple[float, float]]] = {}
            for method in dict.fromkeys(r.method or "-" for r in usable):
                for a in accels:
                    mean, _, n = _stats([r.metrics.get(c) for r in usable
                                         if (r.method or "-") == method and r.acceleration == a])
                    if n:
                        per.setdefault(method, []).append((a, mean))
            series[c] = per
        png = acceleration_figure(series, {c: higher_is_better(c) for c in cols})
        out.append(Figure(png, f"{TIER_TITLES.get(tier, tier)}: metric vs acceleration "
                               f"({', '.join(f'{a:g}x' for a in accels)}), mean over each method's files",
                          f"{tier} metrics vs acceleration"))
    return out


def file_images(run: RunData, *, log: Callable[[str], None]) -> list[Figure]:
    """Per usable file: the middle slice's reference / reconstruction / |error| / uncertainty / hallucination
    panels. Files sharing a reference share the |error| colour scale (99.5th percentile of their pooled error
    values), so their error maps compare by brightness."""
    # deferred: loads h5py, which importing recon.app.report.build does not
    import h5py

    cache: dict[Any, np.ndarray] = {}
    prepared: list[tuple[FileRecord, dict[str, Any]]] = []
    usable = [rec for rec in run.files if rec.usable]
    if len(usable) > MAX_IMAGE_FILES:
        run.notes.append(f"images of the first {MAX_IMAGE_FILES} of {len(usable)} reconstructions are shown")
    for rec in usable[:MAX_IMAGE_FILES]:
        try:
            with h5py.File(rec.path, "r") as f:
                ds = f["reconstruction"]
                if ds.ndim != 3 or ds.shape[0] == 0:
                    continue
                k = ds.shape[0] // 2
                item: dict[str, Any] = {"slice": k, "rec": np.asarray(ds[k], dtype=np.float32), "maps": {}}
                for name in EXTRA_MAPS:
                    if name in f and f[name].ndim == 3 and f[name].shape[0] == ds.shape[0]:
                        item["maps"][name] = np.asarray(f[name][k], dtype=np.float32)
                if "samples" in f and f["samples"].ndim == 4 and f["samples"].shape[0] == ds.shape[0]:
                    item["samples"] = [np.asarray(f["samples"][k, i], dtype=np.float32)
                                       for i in range(min(SHOWN_SAMPLES, f["samples"].shape[1]))]
                    item["nsamples"] = int(f["samples"].shape[1])
        except Exception as exc:  # noqa: BLE001
            log(f"  {rec.name}: cannot read images ({exc})")
            continue
        item["ref"] = None
        if rec.reference is not None:
            try:
                ref = load_reference(rec.reference, cache)
                if ref.ndim == 3 and ref.shape[0] == ds.shape[0]:
                    item["ref"], item["rec"] = _crop_pair(ref[k], item["rec"])
            except Exception as exc:  # noqa: BLE001
                log(f"  {rec.name}: reference unreadable ({exc})")
        prepared.append((rec, item))
    scales: dict[Any, float] = {}
    for key in {rec.reference for rec, item in prepared if item["ref"] is not None}:
        scales[key] = error_scale([error_map(item["ref"], item["rec"]) for rec, item in prepared
                                   if rec.reference == key and item["ref"] is not None])
    out: list[Figure] = []
    for rec, item in prepared:
        shape = item["rec"].shape
        # maps and samples are cropped like the reconstruction when it was cropped to the reference
        maps = {name: np.asarray(center_crop_or_pad(value, shape)) for name, value in item["maps"].items()}
        samples = [np.asarray(center_crop_or_pad(s, shape)) for s in item.get("samples", [])]
        title = f"{rec.name}: {rec.method or '?'}, {_accel_label(rec.acceleration)}, slice {item['slice']}"
        png = file_figure(item["rec"], item["ref"], maps=maps, samples=samples,
                          error_vmax=scales.get(rec.reference), title=title)
        parts = ["reference" if item["ref"] is not None else "no reference", "reconstruction"]
        if item["ref"] is not None:
            parts.append("|reconstruction - reference| (colour bar in image units; scale shared by the files "
                         "with this reference)")
        if samples:
            parts.append(f"{len(samples)} of {item['nsamples']} posterior samples")
        parts += [f"{n} map" for n in maps]
        out.append(Figure(png, f"{rec.name} (slice {item['slice']}): " + ", ".join(parts), rec.name))
    return out


def build_report(run_dir: str | Path, *, tiers: Sequence[str] | str | None = None,
                 target_dir: str | Path | None = None, overwrite: bool = True,
                 log: Callable[[str], None] | None = None, threads: int | None = 1) -> Path:
    """Write ``run_dir/report.html`` (atomically; replaced when it exists, unless ``overwrite`` is False).

    tiers: ``pixel``/``feature``/``task`` (a list or comma-separated string); default: every tier.
    target_dir: fastMRI targets of the same relative names (overrides the run's own references).
    threads: torch intra-op threads while metrics are computed (restored afterwards); None = unchanged.
    Returns the page's path.

    Raises
    ------
    InputError: ``run_dir`` is missing, not a folder, or holds nothing reportable.
    UsageError: unknown tiers. OutputError: the page exists and ``overwrite`` is False, or cannot be written.
    """
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    tier_list = parse_tiers(tiers if tiers is not None else list(TIER_NAMES))
    run = collect_run(run_dir, target_dir)
    out = check_output_path(Path(run_dir) / REPORT_NAME, overwrite)
    # deferred: loads torch, which importing recon.app.report.build does not
    import torch

    saved_threads = torch.get_num_threads()
    try:  # the metrics run slice by slice on small images: one thread is fastest, more spin on a busy machine
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        sources = compute_metrics(run, tier_list, log=say)
    finally:
        torch.set_num_threads(saved_threads)
    report = Report(run, tier_list, tier_tables(run, tier_list, sources), acceleration_plots(run, tier_list),
                    file_images(run, log=say), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    __version__)

    report.intervals = interval_rows(run, log=say)
    report.seconds = round(time.perf_counter() - start, 2)
    page = render(report)
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
