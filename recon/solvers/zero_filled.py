"""Zero-filled reconstruction: inverse FFT of the (masked) k-space, combined by root sum of squares.

With a fully sampled input this is exactly fastMRI's ``reconstruction_rss``; with an undersampled one it
is the aliased baseline every other solver is compared against. Runs in torch (CPU or GPU) with the
project's one FFT, :func:`recon.operators.fft.ifft2c`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from recon.arrays import center_crop_or_pad, rss
from recon.errors import UsageError
from recon.operators.fft import ifft2c
from recon.sampling import SamplingMask

if TYPE_CHECKING:
    from recon.io.types import RawData

Array = Union[np.ndarray, torch.Tensor]


def _as_complex_tensor(kspace: Array) -> torch.Tensor:
    t = torch.as_tensor(kspace)
    if not t.is_complex():
        t = t.to(torch.float32)
    return t.to(torch.complex64) if t.dtype != torch.complex128 else t


def _apply_mask(kspace: torch.Tensor, mask: Array | None) -> torch.Tensor:
    if mask is None:
        return kspace
    m = SamplingMask(mask)
    m = (m.for_kspace() if kspace.ndim == 4 else m).to(kspace.device, torch.bool)  # (S, H, W): add the coil axis
    try:
        return kspace * m
    except RuntimeError as exc:
        raise UsageError(f"mask of shape {tuple(m.shape)} does not fit k-space {tuple(kspace.shape)}") from exc


def zero_filled(kspace: Array, mask: Array | None = None) -> torch.Tensor:
    """Complex coil images of the zero-filled k-space.

    Parameters
    ----------
    kspace: ``(..., C, H, W)`` complex k-space (numpy or torch); unsampled points may hold anything.
    mask: boolean, broadcastable to k-space (``(W,)`` column mask, ``(H, W)``, or ``(S, H, W)`` per slice);
        samples where it is False are set to zero first. None = use k-space as given.

    Returns
    -------
    ``(..., C, H, W)`` complex64 torch tensor (on the k-space's device): ``ifft2c(mask * kspace)``.
    """
    k = _as_complex_tensor(kspace)
    if k.ndim < 2:
        raise UsageError(f"k-space must have at least 2 axes (H, W), got shape {tuple(k.shape)}")
    return ifft2c(_apply_mask(k, mask))


def rss_reconstruction(
    kspace: Array, mask: Array | None = None, crop: tuple[int, int] | None = None
) -> Array:
    """Zero-filled root-sum-of-squares magnitude images, as fastMRI's ``reconstruction_rss``.

    Parameters
    ----------
    kspace: ``(S, C, H, W)`` complex k-space, numpy or torch.
    mask: see :func:`zero_filled`.
    crop: ``(h, w)`` centre crop of the result (the header's recon size); None = the full (H, W) grid.

    Returns
    -------
    ``(S, h, w)`` float32 on the data's scale; a numpy array for numpy input, else a torch tensor.
    """
    if np.ndim(kspace) != 4:
        raise UsageError(f"k-space must have shape (slices, coils, H, W), got {tuple(np.shape(kspace))}")
    images = zero_filled(kspace, mask)
    out = rss(images, axis=1).to(torch.float32)
    if crop is not None:
        out = center_crop_or_pad(out, crop)
    if isinstance(kspace, torch.Tensor):
        return out
    return out.cpu().numpy()


def zero_filled_method(raw: "RawData", *, device: str = "cpu") -> np.ndarray:
    """The pipeline method ``zero-filled``: RSS on the full grid, one slice ``(1, C, H, W)`` -> ``(1, H, W)``
    float32 (``raw``: a :class:`~recon.io.types.RawData`)."""
    try:
        dev = torch.device(device)
        kspace = torch.as_tensor(raw.kspace).to(dev)
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"device {device!r} is not available: {exc}") from None
    mask = SamplingMask.of_raw(raw).array if raw.mask is not None else None
    return rss_reconstruction(kspace, mask).cpu().numpy()
