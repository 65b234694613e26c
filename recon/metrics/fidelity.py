"""Fidelity-tier image metrics: NMSE, PSNR and SSIM exactly as fastMRI's evaluation defines them, in torch.

fastMRI's definitions (``fastmri/evaluate.py``), on magnitude volumes ``(S, H, W)``:

* ``NMSE = ||gt - pred||^2 / ||gt||^2`` over the whole volume;
* ``PSNR = 10 log10(maxval^2 / mean((gt - pred)^2))`` over the whole volume, ``maxval = gt.max()``;
* ``SSIM``: per slice, as ``skimage.metrics.structural_similarity(gt[i], pred[i], data_range=maxval)``
  with its defaults (7 x 7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariance, i.e. variances
  scaled by ``N / (N - 1)`` with ``N = 49``; the mean of the SSIM map over the pixels whose window lies
  inside the image), then averaged over slices; ``maxval = gt.max()`` of the *volume*.

Everything is written with differentiable torch operations, so :func:`ssim_tensor` and :class:`SSIMLoss`
also serve as training losses. The float-valued functions (:func:`nmse`, :func:`psnr`, :func:`ssim`,
:func:`volume_metrics`) accept numpy arrays or torch tensors and compute in float64. Complex inputs are
reduced to their magnitude. The choices are explicit parameters: ``crop`` (centre crop of both images,
``"fastmri"`` for the square crop of fastMRI's ``evaluate.py``), ``maxval`` (the data range) and
``dims`` (2 = SSIM per slice, 3 = one SSIM over the volume with a 7 x 7 x 7 window).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from recon.arrays import center_crop
from recon.errors import UsageError
from recon.metrics._common import K1, K2, METRIC_NAMES, WIN_SIZE, fastmri_crop_size

__all__ = [
    "K1", "K2", "METRIC_NAMES", "WIN_SIZE", "SSIMLoss", "as_magnitude", "center_crop", "fastmri_crop_size",
    "nmse", "nmse_tensor", "psnr", "psnr_tensor", "ssim", "ssim_tensor", "volume_metrics",
]

Array = Union[np.ndarray, torch.Tensor]
#: ``None`` (no crop), ``(h, w)`` (centre crop of both images), or ``"fastmri"`` (see :func:`fastmri_crop_size`)
Crop = Union[None, str, tuple[int, int]]
Number = Union[float, torch.Tensor]



def as_magnitude(x: Array, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A real torch tensor: ``|x|`` for complex input, ``x`` otherwise; numpy -> float64, tensors keep dtype.

    ``dtype`` forces a floating dtype. Autograd flows through (no copy is detached).
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise UsageError(f"metrics need numeric arrays, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if not t.is_complex():
            t = t.to(torch.float64)
    if t.is_complex():
        t = t.abs()
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def _pair(gt: Array, pred: Array, crop: Crop, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude tensors of the same shape, dtype and device, both centre-cropped as ``crop`` says."""
    g = as_magnitude(gt, dtype)
    p = as_magnitude(pred, dtype)
    if dtype is None and g.dtype != p.dtype:
        common = torch.promote_types(g.dtype, p.dtype)
        g, p = g.to(common), p.to(common)
    p = p.to(g.device)
    if crop is not None:
        if isinstance(crop, str):
            if crop != "fastmri":
                raise UsageError(f"crop must be None, (h, w) or 'fastmri', got {crop!r}")
            size = fastmri_crop_size(tuple(g.shape))
        else:
            size = (int(crop[0]), int(crop[1]))
        g = center_crop(g, size, "target")
        p = center_crop(p, size, "prediction")
    if g.shape != p.shape:
        raise UsageError(f"target and prediction shapes differ: {tuple(g.shape)} vs {tuple(p.shape)}")
    if g.numel() == 0:
        raise UsageError(f"empty images: shape {tuple(g.shape)}")
    return g, p


def _maxval(g: torch.Tensor, maxval: Number | None) -> torch.Tensor:
    if maxval is None:
        return g.max()
    m = torch.as_tensor(maxval, dtype=g.dtype, device=g.device)
    if not bool(torch.all(m > 0)):
        raise UsageError(f"maxval (data range) must be positive, got {maxval}")
    return m


# --------------------------------------------------------------------------------------------- differentiable

