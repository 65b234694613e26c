"""``recon run --method varnet|modl``: the learned solvers as pipeline methods (one slice in, magnitude out).

Weights: ``weights=PATH`` (a ``recon train`` checkpoint or exported weights), else the bundled ones
(:mod:`recon.weights`: ``varnet_sim.pt``, ``modl_sim.pt``), loaded from the installed package, no network.
Loaded models are cached per (file, device), so a multi-slice file loads them once.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import UsageError
from recon.io.types import RawData
from recon.solvers.learned import adapt as adapt_defaults
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


def learned_reconstruction(raw: RawData, name: str, weights: str | Path | None, device: str,
                           adapt: dict[str, Any] | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """``(S, C, H, W)`` k-space of ``raw`` -> ``(S, h, W)`` float32 magnitude on the data's scale.

    ``h`` is the header's recon height when the readout is oversampled and the mask is a column mask (the
    readout oversampling is removed first, :func:`remove_readout_oversampling`), else ``H``.

    ``adapt``: scan-specific self-supervised adaptation (:mod:`recon.solvers.learned.adapt`) with options
    ``{"steps", "lr", "per": "slice"|"volume", "seed"}``; the result is then a dict: ``reconstruction`` plus
    per-slice records ``adapt_chosen_step`` ``(S,)`` int and ``adapt_validation`` ``(S, steps + 1)`` float32.
    """
    model = get_model(name, weights, device)
    dev = next(model.parameters()).device
    kspace, masks = remove_readout_oversampling(raw.kspace, slice_masks(raw), raw.header.recon_size[0])
    cal_k = cal_m = None
    if raw.calibration is not None and raw.calibration_mask is not None and np.ndim(raw.mask) <= 1:
        # the sensitivity network sees the image lines plus the file's reference lines (data_specs/twix.md)
        from recon.io.calibration import calibration_kspace

        k_cal, m_cal = calibration_kspace(raw)
        cal_k, _ = remove_readout_oversampling(k_cal, np.asarray(m_cal, dtype=bool)[None, None],
                                               raw.header.recon_size[0])
        cal_m = torch.from_numpy(np.asarray(m_cal, dtype=bool)[None, None]).to(dev)
    out, chosen, curves = [], [], []
    for s in range(kspace.shape[0]):
        k = torch.from_numpy(np.ascontiguousarray(kspace[s:s + 1])).to(dev)
        m = torch.from_numpy(np.ascontiguousarray(masks[s if masks.shape[0] > 1 else 0])).to(dev)
        cal = None if cal_k is None else (torch.from_numpy(np.ascontiguousarray(cal_k[s:s + 1])).to(dev), cal_m)
        if adapt is None:
            with torch.no_grad():
                out.append(model(k, m, calibration=cal).float().cpu().numpy())
            continue
        tuned, record = _adapted_model(model, k, m, raw, name, weights, device, adapt)
        with torch.no_grad():
            out.append(tuned(k, m, calibration=cal).float().cpu().numpy())
        chosen.append(record["chosen_step"])
        curves.append(record["validation_curve"])
    image = np.concatenate(out, axis=0).astype(np.float32)
    if adapt is None:
        return image
    return {"reconstruction": image, "adapt_chosen_step": np.asarray(chosen, dtype=np.int64),
            "adapt_validation": np.asarray(curves, dtype=np.float32)}


#: per-volume adaptation: (input file, its mtime, model, weights, device, options, k-space shape, mask) ->
#: (adapted model, record) of the first slice seen, reused for the file's later slices (a few files kept)
_VOLUME_CACHE: OrderedDict[tuple, tuple[torch.nn.Module, dict[str, Any]]] = OrderedDict()
_VOLUME_CACHE_SIZE = 2


def _adapted_model(model: torch.nn.Module, k: torch.Tensor, m: torch.Tensor, raw: RawData, name: str,
                   weights: str | Path | None, device: str, adapt: dict[str, Any]
                   ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A copy of ``model`` adapted to slice ``k`` (per slice), or, per volume, the copy adapted to the first
    slice of ``raw.path`` reconstructed with the same options and mask (adapted on that slice, cached)."""
    from recon.solvers.learned.adapt import adapt_model

    opts = {"steps": int(adapt.get("steps", DEFAULT_ADAPT_STEPS)), "lr": float(adapt.get("lr", DEFAULT_ADAPT_LR)),
            "seed": int(adapt.get("seed", 0))}
    per = adapt.get("per", "slice")
    if per not in ("slice", "volume"):
        raise UsageError(f"adapt_per must be 'slice' or 'volume', got {per!r}")
    key = None
    if per == "volume" and raw.path is not None:
        path = Path(raw.path)
        mtime = path.stat().st_mtime if path.is_file() else 0.0
        mask_bytes = m.cpu().numpy().astype(bool).tobytes()
        key = (str(path.resolve()), mtime, name, str(weights), device, tuple(sorted(opts.items())),
               tuple(k.shape), hash(mask_bytes))
        if key in _VOLUME_CACHE:
            _VOLUME_CACHE.move_to_end(key)
            return _VOLUME_CACHE[key]
    adapted = adapt_model(model, k, m.cpu().numpy(), **opts)
    result = (adapted.model, adapted.record)
    if key is not None:
        _VOLUME_CACHE[key] = result
        while len(_VOLUME_CACHE) > _VOLUME_CACHE_SIZE:
            _VOLUME_CACHE.popitem(last=False)
    return result


