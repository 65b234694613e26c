"""Truth-based hallucination maps and detection scores (issue 14; Bhadra et al., IEEE TMI 2021).

Bhadra et al. define the hallucination of a reconstruction ``x_hat`` of the truth ``x`` from ``y = A x + n``
as the null-space component of its error, ``h = P_null (x_hat - x)`` with ``P_null = I - A^+ A``: the part of
the error the measurements cannot reveal (the measured part, ``P_range (x_hat - x)``, is the data error).
recon's truth-free ``hallucination`` map (:mod:`recon.solvers.diffusion.uncertainty`) only sees
``P_null x_hat`` and the samples' spread; :func:`detection_auc` scores it as a detector of the pixels where
the truth-based ``|h|`` is large.

Shapes: complex images ``(..., H, W)`` (torch, in the units of ``data``); maps ``(H, W)`` numpy.
"""
from __future__ import annotations

import numpy as np
import torch

from recon.solvers.diffusion.samplers import SenseData
from recon.solvers.diffusion.uncertainty import exact_null_component, null_component  # noqa: F401 (re-export)
from scipy.ndimage import uniform_filter
from scipy.stats import rankdata


def null_space_error(data: SenseData, reconstruction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``h = P_null (x_hat - x)`` ``(..., H, W)`` complex: the truth-based hallucination (Bhadra et al.),
    with the exact projection :func:`exact_null_component`."""
    err = reconstruction.to(torch.complex64) - truth.to(torch.complex64)
    return exact_null_component(data, err)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (ties counted half): the
    Mann-Whitney ``U / (n_pos n_neg)``; NaN if a class is empty."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def large_hallucination(h_abs: np.ndarray, obj: np.ndarray, reference_level: float,
                        fraction: float = 0.1) -> np.ndarray:
    """Pixels of the object where the truth-based ``|h|`` exceeds ``fraction`` of ``reference_level``
    (e.g. the object's mean true intensity): the positives a hallucination detector should find."""
    return np.asarray(obj, bool) & (np.asarray(h_abs) > float(fraction) * float(reference_level))


def detection_auc(detector: np.ndarray, h_abs: np.ndarray, obj: np.ndarray, reference_level: float,
                  fraction: float = 0.1) -> tuple[float, float]:
    """``(auc, positive_fraction)``: ROC AUC of ``detector`` over the object pixels for the labels
    :func:`large_hallucination`, and the fraction of object pixels that are positive."""
    obj = np.asarray(obj, bool)
    labels = large_hallucination(h_abs, obj, reference_level, fraction)[obj]
    return roc_auc(np.asarray(detector)[obj], labels), float(labels.mean())


def local_detector_ceiling(h_abs: np.ndarray, obj: np.ndarray, reference_level: float, fraction: float = 0.1,
                           window: int = 5) -> float:
    """ROC AUC, for the labels of :func:`detection_auc`, of an ORACLE map that knows the truth-based ``|h|``
    but only at the resolution of a ``window`` x ``window`` box: ``sqrt(box[|h|^2])``, the local RMS
    hallucination. A truth-free map that averages over such a window (recon's ``hallucination`` map uses 5) can
    at best predict this local RMS, so this AUC bounds what it can reach where ``|h|`` varies from pixel to
    pixel inside the window (issue 14: at 8x the column-mask ringing in ``|h|`` limits a 5 x 5 oracle to
    about 0.78)."""
    h = np.asarray(h_abs, np.float64)
    local = np.sqrt(np.maximum(uniform_filter(h * h, size=int(window), mode="nearest"), 0.0))
    return detection_auc(local, h, obj, reference_level, fraction)[0]