def nmse_tensor(gt: Array, pred: Array, *, crop: Crop = None) -> torch.Tensor:
    """``||gt - pred||^2 / ||gt||^2`` over all elements (0-d tensor; inf/nan when ``gt`` is all zero)."""
    g, p = _pair(gt, pred, crop, None)
    return torch.sum((g - p) ** 2) / torch.sum(g ** 2)


def psnr_tensor(gt: Array, pred: Array, maxval: Number | None = None, *, crop: Crop = None) -> torch.Tensor:
    """``10 log10(maxval^2 / mean((gt - pred)^2))`` in dB over all elements; ``maxval`` None = ``gt.max()``.

    A perfect prediction gives ``inf`` (as skimage's ``peak_signal_noise_ratio``).
    """
    g, p = _pair(gt, pred, crop, None)
    m = _maxval(g, maxval)
    return 10.0 * torch.log10(m ** 2 / torch.mean((g - p) ** 2))


#: slices per SSIM evaluation (the 5-channel float64 window statistics of a chunk are held at once)
_SSIM_CHUNK = 4


def _ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor, *, dims: int, win_size: int,
              k1: float, k2: float, sample_covariance: bool) -> torch.Tensor:
    """SSIM map over the window positions that lie inside the images (skimage's cropped map).

    ``x``, ``y``: ``(N, *spatial)`` with ``len(spatial) == dims``; ``data_range`` broadcastable to ``(N,)``.
    Returns ``(N, *spatial - win_size + 1)``.
    """
    n_px = win_size ** dims
    # uniform window means by average pooling (stride 1, no padding): the same numbers as a uniform
    # convolution, without conv's im2col buffer of win_size**dims copies of the image
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # (N, 5, *spatial)
    means = pool(stack, kernel_size=win_size, stride=1)
    ux, uy, uxx, uyy, uxy = means.unbind(dim=1)
    cov_norm = n_px / (n_px - 1.0) if sample_covariance else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    r = data_range.reshape((-1,) + (1,) * dims)
    c1 = (k1 * r) ** 2
    c2 = (k2 * r) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))


def ssim_tensor(
    gt: Array,
    pred: Array,
    maxval: Number | None = None,
    *,
    crop: Crop = None,
    dims: int = 2,
    win_size: int = WIN_SIZE,
    k1: float = K1,
    k2: float = K2,
    sample_covariance: bool = True,
) -> torch.Tensor:
    """Mean SSIM (0-d tensor, differentiable) of magnitude volumes ``(S, H, W)`` (or one ``(H, W)`` image).

    ``dims=2``: SSIM of each slice with a ``win_size``^2 uniform window, averaged over slices (fastMRI);
    ``dims=3``: one SSIM of the volume with a ``win_size``^3 window (skimage on the 3D array).
    ``maxval``: the data range, None = ``gt.max()`` over the whole volume (fastMRI's ``maxval``).
    ``sample_covariance``: variances with ``N / (N - 1)``, as skimage's default and fastMRI.
    """
    if dims not in (2, 3):
        raise UsageError(f"dims must be 2 (per slice) or 3 (volume), got {dims}")
    win_size = int(win_size)
    if win_size < 2:
        raise UsageError(f"win_size must be >= 2, got {win_size}")
    g, p = _pair(gt, pred, crop, None)
    if g.ndim == 2:
        g, p = g[None], p[None]
    if g.ndim != 3:
        raise UsageError(f"SSIM needs images (H, W) or volumes (slices, H, W), got shape {tuple(g.shape)}")
    spatial = g.shape[-dims:]
    if min(spatial) < win_size:
        raise UsageError(f"SSIM window {win_size} is larger than the image size {tuple(spatial)}")
    m = _maxval(g, maxval)
    if dims == 2:  # a few slices at a time: memory stays bounded by the chunk, not the volume
        per_slice = [
            _ssim_map(g[i:i + _SSIM_CHUNK], p[i:i + _SSIM_CHUNK], m, dims=2, win_size=win_size, k1=k1, k2=k2,
                      sample_covariance=sample_covariance).mean(dim=(-2, -1))
            for i in range(0, g.shape[0], _SSIM_CHUNK)
        ]
        return torch.cat(per_slice).mean()
    smap = _ssim_map(g[None], p[None], m, dims=3, win_size=win_size, k1=k1, k2=k2,
                     sample_covariance=sample_covariance)
    return smap.mean()


