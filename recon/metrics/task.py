"""Task-level metrics: offline proxies for what a reconstruction is *used for*, on magnitude volumes.

Pixel metrics reward blur and miss lost structure; a downstream task sees both. Without a clinical model
(nothing is downloaded) two proxies stand in for tasks, each computed on the reference and on the
reconstruction *with the same fixed rules*, and compared:

* **Tissue classification Dice** (``dice_csf``, ``dice_gm``, ``dice_wm``, ``dice_mean``) -- a stand-in for
  segmentation-based volumetry on T1-weighted brain images. An object mask is taken from the *reference*
  (Otsu threshold over the volume, holes filled, the largest connected component of each slice). Inside it,
  the reference's intensities are clustered into three classes by k-means (:func:`scipy.cluster.vq.kmeans2`,
  deterministic initialisation at the 1/6, 3/6, 5/6 quantiles); in T1 contrast the dark, middle and bright
  classes are CSF, grey matter and white matter. The reconstruction is classified with the *same* class
  centres and the *same* mask, so blurred boundaries, noise, aliasing and intensity shifts all move voxels
  between classes. Dice per class (``2|A n B| / (|A| + |B|)``, 1 where both are empty) and their mean.
  What it is not: a clinical segmentation (no bias-field correction, no skull stripping, no atlas prior --
  on images with a skull, bone falls into the dark class and scalp fat into the bright one). It is
  meaningful only for T1-weighted brain images; on knee or other contrasts the three numbers are
  "intensity-class agreement", not tissue volumes.
* **Edge F1** (``edge_f1``) -- a stand-in for structure preservation (boundaries a reader or a segmenter relies
  on), any anatomy. Canny edges (:func:`skimage.feature.canny`, ``sigma`` :data:`CANNY_SIGMA`, hysteresis
  thresholds :data:`CANNY_THRESHOLDS` on the gradient of each slice divided by the *reference* volume's
  maximum, so a loss of contrast loses edges) of reference and reconstruction, inside the object mask dilated
  by :data:`MASK_MARGIN` pixels; a reconstruction edge is correct when a reference edge lies within
  :data:`EDGE_TOLERANCE` pixel (8-neighbourhood) and vice versa; F1 of that precision and recall, pooled over
  the slices. 1 where neither image has edges. Blur removes edges (recall drops), noise and aliasing add
  false ones (precision drops).

All scores lie in [0, 1], higher is better, and are deterministic. Inputs are magnitude volumes ``(S, H, W)``
(or one ``(H, W)`` image), already cropped the way the caller wants (:func:`recon.metrics.tiers.
volume_tier_metrics` applies fastMRI's crop), on the same intensity scale.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage as ndi

from recon.errors import DataError, UsageError
from scipy.cluster.vq import ClusterError, kmeans2

__all__ = [
    "CANNY_SIGMA", "CANNY_THRESHOLDS", "CLASS_NAMES", "EDGE_TOLERANCE", "HIGHER_IS_BETTER", "MASK_MARGIN",
    "TASK_METRICS", "classify", "dice", "edge_f1", "edge_maps", "fit_classes", "object_mask", "task_metrics",
]

#: tissue classes in order of increasing T1 intensity
CLASS_NAMES = ("csf", "gm", "wm")
#: the task-tier metrics, in the order they are reported
TASK_METRICS = ("dice_csf", "dice_gm", "dice_wm", "dice_mean", "edge_f1")
HIGHER_IS_BETTER = {name: True for name in TASK_METRICS}
#: Gaussian smoothing of the Canny detector, pixels
CANNY_SIGMA = 1.5
#: Canny hysteresis thresholds (low, high) on the gradient magnitude of image / reference maximum
CANNY_THRESHOLDS = (0.1, 0.2)
#: an edge within this many pixels (Chebyshev distance) of an edge of the other image counts as found
EDGE_TOLERANCE = 1
#: the edge score is taken inside the object mask dilated by this many pixels (keeps the object's outline)
MASK_MARGIN = 2
#: k-means iterations (fixed: kmeans2 always runs them all)
_KMEANS_ITER = 50


def _volume(x: np.ndarray, name: str) -> np.ndarray:
    """A float64 magnitude array ``(S, H, W)`` (an ``(H, W)`` image becomes one slice)."""
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise UsageError(f"task metrics need numeric arrays, got dtype {arr.dtype} for the {name}")
    arr = np.abs(arr) if np.iscomplexobj(arr) else arr.astype(np.float64, copy=False)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise UsageError(f"task metrics need (slices, H, W) volumes, got shape {arr.shape} for the {name}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"the {name} has non-finite values")
    return arr.astype(np.float64, copy=False)


def object_mask(reference: np.ndarray) -> np.ndarray:
    """Boolean mask ``(S, H, W)`` of the imaged object: reference > Otsu threshold of the whole volume, holes
    filled and only the largest connected component kept, slice by slice (slices of a 2D multi-slice scan
    need not touch). A slice without signal above the threshold gets an empty mask."""
    # deferred: loads skimage, which importing recon.metrics.task does not
    from skimage.filters import threshold_otsu

    ref = _volume(reference, "reference")
    if not ref.max() > ref.min():
        raise DataError("the reference is constant: no object to classify")
    thr = threshold_otsu(ref)
    mask = np.zeros(ref.shape, dtype=bool)
    for i, img in enumerate(ref):
        filled = ndi.binary_fill_holes(img > thr)
        labels, n = ndi.label(filled)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            mask[i] = labels == (1 + int(np.argmax(sizes)))
    return mask


def fit_classes(values: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Sorted k-means centres ``(n_classes,)`` of 1-D intensities (deterministic: quantile initialisation).

    :class:`DataError` when the values do not hold ``n_classes`` distinct clusters.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if np.unique(x).size < n_classes:
        raise DataError(f"fewer than {n_classes} distinct intensities inside the object mask: "
                        "no tissue classes to fit")
    init = np.quantile(x, (np.arange(n_classes) + 0.5) / n_classes)[:, None]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centres, _ = kmeans2(x[:, None], init, iter=_KMEANS_ITER, minit="matrix", missing="raise")
    except ClusterError:
        raise DataError(f"k-means found fewer than {n_classes} intensity classes inside the object mask") from None
    return np.sort(centres[:, 0])


def classify(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each value (``centres`` sorted ascending; ties go to the lower class)."""
    midpoints = (centres[1:] + centres[:-1]) / 2
    return np.searchsorted(midpoints, np.asarray(values, dtype=np.float64), side="left")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|a n b| / (|a| + |b|)`` of two boolean arrays; 1.0 when both are empty."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def edge_maps(volume: np.ndarray, scale: float) -> np.ndarray:
    """Canny edges ``(S, H, W)`` bool of each slice of ``volume / scale`` (see :data:`CANNY_SIGMA`)."""
    # deferred: loads skimage, which importing recon.metrics.task does not
    from skimage.feature import canny

    low, high = CANNY_THRESHOLDS
    return np.stack([canny(img / scale, sigma=CANNY_SIGMA, low_threshold=low, high_threshold=high)
                     for img in volume])


