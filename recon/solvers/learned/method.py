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
from recon.sampling import SamplingMask
from recon.solvers.learned import adapt as adapt_defaults
from recon.solvers.learned.masks import slice_mask, slice_masks  # noqa: F401 (public names of this module)
from recon.solvers.readout import remove_readout_oversampling
from recon.solvers.learned.registry import load_model
from recon.weights import bundled_weights
from recon.io.calibration import calibration_kspace
from recon.solvers.learned.checkpoints import is_fastmri_file
from recon.solvers.learned.fastmri_method import fastmri_varnet_reconstruction
from recon.operators.device import to_device

#: fraction of the acquired samples outside the calibration region that each ensemble member leaves out
DEFAULT_ENSEMBLE_FRACTION = adapt_defaults.VALIDATION_FRACTION


@lru_cache(maxsize=8)
def _cached_model(path: str, mtime: float, device: str, expect: str) -> torch.nn.Module:
    return load_model(path, device, expect=expect)


def get_model(name: str, weights: str | Path | None = None, device: str = "cpu") -> torch.nn.Module:
    """The model ``name`` (``varnet``/``modl``/``diffusion``) with ``weights`` (default: the bundled ones), in eval
    mode, cached per (file, modification time, device)."""
    path = Path(weights) if weights is not None else bundled_weights(name)
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"device {device!r} is not available: {exc}") from None
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    return _cached_model(str(path), mtime, str(dev), name)


def ensemble_masks(mask: np.ndarray, members: int, fraction: float = DEFAULT_ENSEMBLE_FRACTION,
                   seed: int = 0) -> list[np.ndarray]:
    """The ``members`` k-space split masks of one slice mask (``(W,)``, ``(1, W)`` or ``(H, W)`` bool), each of
    ``mask``'s shape: member ``j`` = the acquired samples minus ``n = round(fraction * N)`` of the ``N`` acquired
    samples outside the calibration region (lines for a column mask, points for a 2D one:
    :func:`~recon.solvers.learned.adapt.sample_grid`, :func:`~recon.solvers.learned.adapt.calibration_region`;
    at least 1, at most ``N - 1``). The ``N`` samples are shuffled once (``numpy.random.default_rng(seed)``) and
    member ``j`` leaves out the ``n`` after position ``j n`` (cyclically): each member's left-out set is a uniform
    random subset, and the members' sets are disjoint while ``members * n <= N`` (so no two members coincide
    by chance, as independent draws of few lines would). The calibration region is always kept."""
    m = np.asarray(mask, dtype=bool)
    grid = adapt_defaults.sample_grid(m)
    outside = grid & ~(adapt_defaults.calibration_region(grid) & grid)
    idx = np.flatnonzero(outside)
    if idx.size < 3:
        raise UsageError("--ensemble needs acquired samples outside the calibration region (the mask is fully "
                         f"sampled or has only {idx.size} such samples)")
    n = min(max(round(float(fraction) * idx.size), 1), idx.size - 1)
    order = np.random.default_rng(int(seed)).permutation(idx)
    out = []
    for j in range(int(members)):
        keep = grid.reshape(-1).copy()
        keep[order[(j * n + np.arange(n)) % idx.size]] = False
        keep = keep.reshape(grid.shape)
        out.append(np.broadcast_to(keep if m.ndim == 2 else keep[0], m.shape).copy())
    return out


