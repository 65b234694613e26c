"""The demo: the toolkit's main job on the bundled sample (what ``recon demo`` runs).

The bundled fully sampled sample (:func:`recon.data.sample_path`, 3 slices, 8 coils, 224 x 192) is
undersampled retrospectively with fastMRI ``random`` column masks (4x with centre fraction 0.08, 8x with
0.04, seeded from the file name as fastMRI's transforms do) and reconstructed with every method, each through
:func:`recon.app.pipeline.reconstruct_file`, i.e. exactly as ``recon run SAMPLE OUT.h5 --method M --accel R
--center-fraction F`` does. Into the output folder go:

* ``{method}_{R}x.h5``: the fastMRI submission layout (``reconstruction`` (S, 224, 192) float32, ``mask``,
  method/parameter/mask/metric attributes), as ``recon run`` writes it;
* ``demo.png``: per acceleration a row of images (reference + methods, titles with PSNR/SSIM) and a row of
  |error| maps on one colour scale shared by the whole figure;
* ``metrics.md`` / ``metrics.json``: fastMRI's NMSE/PSNR/SSIM of each volume against the RSS of the fully
  sampled k-space (fastMRI's evaluation crop, data range = volume max), plus wall times;
* ``report.html``: ``recon report`` of the folder (:mod:`recon.app.report`): the pixel, feature and task tiers per
  reconstruction, metric vs acceleration plots, images with |error| maps; one self-contained page.

Learned methods (``varnet``, ``modl``, ``diffusion`` with its default 4 posterior samples, so the report shows
its uncertainty and hallucination maps) are included when their bundled weights load, else skipped with a
note. The demo replaces its own earlier outputs (it is idempotent: a rerun gives the same files).

ESPIRiT maps of one undersampled slice are computed once and shared by ``sense``, ``l1-wavelet`` and ``tv``
(the methods whose registry entry says ``shares_maps``), through an explicit
:class:`~recon.solvers.maps_cache.MapsCache` handed to :func:`~recon.app.pipeline.reconstruct_file`; maps are
deterministic, so the images equal separate ``recon run`` calls up to float rounding (~1e-5 relative), and
two of the three ESPIRiT calibrations per acceleration are saved.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import OutputError, ReconError
from recon.metrics.reference import reference_volume
from recon.solvers.maps_cache import MapsCache
from recon.app.pipeline import get_method, reconstruct_file, Undersampling
from recon.io import read_raw
from recon.io.atomic import atomic_path
from recon.app.viz import comparison_figure, save_figure
from recon.data import sample_path
from recon.app.report import build_report
from recon import __version__
from recon.metrics import fastmri_crop_size

#: classical methods, in the order of the figure's columns
CLASSICAL_METHODS: tuple[str, ...] = ("zero-filled", "sense", "grappa", "l1-wavelet", "tv")
#: learned methods, included when their bundled weights load
LEARNED_METHODS: tuple[str, ...] = ("varnet", "modl", "diffusion")
#: (acceleration, centre fraction) pairs, fastMRI's 4x / 8x settings
ACCELERATIONS: tuple[tuple[int, float], ...] = ((4, 0.08), (8, 0.04))

FIGURE_NAME = "demo.png"
REPORT_NAME = "report.html"
#: tiers of the demo's report.html: all three (the feature and task tiers add ~2 s of CPU time for the
#: 14 reconstructions of 3 slices, measured; the pixel tier is the one the demo stores itself)
REPORT_TIERS: tuple[str, ...] = ("pixel", "feature", "task")
METRICS_MD = "metrics.md"
METRICS_JSON = "metrics.json"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    accelerations: ``(R, centre fraction)`` pairs (fastMRI ``random`` masks, seeded from the file name).
    methods: pipeline method names (:data:`recon.app.pipeline.METHODS`), in column order.
    options: method -> options passed to it (e.g. ``{"tv": {"iterations": 15}}``).
    learned: also try :data:`LEARNED_METHODS` (skipped with a note when they do not load).
    slices: reconstruct only these slices of the sample (a copy of them under the sample's name, so the
        masks are the same), None = all.
    """

    accelerations: tuple[tuple[int, float], ...] = ACCELERATIONS
    methods: tuple[str, ...] = CLASSICAL_METHODS
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    learned: bool = True
    slices: tuple[int, ...] | None = None


