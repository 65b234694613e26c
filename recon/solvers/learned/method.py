"""``recon run --method varnet|modl``: the learned solvers as pipeline methods (one slice in, magnitude out).

Weights: ``weights=PATH`` (a ``recon train`` checkpoint or exported weights), else the bundled ones
(:mod:`recon.weights`: ``varnet_sim.pt``, ``modl_sim.pt``), loaded from the installed package, no network.
Loaded models are cached per (file, device), so a multi-slice file loads them once.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from recon.errors import UsageError
from recon.io.types import RawData
from recon.solvers.learned.masks import slice_mask, slice_masks  # noqa: F401 (public names of this module)
from recon.solvers.readout import remove_readout_oversampling


@lru_cache(maxsize=8)
def _cached_model(path: str, mtime: float, device: str, expect: str) -> torch.nn.Module:
    from recon.solvers.learned.registry import load_model

    return load_model(path, device, expect=expect)


def get_model(name: str, weights: str | Path | None = None, device: str = "cpu") -> torch.nn.Module:
    """The model ``name`` (``varnet``/``modl``/``diffusion``) with ``weights`` (default: the bundled ones), in eval
    mode, cached per (file, modification time, device)."""
    from recon.weights import bundled_weights

    path = Path(weights) if weights is not None else bundled_weights(name)
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"device {device!r} is not available: {exc}") from None
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    return _cached_model(str(path), mtime, str(dev), name)


def learned_reconstruction(raw: RawData, name: str, weights: str | Path | None, device: str) -> np.ndarray:
    """``(S, C, H, W)`` k-space of ``raw`` -> ``(S, h, W)`` float32 magnitude on the data's scale.

    ``h`` is the header's recon height when the readout is oversampled and the mask is a column mask (the
    readout oversampling is removed first, :func:`remove_readout_oversampling`), else ``H``.
    """
    model = get_model(name, weights, device)
    dev = next(model.parameters()).device
    kspace, masks = remove_readout_oversampling(raw.kspace, slice_masks(raw), raw.header.recon_size[0])
    out = []
    with torch.no_grad():
        for s in range(kspace.shape[0]):
            k = torch.from_numpy(np.ascontiguousarray(kspace[s:s + 1])).to(dev)
            m = torch.from_numpy(np.ascontiguousarray(masks[s if masks.shape[0] > 1 else 0])).to(dev)
            out.append(model(k, m).float().cpu().numpy())
    return np.concatenate(out, axis=0).astype(np.float32)


def varnet_method(raw: RawData, *, weights: str | None = None, device: str = "cpu") -> np.ndarray:
    """E2E-VarNet on one slice ``(1, C, H, W)`` -> ``(1, H, W)`` float32 (``weights``: default bundled).

    A fastMRI checkpoint (plain state dict, Lightning .ckpt, or a recon ``fastmri-varnet`` file) runs fastMRI's
    architecture instead (:mod:`recon.solvers.learned.fastmri_method`), cropped to the header's recon size."""
    if weights is not None:
        from recon.solvers.learned.checkpoints import is_fastmri_file

        if is_fastmri_file(weights):
            from recon.solvers.learned.fastmri_method import fastmri_varnet_reconstruction

            return fastmri_varnet_reconstruction(raw, weights, device)
    return learned_reconstruction(raw, "varnet", weights, device)


def modl_method(raw: RawData, *, weights: str | None = None, device: str = "cpu") -> np.ndarray:
    """MoDL on one slice ``(1, C, H, W)`` -> ``(1, H, W)`` float32 (``weights``: default bundled)."""
    return learned_reconstruction(raw, "modl", weights, device)
