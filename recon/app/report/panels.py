"""PNG panels of a posterior-sampling reconstruction: mean, uncertainty, hallucination map and a few samples.

``recon run --method diffusion`` writes them next to its output as ``<OUT stem>_panels.png`` (one row per
slice, at most :data:`MAX_ROWS` slices spread over the volume). The mean and the samples share one grey scale
per row (99.8th percentile of the mean); the std map has its own scale (99.5th percentile over the shown
slices), the hallucination map is shown from 0 to twice the flagging threshold.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from recon.app.viz import IMAGE_PERCENTILE, save_figure, show_image

#: at most this many slices (rows) in the panel figure
MAX_ROWS = 4
#: at most this many sample columns
MAX_SAMPLES = 3


def panels_path(output: str | Path) -> Path:
    """``OUT_panels.png`` beside the output ``OUT.h5`` / ``OUT.png`` / ``OUT.nii.gz`` ..."""
    out = Path(output)
    name = out.name
    if name.lower().endswith(".nii.gz"):
        stem = name[:-7]
    else:
        stem = out.stem
    return out.with_name(f"{stem}_panels.png")


def panels_figure(reconstruction: np.ndarray, uncertainty: np.ndarray, hallucination: np.ndarray,
                  samples: np.ndarray | None = None, title: str | None = None):
    """The matplotlib figure: ``reconstruction``, ``uncertainty``, ``hallucination`` ``(S, H, W)``;
    ``samples`` ``(S, K, H, W)`` or None."""
    # deferred: loads matplotlib, which importing recon.app.report.panels does not
    from matplotlib.figure import Figure

    # deferred: loads recon.solvers.diffusion, recon.solvers.learned, scipy, torch, tqdm, which importing recon.app.report.panels does not
    from recon.solvers.diffusion.uncertainty import HALLUCINATION_THRESHOLD

    s = reconstruction.shape[0]
    rows = sorted(set(np.linspace(0, s - 1, min(s, MAX_ROWS)).round().astype(int).tolist()))
    k = 0 if samples is None else min(samples.shape[1], MAX_SAMPLES)
    cols = 3 + k
    h, w = reconstruction.shape[-2:]
    fig = Figure(figsize=(2.2 * cols * max(w / h, 0.5), 2.4 * len(rows) + 0.4), constrained_layout=True)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    std_top = float(np.percentile(uncertainty[rows], 99.5)) or float(uncertainty[rows].max()) or 1.0
    for r, i in enumerate(rows):
        top = float(np.percentile(reconstruction[i], IMAGE_PERCENTILE)) or 1.0
        show_image(axes[r, 0], reconstruction[i], "posterior mean" if r == 0 else None, vmax=top)
        im_std = show_image(axes[r, 1], uncertainty[i], "std of samples" if r == 0 else None, vmax=std_top,
                            cmap="inferno")
        im_h = show_image(axes[r, 2], hallucination[i], "hallucination" if r == 0 else None,
                          vmax=2 * HALLUCINATION_THRESHOLD, cmap="magma")
        for j in range(k):
            show_image(axes[r, 3 + j], samples[i, j], f"sample {j + 1}" if r == 0 else None, vmax=top)
        axes[r, 0].set_ylabel(f"slice {i}", fontsize=8)
    fig.colorbar(im_std, ax=axes[:, 1], shrink=0.6, aspect=30).ax.tick_params(labelsize=7)
    fig.colorbar(im_h, ax=axes[:, 2], shrink=0.6, aspect=30).ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_panels(output: str | Path, reconstruction: np.ndarray, datasets: dict[str, np.ndarray],
                 title: str | None = None) -> Path:
    """Write the panels of ``datasets`` (``uncertainty``, ``hallucination``, optional ``samples``) beside
    ``output``; returns the PNG's path. The PNG belongs to the output it accompanies and is replaced with it."""
    hall = datasets.get("hallucination", np.zeros_like(reconstruction))
    fig = panels_figure(reconstruction, datasets["uncertainty"], hall, datasets.get("samples"), title)
    return save_figure(fig, panels_path(output), overwrite=True)
