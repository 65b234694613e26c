"""Run fastMRI-architecture checkpoints on any input recon reads: ``recon run|batch IN OUT --method varnet
--weights FILE`` (FILE a fastMRI VarNet state dict / Lightning .ckpt / recon ``fastmri-varnet`` file) and
``--method unet --weights FILE`` (fastMRI's image-domain U-Net).

Inputs follow fastMRI's data transforms (``fastmri.data.transforms`` 0.3.0):

* :func:`varnet_inputs` = ``VarNetDataTransform`` without a mask function: the (already masked) k-space as it
  is, on its full grid (readout oversampling kept: the network was trained with it), the file's mask with the
  lines outside the header's ``acquired_pe`` (fastMRI's ``padding_left``/``padding_right``) cleared, and
  ``num_low_frequencies = 0`` (the sensitivity module measures the centre from the mask). 2D masks are passed
  whole (the data consistency uses every sampled point; the centre count comes from the mask's first row,
  as in fastMRI's module).
* :func:`unet_inputs` = ``UnetDataTransform``: zero-filled coil images cropped to the header's recon size
  (or H x H when the image is narrower, fastMRI's FLAIR-203 rule), magnitude, RSS over coils (multi-coil),
  instance normalisation ``(x - mean) / (std + 1e-11)`` clamped to [-6, 6].

Outputs: the VarNet's RSS image, or the U-Net's output times ``std`` plus ``mean``, centre-cropped to the
recon size (same rule), ``(1, h, w)`` float32 on the data's scale, in recon's (readout, phase-encode)
orientation, which is fastMRI's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon.arrays import center_crop_or_pad
from recon.errors import UsageError
from recon.io.types import RawData
from recon.sampling import SamplingMask
from recon.operators.fft import ifft2c
from recon.solvers.learned.fastmri_unet import unet_input
from recon.solvers.learned.checkpoints import load_fastmri


def crop_size(raw: RawData, height: int, width: int) -> tuple[int, int]:
    """The header's recon size, or ``(width, width)`` when the image is narrower (fastMRI's FLAIR-203 check)."""
    h, w = (int(v) for v in raw.header.recon_size)
    return (width, width) if width < w else (h, w)


def clipped_center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """fastMRI's ``center_crop`` of the last two axes (offsets ``(n - size) // 2``); sizes larger than the
    array are a :class:`UsageError` there too, so they are clipped to the array here (never padded)."""
    h, w = x.shape[-2:]
    return center_crop_or_pad(x, (min(size[0], h), min(size[1], w)))


def varnet_inputs(raw: RawData) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(masked k-space (S, C, H, W) complex64, mask (S|1, 1, H|1, W) bool, num_low_frequencies=0)``."""
    masks = SamplingMask.per_slice(raw).acquired(raw.header, raw.kspace.shape[-1]).array
    k = torch.from_numpy(np.ascontiguousarray(raw.kspace, dtype=np.complex64))
    m = torch.from_numpy(np.ascontiguousarray(masks))
    return k * m, m[:, None], 0


def unet_inputs(raw: RawData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(normalised clamped image (S, h, w) float32, mean (S,), std (S,))`` as fastMRI's UnetDataTransform."""
    k, m, _ = varnet_inputs(raw)
    image = ifft2c(k)
    image = clipped_center_crop(image, crop_size(raw, image.shape[-2], image.shape[-1]))
    mag = image.abs()
    mag = mag.square().sum(dim=1).sqrt() if mag.shape[1] > 1 else mag[:, 0]
    outs = [unet_input(mag[s]) for s in range(mag.shape[0])]
    return (torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs]),
            torch.stack([o[2] for o in outs]))


def _model(weights: str | Path | None, device: str, kind: str) -> torch.nn.Module:
    if weights is None:
        raise UsageError(f"--method {kind} with a fastMRI model needs --weights FILE (no weights are bundled)")
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"device {device!r} is not available: {exc}") from None
    return load_fastmri(weights, str(dev), expect=kind)


def fastmri_varnet_reconstruction(raw: RawData, weights: str | Path, device: str = "cpu") -> np.ndarray:
    """fastMRI VarNet output for every slice of ``raw``: ``(S, h, w)`` float32, cropped to the recon size."""
    model = _model(weights, device, "varnet")
    dev = next(model.parameters()).device
    k, m, nlf = varnet_inputs(raw)
    out = []
    with torch.no_grad():
        for s in range(k.shape[0]):
            ms = m[s if m.shape[0] > 1 else 0][None].to(dev)
            image = model(k[s:s + 1].to(dev), ms, nlf)
            out.append(clipped_center_crop(image, crop_size(raw, image.shape[-2], image.shape[-1])).float().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def unet_method(raw: RawData, *, weights: str | None = None, device: str = "cpu") -> np.ndarray:
    """fastMRI U-Net on the zero-filled RSS (or single-coil) image: ``(S, h, w)`` float32 on the data's scale."""
    model = _model(weights, device, "unet")
    dev = next(model.parameters()).device
    images, mean, std = unet_inputs(raw)
    with torch.no_grad():
        out = model(images[:, None].to(dev))[:, 0].cpu()
    return (out * std[:, None, None] + mean[:, None, None]).numpy().astype(np.float32)
