"""The report's calibrated-interval table (issue 14): per file with ``lower``/``upper`` datasets (``recon run|batch
--calibration``), the fraction of the reference's object pixels outside their interval beside the target
``alpha`` of the calibration, and the mean half-width relative to the object's mean intensity.

Object: the reference's pixels above 10 % of its 99th percentile, per slice
(:func:`recon.solvers.diffusion.uncertainty.object_mask`, as ``recon calibrate`` counts misses).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.arrays import center_crop_or_pad
from recon.app.report.collect import load_reference
from html import escape


@dataclass
class IntervalRow:
    """One file: ``miss`` (missed fraction of object pixels, all slices pooled), ``per_slice`` misses,
    ``alpha`` (the calibration's target; None if unknown), ``width`` (mean half-width / mean object intensity)."""

    name: str
    miss: float
    per_slice: list[float]
    alpha: float | None
    width: float


def interval_rows(run: Any, *, log: Callable[[str], None]) -> list[IntervalRow]:
    """Rows for the files of ``run`` (:class:`recon.app.report.collect.RunData`) that hold intervals and a reference."""
    # deferred: loads h5py, which importing recon.app.report.intervals does not
    import h5py

    # deferred: loads recon.solvers.diffusion, recon.solvers.learned, scipy, torch, tqdm, which importing recon.app.report.intervals does not
    from recon.solvers.diffusion.uncertainty import object_mask

    rows: list[IntervalRow] = []
    cache: dict[Any, np.ndarray] = {}
    for rec in run.files:
        if not rec.usable or rec.reference is None or not {"lower", "upper"} <= set(rec.datasets):
            continue
        try:
            with h5py.File(rec.path, "r") as f:
                lower, upper = f["lower"][()], f["upper"][()]
                alpha = float(f["interval_alpha"][0]) if "interval_alpha" in f else None
            ref = load_reference(rec.reference, cache)
        except Exception as exc:  # noqa: BLE001
            log(f"  {rec.name}: intervals unreadable ({exc})")
            continue
        if ref.ndim != 3 or ref.shape[0] != lower.shape[0]:
            continue
        shape = tuple(min(a, b) for a, b in zip(ref.shape[-2:], lower.shape[-2:]))
        ref, lower, upper = (np.asarray(center_crop_or_pad(v, shape), np.float64) for v in (ref, lower, upper))
        misses, counts, widths, levels = [], [], [], []
        for i in range(ref.shape[0]):
            obj = object_mask(ref[i])
            if not obj.any():
                continue
            out = (ref[i] < lower[i]) | (ref[i] > upper[i])
            misses.append(float(out[obj].mean()))
            counts.append(int(obj.sum()))
            widths.append(float(((upper[i] - lower[i]) / 2)[obj].mean()))
            levels.append(float(ref[i][obj].mean()))
        if not misses:
            continue
        w = np.asarray(counts, float)
        rows.append(IntervalRow(rec.name, float(np.average(misses, weights=w)), misses, alpha,
                                float(np.average(widths, weights=w) / np.average(levels, weights=w))))
    return rows


def render_rows(rows: list[IntervalRow]) -> str:
    """The HTML section (empty string without rows)."""
    if not rows:
        return ""
    body = []
    for r in rows:
        target = "?" if r.alpha is None else f"{r.alpha:.3f}"
        over = r.alpha is not None and r.miss > r.alpha
        miss = f"<b>{r.miss:.4f}</b>" if over else f"{r.miss:.4f}"
        body.append(f"<tr><td>{escape(r.name)}</td><td>{miss}</td><td>{target}</td>"
                    f"<td>{min(r.per_slice):.4f} &ndash; {max(r.per_slice):.4f}</td><td>{r.width:.4f}</td></tr>")
    mean = float(np.mean([r.miss for r in rows]))
    return ('<h2 id="intervals">Calibrated intervals</h2>'
            '<p class="muted">Fraction of the reference\'s object pixels outside [lower, upper] per file (bold: above '
            "the calibration's target alpha; the guarantee is on the mean over new slices, single files scatter "
            "around it), its range over the file's slices, and the mean half-width relative to the object's mean "
            f"intensity. Mean over {len(rows)} file(s): {mean:.4f}.</p>"
            "<table><thead><tr><th>file</th><th>miss rate</th><th>target alpha</th><th>per slice</th>"
            "<th>half-width / mean intensity</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>")