class SSIMLoss(torch.nn.Module):
    """``1 - SSIM`` as a training loss (fastMRI's window and constants by default).

    ``forward(prediction, target, data_range=None)``: images ``(N, H, W)`` or ``(N, 1, H, W)`` (real or
    complex; complex -> magnitude), ``data_range`` a number or ``(N,)`` tensor (pass the volume maximum, e.g.
    fastMRI's ``max`` attribute, for the metric's definition); None = each target image's own maximum.
    Returns the mean over the batch of ``1 - SSIM`` (0-d tensor).
    """

    def __init__(self, win_size: int = WIN_SIZE, k1: float = K1, k2: float = K2, sample_covariance: bool = True):
        super().__init__()
        if int(win_size) < 2:
            raise UsageError(f"win_size must be >= 2, got {win_size}")
        self.win_size = int(win_size)
        self.k1 = float(k1)
        self.k2 = float(k2)
        self.sample_covariance = bool(sample_covariance)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor,
                data_range: Number | None = None) -> torch.Tensor:
        x = as_magnitude(target)
        y = as_magnitude(prediction).to(x.dtype)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if y.ndim == 4 and y.shape[1] == 1:
            y = y[:, 0]
        if x.ndim == 2:
            x, y = x[None], y[None]
        if x.ndim != 3 or x.shape != y.shape:
            raise UsageError(f"SSIMLoss needs (N, H, W) or (N, 1, H, W) images of one shape, "
                             f"got {tuple(prediction.shape)} and {tuple(target.shape)}")
        if min(x.shape[-2:]) < self.win_size:
            raise UsageError(f"SSIM window {self.win_size} is larger than the image size {tuple(x.shape[-2:])}")
        if data_range is None:
            r = x.detach().amax(dim=(-2, -1))
        else:
            r = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).reshape(-1)
            r = r.expand(x.shape[0]) if r.numel() == 1 else r
        smap = _ssim_map(x, y, r, dims=2, win_size=self.win_size, k1=self.k1, k2=self.k2,
                         sample_covariance=self.sample_covariance)
        return 1.0 - smap.mean(dim=(-2, -1)).mean()


# ----------------------------------------------------------------------------------------------- float API

def nmse(gt: Array, pred: Array, *, crop: Crop = None) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2`` of two magnitude volumes (float64)."""
    return float(nmse_tensor(as_magnitude(gt, torch.float64), as_magnitude(pred, torch.float64), crop=crop))


def psnr(gt: Array, pred: Array, maxval: float | None = None, *, crop: Crop = None) -> float:
    """PSNR in dB over the volume, data range ``maxval`` (None: ``gt.max()``) (float64)."""
    return float(psnr_tensor(as_magnitude(gt, torch.float64), as_magnitude(pred, torch.float64), maxval, crop=crop))


def ssim(gt: Array, pred: Array, maxval: float | None = None, *, crop: Crop = None, dims: int = 2,
         win_size: int = WIN_SIZE, k1: float = K1, k2: float = K2, sample_covariance: bool = True) -> float:
    """fastMRI's SSIM of magnitude volumes ``(S, H, W)``: per slice, averaged (see :func:`ssim_tensor`)."""
    with torch.no_grad():
        return float(ssim_tensor(as_magnitude(gt, torch.float64), as_magnitude(pred, torch.float64), maxval,
                                 crop=crop, dims=dims, win_size=win_size, k1=k1, k2=k2,
                                 sample_covariance=sample_covariance))


def volume_metrics(target: Array, prediction: Array, maxval: float | None = None, *,
                   crop: Crop = None, dims: int = 2) -> dict[str, float]:
    """``{"nmse", "psnr", "ssim"}`` of a target and a prediction volume ``(S, H, W)``, fastMRI's definitions.

    ``crop`` is applied first (``"fastmri"``: what ``recon eval`` / fastMRI's ``evaluate.py`` do); ``maxval``
    None = the maximum of the (cropped) target volume, shared by PSNR and SSIM.
    """
    with torch.no_grad():
        g, p = _pair(target, prediction, crop, torch.float64)
        if g.ndim not in (2, 3):
            raise UsageError(f"volume_metrics needs (slices, H, W) volumes, got shape {tuple(g.shape)}")
        m = float(g.max()) if maxval is None else maxval
        return {
            "nmse": float(nmse_tensor(g, p)),
            "psnr": float(psnr_tensor(g, p, m)),
            "ssim": float(ssim_tensor(g, p, m, dims=dims)),
        }