#: defaults of the ``adapt_*`` options (``recon run --adapt-steps/--adapt-lr``)
DEFAULT_ADAPT_STEPS = adapt_defaults.DEFAULT_STEPS
DEFAULT_ADAPT_LR = adapt_defaults.DEFAULT_LR


def _adapt_options(adapt: bool, adapt_steps: int | None, adapt_per: str | None, adapt_lr: float | None
                   ) -> dict[str, Any] | None:
    if not adapt:
        if adapt_steps is not None or adapt_per is not None or adapt_lr is not None:
            raise UsageError("adapt_steps/adapt_per/adapt_lr need adapt=True (--adapt)")
        return None
    return {"steps": DEFAULT_ADAPT_STEPS if adapt_steps is None else int(adapt_steps),
            "per": adapt_per or "slice", "lr": DEFAULT_ADAPT_LR if adapt_lr is None else float(adapt_lr)}


def varnet_method(raw: RawData, *, weights: str | None = None, device: str = "cpu", adapt: bool = False,
                  adapt_steps: int | None = None, adapt_per: str | None = None, adapt_lr: float | None = None
                  ) -> np.ndarray | dict[str, np.ndarray]:
    """E2E-VarNet on one slice ``(1, C, H, W)`` -> ``(1, H, W)`` float32 (``weights``: default bundled).

    ``adapt=True``: scan-specific self-supervised fine-tuning first (:mod:`recon.solvers.learned.adapt`;
    ``adapt_steps`` default 20, ``adapt_lr`` default 1e-3, ``adapt_per`` ``"slice"`` (default) or ``"volume"``:
    one model adapted on the first slice of a file reconstructed, shared by its other slices); returns a dict
    with the records (:func:`learned_reconstruction`).

    A fastMRI checkpoint (plain state dict, Lightning .ckpt, or a recon ``fastmri-varnet`` file) runs fastMRI's
    architecture instead (:mod:`recon.solvers.learned.fastmri_method`), cropped to the header's recon size."""
    if weights is not None:
        from recon.solvers.learned.checkpoints import is_fastmri_file

        if is_fastmri_file(weights):
            if adapt:
                raise UsageError("--adapt is not available for fastMRI-architecture checkpoints yet")
            from recon.solvers.learned.fastmri_method import fastmri_varnet_reconstruction

            return fastmri_varnet_reconstruction(raw, weights, device)
    return learned_reconstruction(raw, "varnet", weights, device,
                                  _adapt_options(adapt, adapt_steps, adapt_per, adapt_lr))


def modl_method(raw: RawData, *, weights: str | None = None, device: str = "cpu", adapt: bool = False,
                adapt_steps: int | None = None, adapt_per: str | None = None, adapt_lr: float | None = None
                ) -> np.ndarray | dict[str, np.ndarray]:
    """MoDL on one slice ``(1, C, H, W)`` -> ``(1, H, W)`` float32 (``weights``: default bundled; ``adapt*``:
    as :func:`varnet_method`)."""
    return learned_reconstruction(raw, "modl", weights, device,
                                  _adapt_options(adapt, adapt_steps, adapt_per, adapt_lr))