def edge_f1(ref_edges: np.ndarray, pred_edges: np.ndarray, tolerance: int = EDGE_TOLERANCE) -> float:
    """F1 of edge maps ``(S, H, W)`` with a ``tolerance``-pixel match radius within each slice.

    precision = share of predicted edges within ``tolerance`` of a reference edge; recall = share of reference
    edges within ``tolerance`` of a predicted edge. 1.0 when neither has edges, 0.0 when only one has.
    """
    n_ref, n_pred = int(np.count_nonzero(ref_edges)), int(np.count_nonzero(pred_edges))
    if n_ref == 0 and n_pred == 0:
        return 1.0
    if n_ref == 0 or n_pred == 0:
        return 0.0
    size = 2 * int(tolerance) + 1
    structure = np.zeros((1, size, size), dtype=bool)
    structure[0] = True  # within a slice only
    near_ref = ndi.binary_dilation(ref_edges, structure)
    near_pred = ndi.binary_dilation(pred_edges, structure)
    precision = np.count_nonzero(pred_edges & near_ref) / n_pred
    recall = np.count_nonzero(ref_edges & near_pred) / n_ref
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def task_metrics(target: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """The task tier of a prediction against its reference: ``{name: value for name in TASK_METRICS}``.

    Parameters
    ----------
    target, prediction: magnitude volumes ``(S, H, W)`` (or ``(H, W)``), same shape and intensity scale
        (complex input is reduced to its magnitude). The mask and class centres come from ``target`` only.

    Raises
    ------
    UsageError: shapes differ or are not 2D/3D. DataError: non-finite values, a constant target, or fewer than
    three intensity classes inside the target's object mask.
    """
    ref = _volume(target, "target")
    pred = _volume(prediction, "prediction")
    if ref.shape != pred.shape:
        raise UsageError(f"target and prediction shapes differ: {ref.shape} vs {pred.shape}")
    mask = object_mask(ref)
    if not mask.any():
        raise DataError("the target's object mask is empty")
    centres = fit_classes(ref[mask])
    ref_cls = classify(ref[mask], centres)
    pred_cls = classify(pred[mask], centres)
    out: dict[str, float] = {}
    for k, name in enumerate(CLASS_NAMES):
        out[f"dice_{name}"] = dice(ref_cls == k, pred_cls == k)
    out["dice_mean"] = float(np.mean([out[f"dice_{name}"] for name in CLASS_NAMES]))

    region = ndi.binary_dilation(mask, np.ones((1, 3, 3), dtype=bool), iterations=MASK_MARGIN)
    scale = float(ref.max())
    out["edge_f1"] = edge_f1(edge_maps(ref, scale) & region, edge_maps(pred, scale) & region)
    return {name: float(out[name]) for name in TASK_METRICS}