#: the full demo: 4x and 8x, every method with its defaults
DEFAULT = DemoConfig()
#: ``--quick`` (tests, a first look): the middle slice at 4x, classical methods with their defaults
QUICK = DemoConfig(accelerations=((4, 0.08),), learned=False, slices=(1,))


def output_name(method: str, acceleration: int) -> str:
    """File name of one reconstruction: ``{method}_{R}x.h5``."""
    return f"{method}_{acceleration}x.h5"


def learned_unavailable(name: str) -> str | None:
    """None when learned method ``name`` loads with its bundled weights, else the one-line reason."""
    try:
        # deferred: loads recon.solvers.learned, which importing recon.app.demo does not
        from recon.solvers.learned.method import get_model

        get_method(name, {})
        get_model(name)
    except ReconError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure to import/load means: skip it, say why
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def sample_subset(sample: Path, slices: tuple[int, ...], folder: Path) -> Path:
    """A copy of ``slices`` of ``sample`` (k-space, header, reference) in ``folder`` under the same file name,
    so that masks seeded from the name are the sample's own."""
    # deferred: loads h5py, which importing recon.app.demo does not
    from recon.io.fastmri import write_fastmri_kspace

    raw = read_raw(sample)
    index = list(slices)
    subset = type(raw)(raw.kspace[index], raw.header, raw.mask,
                       None if raw.reference is None else raw.reference[index], raw.reference_name, raw.path)
    return write_fastmri_kspace(folder / sample.name, subset,
                                reference=raw.reference_name if raw.reference is not None else None)


def metrics_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one line per method, per acceleration PSNR (dB) / SSIM / NMSE, and wall time (s)."""
    accels = sorted({r["acceleration"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["acceleration"]): r for r in rows}
    head = ["method"] + [f"{a}x {k}" for a in accels for k in ("PSNR", "SSIM", "NMSE", "time")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for m in methods:
        cells = [m]
        for a in accels:
            r = by.get((m, a))
            cells += (["-"] * 4 if r is None else
                      [f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['nmse']:.4f}", f"{r['seconds']:.1f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


def demo_figure(out: Path, reference: np.ndarray, rows: list[dict[str, Any]], slice_index: int,
                slice_label: str) -> Path:
    """``demo.png`` from the written ``.h5`` files: slice ``slice_index`` of each reconstruction and the
    ``mask`` stored with it."""
    # deferred: loads h5py, which importing recon.app.demo does not
    import h5py

    recs: dict[str, dict[str, np.ndarray]] = {}
    titles: dict[str, dict[str, str]] = {}
    masks: dict[str, np.ndarray] = {}
    for r in rows:
        label = f"{r['acceleration']}x"
        with h5py.File(out / r["file"], "r") as f:
            recs.setdefault(label, {})[r["method"]] = f["reconstruction"][slice_index]
            if "mask" in f:
                masks[label] = f["mask"][()]
        titles.setdefault(label, {})[r["method"]] = f"{r['method']}\n{r['psnr']:.2f} dB / {r['ssim']:.3f}"
    refs = {label: reference[slice_index] for label in recs}
    fig = comparison_figure(
        refs, recs, titles=titles, masks=masks,
        reference_title="reference\n(fully sampled RSS)",
        suptitle=(f"recon demo: bundled sample, {slice_label}; retrospective fastMRI random masks; "
                  "PSNR / SSIM of the volume"))
    return save_figure(fig, out / FIGURE_NAME, overwrite=True)


def run_demo(out_dir: str | Path = "out/demo", config: DemoConfig = DEFAULT, *,
             log: Callable[[str], None] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run the demo into ``out_dir`` (created with its parents; the demo's own earlier files are replaced).

    ``threads``: torch intra-op threads while the demo runs (restored afterwards); None = unchanged. The
    sample's slices are small (224 x 192 x 8 coils): one thread is about as fast as two on an idle machine and
    10-20x faster than two on a busy one (TV at 4x, one slice: 1.4 s vs 25 s measured with the machine's two
    cores shared), which is why ``recon demo`` defaults to 1.

    Returns the content of ``metrics.json``: ``{"sample", "reference", "crop", "results": [{"method",
    "acceleration", "center_fraction", "file", "nmse", "psnr", "ssim", "seconds", "parameters"}, ...],
    "skipped": {method: reason}, "figure", "metrics_md", "seconds"}`` (paths relative to ``out_dir``).
    """
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the demo folder: {exc.strerror or exc}", out) from None

    saved_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        with tempfile.TemporaryDirectory(prefix="recon-demo-") as tmp:
            sample = sample_path()
            if config.slices is not None:
                sample = sample_subset(sample, config.slices, Path(tmp))
            report = _run(sample, out, config, say)
    finally:
        torch.set_num_threads(saved_threads)
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["report"] = REPORT_NAME
    _write_text(out / METRICS_JSON, json.dumps(report, indent=2) + "\n")

    t0 = time.perf_counter()
    build_report(out, tiers=REPORT_TIERS, log=lambda msg: None, threads=threads or 1)
    say(f"  report ({', '.join(REPORT_TIERS)} tiers) in {time.perf_counter() - t0:.1f} s -> {out / REPORT_NAME}")
    report["table"] = metrics_table(report["results"])
    return report


