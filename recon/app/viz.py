"""Matplotlib helpers for reconstruction figures: image panels and |error| maps (``recon demo``, notebooks).

Images are magnitude arrays ``(H, W)`` (H = readout, shown vertically, as fastMRI displays
``reconstruction_rss``); error maps are ``|reference - reconstruction|`` in the images' units. Within a row
all images share the reference's grey scale; all error maps of a figure share one colour scale, so that
their brightness can be compared across methods and accelerations.

Matplotlib is imported inside the functions (``import recon.app.viz`` stays light); figures are built with the
object API (no pyplot state), so they work headless and are not shown unless a notebook displays them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recon.errors import UsageError
from recon.io.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["error_map", "error_scale", "show_image", "comparison_figure", "mask_image", "save_figure"]

#: percentile of the pooled error values that sets the top of the shared error colour scale
ERROR_PERCENTILE = 99.5
#: percentile of the reference that sets the top of a row's grey scale (a few hot pixels do not dim it)
IMAGE_PERCENTILE = 99.8


def _magnitude(image: Any, name: str) -> np.ndarray:
    arr = np.abs(np.asarray(image))
    if arr.ndim != 2:
        raise UsageError(f"{name} must be a 2D image (H, W), got shape {arr.shape}")
    return arr.astype(np.float64)


def error_map(reference: Any, reconstruction: Any) -> np.ndarray:
    """``|reference - reconstruction|`` of two magnitude images of the same shape ``(..., H, W)`` (float64;
    complex inputs are reduced to their magnitude first, as the metrics do)."""
    ref = np.abs(np.asarray(reference)).astype(np.float64)
    rec = np.abs(np.asarray(reconstruction)).astype(np.float64)
    if ref.shape != rec.shape:
        raise UsageError(f"reference {ref.shape} and reconstruction {rec.shape} differ in shape")
    return np.abs(ref - rec)


def error_scale(errors: Sequence[np.ndarray], percentile: float = ERROR_PERCENTILE) -> float:
    """One colour-scale top for several error maps: the ``percentile`` of their pooled values (> 0)."""
    if not errors:
        return 1.0
    pooled = np.concatenate([np.ravel(e) for e in errors])
    top = float(np.percentile(pooled, percentile)) if pooled.size else 0.0
    return top if top > 0 else float(pooled.max(initial=0.0)) or 1.0


def show_image(ax: Axes, image: Any, title: str | None = None, *, vmin: float = 0.0, vmax: float | None = None,
               cmap: str = "gray") -> Any:
    """Draw a magnitude image ``(H, W)`` on ``ax`` without ticks; return the ``AxesImage``."""
    img = _magnitude(image, "image")
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return im


def mask_image(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """The sampling pattern as an ``(H, W)`` image: a column mask ``(W,)`` broadcast down the readout axis."""
    m = np.asarray(mask, dtype=np.float64)
    if m.ndim == 1 and m.shape[0] == shape[-1]:
        m = np.broadcast_to(m[None, :], tuple(shape))
    if m.shape != tuple(shape):
        raise UsageError(f"mask of shape {m.shape} does not fit images of shape {tuple(shape)}")
    return np.asarray(m)


def comparison_figure(
    references: Mapping[str, Any],
    reconstructions: Mapping[str, Mapping[str, Any]],
    *,
    titles: Mapping[str, Mapping[str, str]] | None = None,
    masks: Mapping[str, Any] | None = None,
    error_vmax: float | None = None,
    reference_title: str = "reference",
    panel_size: float = 2.0,
    suptitle: str | None = None,
) -> Figure:
    """A grid of images and their |error| maps.

    Parameters
    ----------
    references: row label (e.g. ``"4x"``) -> reference magnitude ``(H, W)``.
    reconstructions: row label -> {method -> reconstruction ``(H, W)``}; every row has the same methods
        (column order = the first row's order).
    titles: row label -> {method -> title}; default the method name.
    masks: row label -> sampling mask (``(W,)`` or ``(H, W)``), drawn under the reference in the error row.
    error_vmax: top of the shared error colour scale; default :func:`error_scale` of all error maps.
    panel_size: inches per panel.

    Returns
    -------
    The figure: per row label two rows (images, then errors) of ``1 + len(methods)`` panels, plus one
    colour-bar axis for the error scale: ``2 * rows * (1 + methods) + 1`` axes.
    """
    # deferred: loads matplotlib, which importing recon.app.viz does not
    from matplotlib.figure import Figure

    if not references:
        raise UsageError("comparison_figure needs at least one row")
    if set(references) != set(reconstructions):
        raise UsageError("references and reconstructions must have the same row labels")
    labels = list(references)
    methods = list(reconstructions[labels[0]])
    for label in labels:
        if list(reconstructions[label]) != methods:
            raise UsageError(f"row {label!r} has methods {list(reconstructions[label])}, expected {methods}")
    refs = {label: _magnitude(references[label], f"reference {label!r}") for label in labels}
    errors = {label: {m: error_map(refs[label], _magnitude(reconstructions[label][m], m)) for m in methods}
              for label in labels}
    vmax_err = error_vmax if error_vmax is not None else error_scale(
        [e for row in errors.values() for e in row.values()])

    ncols, nrows = 1 + len(methods), 2 * len(labels)
    h, w = refs[labels[0]].shape
    fig = Figure(figsize=(panel_size * ncols * w / max(h, w) + 0.6, panel_size * nrows * h / max(h, w) + 0.5),
                 layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    err_im = None
    for r, label in enumerate(labels):
        ref = refs[label]
        top = float(np.percentile(ref, IMAGE_PERCENTILE)) or float(ref.max()) or 1.0
        row_titles = (titles or {}).get(label, {})
        ax = fig.add_subplot(grid[2 * r, 0])
        show_image(ax, ref, reference_title, vmax=top)
        ax.set_ylabel(f"{label}", fontsize=11, fontweight="bold")
        ax = fig.add_subplot(grid[2 * r + 1, 0])
        if masks is not None and label in masks:
            show_image(ax, mask_image(masks[label], ref.shape), "sampling mask", vmax=1.0)
        else:
            show_image(ax, np.zeros_like(ref), None, vmax=1.0)
        ax.set_ylabel(f"{label} |error|", fontsize=9)
        for c, method in enumerate(methods, start=1):
            show_image(fig.add_subplot(grid[2 * r, c]), reconstructions[label][method],
                       row_titles.get(method, method), vmax=top)
            err_im = show_image(fig.add_subplot(grid[2 * r + 1, c]), errors[label][method], None,
                                vmax=vmax_err, cmap="inferno")
    cbar = fig.colorbar(err_im, ax=fig.axes, shrink=0.6, pad=0.01, aspect=40)
    cbar.set_label("|reference - reconstruction|", fontsize=9)
    cbar.ax.tick_params(labelsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig


def save_figure(fig: Figure, path: str | Path, *, overwrite: bool = False, dpi: int = 120) -> Path:
    """Write ``fig`` atomically (:func:`recon.io.atomic.atomic_path`); the format follows the extension."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, facecolor="white")
    return path
