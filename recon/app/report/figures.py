"""The report's pictures as PNG bytes (matplotlib's object API on the Agg canvas: headless, no pyplot state).

* :func:`file_figure`: one file's row of panels: reference, reconstruction (same grey scale), ``|recon - ref|``
  with a colour bar (in the images' units), and the uncertainty / hallucination maps and posterior samples
  when the file has them, each with its own colour bar.
* :func:`acceleration_figure`: metric vs acceleration, one line per method, one panel per metric.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from recon.app.viz import error_map, error_scale, IMAGE_PERCENTILE, show_image

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: dots per inch of the embedded PNGs (small files: the page embeds one row per reconstruction)
DPI = 80
PANEL_INCHES = 2.4


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """``fig`` rendered as PNG bytes on an Agg canvas."""
    # deferred: loads matplotlib, which importing recon.app.report.figures does not
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _grey_top(image: np.ndarray) -> float:
    return float(np.percentile(image, IMAGE_PERCENTILE)) or float(image.max()) or 1.0


def file_figure(reconstruction: np.ndarray, reference: np.ndarray | None = None, *,
                maps: Mapping[str, np.ndarray] | None = None, samples: Sequence[np.ndarray] = (),
                error_vmax: float | None = None, title: str | None = None) -> bytes:
    """One reconstruction's panels as PNG bytes.

    Parameters
    ----------
    reconstruction: magnitude slice ``(H, W)``.
    reference: the reference slice ``(H, W)`` (same shape), or None (no reference / error panels).
    maps: name -> ``(H, W)`` map (``uncertainty``: pixel-wise std of the posterior samples' magnitudes, in the
        images' units; ``hallucination``), each drawn with its own colour bar.
    samples: a few posterior sample magnitudes ``(H, W)`` drawn on the reconstruction's grey scale.
    error_vmax: top of the |error| colour scale (share it between files to compare them); default the
        99.5th percentile of this error map.
    """
    # deferred: loads matplotlib, which importing recon.app.report.figures does not
    from matplotlib.figure import Figure

    rec = np.abs(np.asarray(reconstruction, dtype=np.float64))
    panels: list[tuple[str, np.ndarray, str, float, bool]] = []  # title, image, cmap, vmax, colour bar
    top = _grey_top(np.abs(reference) if reference is not None else rec)
    if reference is not None:
        ref = np.abs(np.asarray(reference, dtype=np.float64))
        err = error_map(ref, rec)
        panels.append(("reference", ref, "gray", top, False))
        panels.append(("reconstruction", rec, "gray", top, False))
        panels.append(("|recon - reference|", err, "inferno",
                       error_vmax if error_vmax is not None else error_scale([err]), True))
    else:
        panels.append(("reconstruction", rec, "gray", top, False))
    for i, sample in enumerate(samples):
        panels.append((f"sample {i + 1}", np.abs(np.asarray(sample, dtype=np.float64)), "gray", top, False))
    for name, value in (maps or {}).items():
        arr = np.asarray(value, dtype=np.float64)
        panels.append((f"{name} map", arr, "viridis", error_scale([np.abs(arr)]), True))

    h, w = rec.shape
    aspect = h / max(h, w)
    width = PANEL_INCHES * w / max(h, w)
    fig = Figure(figsize=(len(panels) * (width + 0.55) + 0.2, PANEL_INCHES * aspect + (0.75 if title else 0.45)),
                 layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, image, cmap, vmax, bar) in zip(axes, panels):
        im = show_image(ax, image, name, vmax=vmax, cmap=cmap)
        if bar:
            cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            cbar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return png_bytes(fig)


def acceleration_figure(series: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
                        higher_better: Mapping[str, bool]) -> bytes:
    """Metric vs acceleration as PNG bytes.

    ``series``: metric -> method -> ``[(acceleration, value), ...]``; one panel per metric (4 per row), one
    line with markers per method, the y label says which direction is better.
    """
    # deferred: loads matplotlib, which importing recon.app.report.figures does not
    from matplotlib.figure import Figure

    metrics = list(series)
    ncols = min(4, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.5 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    methods = sorted({m for per in series.values() for m in per})
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, metric in zip(axes, metrics):
        for method, points in series[metric].items():
            pts = sorted((a, v) for a, v in points if v is not None and np.isfinite(v))
            if pts:
                ax.plot([a for a, _ in pts], [v for _, v in pts], marker="o", label=method, color=colors[method])
        accels = sorted({a for per in series[metric].values() for a, _ in per})
        ax.set_xticks(accels, [f"{a:g}x" for a in accels])
        ax.set_title(metric, fontsize=10)
        ax.set_ylabel("higher is better" if higher_better.get(metric, True) else "lower is better", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7), fontsize=8)
    fig.suptitle("metric vs acceleration (one line per method)", fontsize=10)
    return png_bytes(fig)
