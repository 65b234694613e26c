"""Fidelity-tier metrics: fastMRI's NMSE, PSNR and SSIM (torch, differentiable), folder evaluation and the
data-consistency residual.

* :func:`nmse`, :func:`psnr`, :func:`ssim`, :func:`volume_metrics`: floats, numpy or torch inputs;
  ``*_tensor`` variants and :class:`SSIMLoss` for autograd (training losses).
* :func:`evaluate_folders` -> :class:`EvalResult`: fastMRI's ``evaluate.py`` over two folders (``recon eval``).
* :func:`dc_residual`: ``||M (F S x) - y||`` per coil and phase-encode line.
"""
from recon.metrics.consistency import dc_residual
from recon.metrics.evaluation import EvalResult, evaluate_folders
from recon.metrics.fidelity import (
    K1,
    K2,
    METRIC_NAMES,
    WIN_SIZE,
    SSIMLoss,
    fastmri_crop_size,
    nmse,
    nmse_tensor,
    psnr,
    psnr_tensor,
    ssim,
    ssim_tensor,
    volume_metrics,
)
from recon.metrics.reference import reference_metrics, reference_slice

__all__ = [
    "K1", "K2", "METRIC_NAMES", "WIN_SIZE", "EvalResult", "SSIMLoss", "dc_residual", "evaluate_folders",
    "fastmri_crop_size", "nmse", "nmse_tensor", "psnr", "psnr_tensor", "reference_metrics", "reference_slice",
    "ssim", "ssim_tensor", "volume_metrics",
]