def _run(sample: Path, out: Path, config: DemoConfig, say: Callable[[str], None]) -> dict[str, Any]:
    """The demo on ``sample``: reconstructions, figure and ``metrics.md``; returns the metrics report."""
    reference = reference_volume(sample)

    methods = list(config.methods)
    skipped: dict[str, str] = {}
    if config.learned:
        for name in LEARNED_METHODS:
            reason = learned_unavailable(name)
            if reason is None:
                methods.append(name)
            else:
                skipped[name] = reason
                say(f"note: skipping {name}: {reason}")

    rows: list[dict[str, Any]] = []
    maps = MapsCache()  # sense, l1-wavelet and tv share each undersampled slice's ESPIRiT maps
    for accel, fraction in config.accelerations:
        und = Undersampling(mask_type="random", accelerations=(accel,), center_fractions=(fraction,))
        for method in methods:
            target = out / output_name(method, accel)
            summary = reconstruct_file(sample, target, method=method, overwrite=True, undersampling=und,
                                       maps_cache=maps, **config.options.get(method, {}))
            metrics = summary["metrics"]
            rows.append({"method": method, "acceleration": accel, "center_fraction": fraction,
                         "file": target.name, **metrics, "seconds": summary["seconds"],
                         "parameters": summary["parameters"]})
            say(f"  {accel}x {method:<12} PSNR {metrics['psnr']:6.2f} dB  SSIM {metrics['ssim']:.4f}  "
                f"({summary['seconds']:.1f} s) -> {target}")

    slices = list(config.slices) if config.slices is not None else list(range(reference.shape[0]))
    shown = len(slices) // 2
    figure = demo_figure(out, reference, rows, shown, f"slice {slices[shown]}")
    table = metrics_table(rows)
    crop = fastmri_crop_size(reference.shape)
    report = {
        "sample": sample.name,
        "slices": slices,
        "reference": "RSS of the fully sampled k-space (the sample's reconstruction_rss), "
                     f"{reference.shape[-2]} x {reference.shape[-1]}",
        "crop": list(crop),
        "metrics": "fastMRI NMSE/PSNR/SSIM over the volume after fastMRI's centre crop, data range = volume max",
        "recon_version": __version__,
        "results": rows,
        "skipped": skipped,
        "figure": figure.name,
        "metrics_md": METRICS_MD,
    }
    md = (f"# recon demo: {sample.name}\n\n"
          f"fastMRI random masks seeded from the file name; metrics against the fully sampled RSS "
          f"(fastMRI definitions, crop {crop[0]} x {crop[1]}); time = wall seconds per volume "
          f"({reference.shape[0]} slices).\n\n{table}\n")
    if skipped:
        md += "\nSkipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "\n"
    _write_text(out / METRICS_MD, md)
    return report