def learned_reconstruction(raw: RawData, name: str, weights: str | Path | None, device: str,
                           adapt: dict[str, Any] | None = None, ensemble: dict[str, Any] | None = None,
                           calibration: str | Path | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """``(S, C, H, W)`` k-space of ``raw`` -> ``(S, h, W)`` float32 magnitude on the data's scale.

    ``h`` is the header's recon height when the readout is oversampled and the mask is a column mask (the
    readout oversampling is removed first, :func:`remove_readout_oversampling`), else ``H``.

    ``adapt``: scan-specific self-supervised adaptation (:mod:`recon.solvers.learned.adapt`) with options
    ``{"steps", "lr", "per": "slice"|"volume", "seed"}``; the result is then a dict: ``reconstruction`` plus
    per-slice records ``adapt_chosen_step`` ``(S,)`` int and ``adapt_validation`` ``(S, steps + 1)`` float32.

    ``ensemble``: a k-space split ensemble ``{"members": K >= 2, "fraction", "seed"}`` (issue 14): the
    network (adapted, with ``adapt``) also reconstructs each of the K masks of :func:`ensemble_masks` (K more
    forward passes); ``reconstruction`` stays the output from all samples (bit-identical to a run without the
    ensemble), ``uncertainty`` = the std (ddof 1) of the K members' magnitudes and ``noise_level`` ``(S,)`` the
    image-domain noise std (:func:`recon.solvers.diffusion.uncertainty.noise_level`), as the diffusion method
    writes them. ``calibration`` (a ``recon calibrate`` file for this method, weights, ensemble and
    acceleration; needs ``ensemble``): also ``lower``/``upper`` and ``uncertainty`` = the calibrated half-width,
    the raw std then as ``sample_std`` (:mod:`recon.solvers.uncertainty.calibration`).
    """
    # deferred: loads recon.solvers.uncertainty, which importing recon.solvers.learned.method does not
    from recon.solvers.uncertainty import calibration as calib
    # deferred: loads recon.solvers.diffusion, scipy, which importing recon.solvers.learned.method does not
    from recon.solvers.diffusion.uncertainty import noise_level

    cal = _checked_calibration(calibration, name, weights, adapt, ensemble)
    model = get_model(name, weights, device)
    dev = next(model.parameters()).device
    kspace, masks = remove_readout_oversampling(raw.kspace, SamplingMask.per_slice(raw).array, raw.header.recon_size[0])
    cal_k, cal_m = _reference_lines(raw, dev)
    out, chosen, curves, stds, noises = [], [], [], [], []
    for s in range(kspace.shape[0]):
        m_np = np.ascontiguousarray(masks[s if masks.shape[0] > 1 else 0])
        k = to_device(kspace[s:s + 1], dev)
        m = to_device(m_np, dev)
        ref_lines = None if cal_k is None else (to_device(cal_k[s:s + 1], dev), cal_m)
        if cal is not None:
            calib.check_calibration(cal, calibration, method=name, weights=weights,
                                    acceleration=calib.measured_acceleration(m_np))
        net = model
        if adapt is not None:
            net, record = _adapted_model(model, k, m, raw, name, weights, device, adapt)
            chosen.append(record["chosen_step"])
            curves.append(record["validation_curve"])
        with torch.no_grad():
            out.append(net(k, m, calibration=ref_lines).float().cpu().numpy())
            if ensemble is not None:
                stds.append(_ensemble_std(net, k, m_np, ensemble, ref_lines, dev))
                noises.append(noise_level(kspace[s], m_np))
    image = np.concatenate(out, axis=0).astype(np.float32)
    if adapt is None and ensemble is None:
        return image
    return _result_records(image, adapt, ensemble, cal, chosen, curves, stds, noises)


def _checked_calibration(calibration: str | Path | None, name: str, weights: str | Path | None,
                         adapt: dict[str, Any] | None, ensemble: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``recon calibrate`` file's contents, checked against this method, weights and options; None without one."""
    # deferred: loads recon.solvers.uncertainty, which importing recon.solvers.learned.method does not
    from recon.solvers.uncertainty import calibration as calib

    cal = None
    if calibration is not None:
        if ensemble is None:
            raise UsageError(f"--calibration for {name} needs --ensemble K (the spread comes from the ensemble)",
                             calibration)
        cal = calib.load_calibration(calibration)
        calib.check_calibration(cal, calibration, method=name, weights=weights, options=calib.resolved_options(
            name, {"ensemble": ensemble["members"], "ensemble_fraction": ensemble.get("fraction"),
                   **({} if adapt is None else {"adapt": True, "adapt_steps": adapt.get("steps"),
                                                "adapt_per": adapt.get("per"), "adapt_lr": adapt.get("lr")})}))
    return cal


def _reference_lines(raw: RawData, dev: torch.device) -> tuple[np.ndarray | None, torch.Tensor | None]:
    """The file's parallel-imaging reference lines for the sensitivity network, or (None, None).

    Returns ``(k-space (S, C, h, W) complex64 with the readout oversampling removed, line mask (1, 1, W) bool
    on dev)``; only for column-masked data with ``raw.calibration`` (data_specs/twix.md).
    """
    cal_k = cal_m = None
    if raw.calibration is not None and raw.calibration_mask is not None and np.ndim(raw.mask) <= 1:
        # the sensitivity network sees the image lines plus the file's reference lines (data_specs/twix.md)

        k_cal, m_cal = calibration_kspace(raw)
        cal_k, _ = remove_readout_oversampling(k_cal, np.asarray(m_cal, dtype=bool)[None, None],
                                               raw.header.recon_size[0])
        cal_m = torch.from_numpy(np.asarray(m_cal, dtype=bool)[None, None]).to(dev)
    return cal_k, cal_m


def _ensemble_std(net: torch.nn.Module, k: torch.Tensor, m_np: np.ndarray, ensemble: dict[str, Any],
                  ref_lines: Any, dev: torch.device) -> np.ndarray:
    """``(h, W)`` float32 std (ddof 1) of the network's magnitudes over the K split masks of ``m_np``.

    ``k``: ``(1, C, h, W)`` k-space of one slice on ``dev``; call under ``torch.no_grad()``.
    """
    members = []
    for em in ensemble_masks(m_np, ensemble["members"], ensemble.get("fraction",
                             DEFAULT_ENSEMBLE_FRACTION), ensemble.get("seed", 0)):
        mt = torch.from_numpy(em).to(dev)
        members.append(net(k * mt.to(k.dtype), mt, calibration=ref_lines).float().cpu().numpy()[0])
    return np.std(np.stack(members), axis=0, ddof=1).astype(np.float32)


def stack_records(records: list, run_ndim: int, fill: float, dtype: Any) -> np.ndarray:
    """Per-slice adaptation records (``run_ndim``: 0 for a chosen step, 1 for a validation curve; a slice
    adapted with several runs has one more leading axis) as one array ``(S, ...)``: as they are when every slice
    has the same shape; else (slices adapted with other step counts or numbers of runs, e.g. masks on both
    sides of :data:`~recon.solvers.learned.adapt.HIGH_ACCELERATION`) each slice as ``(runs, ...)`` (one run:
    ``runs = 1``), padded with ``fill`` to the largest."""
    arrays = [np.asarray(r, dtype=dtype) for r in records]
    if len({a.shape for a in arrays}) <= 1:
        return np.asarray(arrays, dtype=dtype)
    arrays = [a[None] if a.ndim == run_ndim else a for a in arrays]
    shape = tuple(max(a.shape[d] for a in arrays) for d in range(run_ndim + 1))
    out = np.full((len(arrays),) + shape, fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[(i,) + tuple(slice(0, n) for n in a.shape)] = a
    return out


def _result_records(image: np.ndarray, adapt: dict[str, Any] | None, ensemble: dict[str, Any] | None,
                    cal: dict[str, Any] | None, chosen: list, curves: list, stds: list,
                    noises: list) -> dict[str, np.ndarray]:
    """The dict result: ``reconstruction`` ``(S, h, W)`` plus the adaptation records and the ensemble's
    ``uncertainty`` ``(S, h, W)`` / ``noise_level`` ``(S,)`` (calibrated: ``lower``/``upper``/``sample_std``)."""
    # deferred: loads recon.solvers.uncertainty, which importing recon.solvers.learned.method does not
    from recon.solvers.uncertainty import calibration as calib

    result: dict[str, np.ndarray] = {"reconstruction": image}
    if adapt is not None:
        result.update({"adapt_chosen_step": stack_records(chosen, 0, -1, np.int64),
                       "adapt_validation": stack_records(curves, 1, np.nan, np.float32)})
    if ensemble is not None:
        result["uncertainty"] = np.stack(stds).astype(np.float32)
        result["noise_level"] = np.asarray(noises, dtype=np.float32)
        if cal is not None:
            result["sample_std"] = result["uncertainty"]
            parts = [calib.calibrated_outputs(image[i], result["sample_std"][i], float(result["noise_level"][i]),
                                              float(cal["scale"])) for i in range(image.shape[0])]
            for key in ("lower", "upper", "uncertainty"):
                result[key] = np.stack([p[key] for p in parts]).astype(np.float32)
            result["interval_alpha"] = np.full(image.shape[0], cal["alpha"], dtype=np.float32)
    return result


#: per-volume adaptation: (input file, its mtime, model, weights, device, options, k-space shape, mask) ->
#: (adapted model, record) of the first slice seen, reused for the file's later slices (a few files kept)
_VOLUME_CACHE: OrderedDict[tuple, tuple[torch.nn.Module, dict[str, Any]]] = OrderedDict()
_VOLUME_CACHE_SIZE = 2


def _adapted_model(model: torch.nn.Module, k: torch.Tensor, m: torch.Tensor, raw: RawData, name: str,
                   weights: str | Path | None, device: str, adapt: dict[str, Any]
                   ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A copy of ``model`` adapted to slice ``k`` (per slice), or, per volume, the copy adapted to the first
    slice of ``raw.path`` reconstructed with the same options and mask (adapted on that slice, cached)."""
    mask = m.cpu().numpy()
    # the defaults depend on the slice's acceleration (adapt.default_steps/default_runs/default_lr)
    acceleration = adapt_defaults.mask_acceleration(mask)
    steps = adapt.get("steps")
    if steps is None:
        steps = adapt_defaults.default_steps(name, acceleration)
    runs = adapt.get("runs")
    if runs is None:  # several averaged runs at high acceleration
        runs = adapt_defaults.default_runs(name, acceleration)
    lr = adapt.get("lr")
    if lr is None:
        lr = adapt_defaults.default_lr(name, acceleration)
    opts = {"steps": int(steps),
            "lr": float(lr),
            "seed": int(adapt.get("seed", 0)), "runs": int(runs)}
    per = adapt.get("per", "slice")
    if per not in ("slice", "volume"):
        raise UsageError(f"adapt_per must be 'slice' or 'volume', got {per!r}")
    key = None
    if per == "volume" and raw.path is not None:
        path = Path(raw.path)
        mtime = path.stat().st_mtime if path.is_file() else 0.0
        mask_bytes = mask.astype(bool).tobytes()
        key = (str(path.resolve()), mtime, name, str(weights), device, tuple(sorted(opts.items())),
               tuple(k.shape), hash(mask_bytes))
        if key in _VOLUME_CACHE:
            _VOLUME_CACHE.move_to_end(key)
            return _VOLUME_CACHE[key]
    adapted = adapt_defaults.adapt_model(model, k, mask, **opts)
    result = (adapted.model, adapted.record)
    if key is not None:
        _VOLUME_CACHE[key] = result
        while len(_VOLUME_CACHE) > _VOLUME_CACHE_SIZE:
            _VOLUME_CACHE.popitem(last=False)
    return result




def _adapt_options(model: str, adapt: bool, adapt_steps: int | None, adapt_per: str | None,
                   adapt_lr: float | None) -> dict[str, Any] | None:
    if not adapt:
        if adapt_steps is not None or adapt_per is not None or adapt_lr is not None:
            raise UsageError("adapt_steps/adapt_per/adapt_lr need adapt=True (--adapt)")
        return None
    return {"steps": None if adapt_steps is None else int(adapt_steps),
            "per": adapt_per or "slice", "lr": None if adapt_lr is None else float(adapt_lr)}


def _ensemble_options(ensemble: int | None, ensemble_fraction: float | None,
                      ensemble_seed: int) -> dict[str, Any] | None:
    if ensemble is None or int(ensemble) == 0:
        if ensemble_fraction is not None:
            raise UsageError("ensemble_fraction needs ensemble=K (--ensemble)")
        return None
    if int(ensemble) < 2:
        raise UsageError(f"--ensemble needs K >= 2 members (their spread is the uncertainty), got {ensemble}")
    fraction = DEFAULT_ENSEMBLE_FRACTION if ensemble_fraction is None else float(ensemble_fraction)
    if not 0 < fraction < 1:
        raise UsageError(f"ensemble_fraction must lie in (0, 1), got {fraction}")
    return {"members": int(ensemble), "fraction": fraction, "seed": int(ensemble_seed)}


def varnet_method(raw: RawData, *, weights: str | None = None, device: str = "cpu", adapt: bool = False,
                  adapt_steps: int | None = None, adapt_per: str | None = None, adapt_lr: float | None = None,
                  ensemble: int | None = None, ensemble_fraction: float | None = None, ensemble_seed: int = 0,
                  calibration: str | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """E2E-VarNet on one slice ``(1, C, H, W)`` -> ``(1, H, W)`` float32 (``weights``: default bundled).

    ``adapt=True``: scan-specific self-supervised fine-tuning first (:mod:`recon.solvers.learned.adapt`;
    ``adapt_steps`` default 40 (MoDL: 20; :func:`~recon.solvers.learned.adapt.default_steps`), ``adapt_lr``
    default 1e-3; for masks accelerated 6x or more VarNet runs 2 adaptations of 70 steps at lr 2e-3 (split seeds
    0 and 1) and averages their outputs (:func:`~recon.solvers.learned.adapt.default_runs`, ``default_lr``; an
    explicit ``adapt_steps``/``adapt_lr`` sets those of each run), ``adapt_per`` ``"slice"`` (default) or ``"volume"``:
    one model adapted on the first slice of a file reconstructed, shared by its other slices); returns a dict
    with the records (:func:`learned_reconstruction`).

    ``ensemble=K`` (K >= 2): also a k-space split ensemble's ``uncertainty`` and ``noise_level``
    (``ensemble_fraction`` of the lines outside the calibration region left out per member, default 0.2;
    ``ensemble_seed``), and with ``calibration`` a ``recon calibrate`` file's intervals ``lower``/``upper``
    (:func:`learned_reconstruction`).

    A fastMRI checkpoint (plain state dict, Lightning .ckpt, or a recon ``fastmri-varnet`` file) runs fastMRI's
    architecture instead (:mod:`recon.solvers.learned.fastmri_method`), cropped to the header's recon size."""
    if weights is not None:
        if is_fastmri_file(weights):
            if adapt or ensemble or calibration is not None:
                raise UsageError("--adapt/--ensemble/--calibration are not available for fastMRI-architecture "
                                 "checkpoints yet")

            return fastmri_varnet_reconstruction(raw, weights, device)
    return learned_reconstruction(raw, "varnet", weights, device,
                                  _adapt_options("varnet", adapt, adapt_steps, adapt_per, adapt_lr),
                                  _ensemble_options(ensemble, ensemble_fraction, ensemble_seed), calibration)


def modl_method(raw: RawData, *, weights: str | None = None, device: str = "cpu", adapt: bool = False,
                adapt_steps: int | None = None, adapt_per: str | None = None, adapt_lr: float | None = None,
                ensemble: int | None = None, ensemble_fraction: float | None = None, ensemble_seed: int = 0,
                calibration: str | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """MoDL on one slice ``(1, C, H, W)`` -> ``(1, H, W)`` float32 (``weights``: default bundled; ``adapt*``,
    ``ensemble*``, ``calibration``: as :func:`varnet_method`)."""
    return learned_reconstruction(raw, "modl", weights, device,
                                  _adapt_options("modl", adapt, adapt_steps, adapt_per, adapt_lr),
                                  _ensemble_options(ensemble, ensemble_fraction, ensemble_seed), calibration)
