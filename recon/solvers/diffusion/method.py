"""``recon run --method diffusion``: posterior sampling with the diffusion prior, one slice at a time.

Per slice ``(1, C, H, W)``:

1. ESPIRiT maps from the fully sampled centre (:func:`recon.solvers.reconstruct.estimate_maps`), the SENSE
   model ``A = M F S`` with the slice's mask (fully sampled input: every acquired line).
2. Normalisation: ``s = normalize_scale(|x_init|)`` with ``x_init`` = :data:`INIT_ITERATIONS` CG-SENSE
   iterations (closer to the true image's scale than the zero-filled adjoint, which loses the energy of the
   missing lines, and what the prior was trained on: images divided by the 99th percentile of their
   magnitude). The sampler runs on ``x / s`` and ``y / s``; every output is multiplied back by ``s`` (data
   units, RSS-comparable magnitudes like every other method).
3. ``samples`` posterior samples in one batch (:mod:`recon.solvers.diffusion.samplers`, ``sampler`` ``dds``
   or ``dps``, ``seed``), each chain started from the normalised CG-SENSE image plus noise of level
   ``start_sigma`` (default 2.0; None = pure noise at the prior's ``sigma_max``), summarised by
   :mod:`recon.solvers.diffusion.uncertainty`.

Returns (all float32, leading slice axis of 1; the pipeline crops the image-shaped ones):
``reconstruction`` = |posterior mean|, ``uncertainty`` = std of the sample magnitudes, ``hallucination`` =
the local RMS null-space content relative to the object's mean intensity, ``hallucination_fraction`` ``(1,)`` = flagged fraction of object pixels,
``null_spread`` = the samples' RMS null-space deviation (the predicted hallucination magnitude),
``noise_level`` ``(1,)`` = the image-domain noise std used, and with
``save_samples`` ``samples`` ``(1, K, H, W)`` = the sample magnitudes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import UsageError
from recon.io.types import RawData
from recon.sampling import SamplingMask
from recon.solvers.diffusion.defaults import DEFAULT_START_SIGMA, DEFAULT_STEPS
from recon.solvers.learned.method import get_model
from recon.solvers.reconstruct import estimate_maps, resolve_device
from recon.solvers.diffusion.samplers import sample, SAMPLERS, SenseData
from recon.solvers.cg import conjugate_gradient
from recon.solvers.diffusion.prior import normalize_scale
from recon.operators.device import to_device

#: CG-SENSE iterations of the image that sets the normalisation
INIT_ITERATIONS = 5


def get_prior(weights: str | Path | None = None, device: str | None = "cpu") -> torch.nn.Module:
    """The denoiser prior (``weights``, default the bundled one) on ``device``, in eval mode: the learned
    methods' model cache (:func:`recon.solvers.learned.method.get_model`, per file and device)."""
    return get_model("diffusion", weights, str(resolve_device(device)))


def slice_model(kspace: torch.Tensor, mask: np.ndarray, maps: torch.Tensor | None = None):
    """The :class:`~recon.solvers.diffusion.samplers.SenseData` of one slice: k-space ``(C, H, W)``, mask
    ``(W,)`` or ``(H, W)``, maps ``(C, H, W)`` (None = ESPIRiT from the calibration region)."""
    m = SamplingMask(np.asarray(mask, dtype=bool))
    if maps is None:
        maps = estimate_maps(kspace[None], m.for_kspace().array)[0]
    m = m.real_weight(kspace.device)
    return SenseData.build(kspace, maps.to(kspace.device), m)


def initial_image(data: Any, iterations: int = INIT_ITERATIONS) -> tuple[torch.Tensor, float]:
    """``x_init`` ``(H, W)`` = ``iterations`` CG-SENSE iterations on ``data``, and ``s = normalize_scale(|x_init|)``."""
    x = conjugate_gradient(data.normal, data.aty[None], max_iter=int(iterations)).image[0]
    return x, normalize_scale(x.abs())


def posterior_sample(
    data: Any,
    denoiser: Any,
    *,
    samples: int = 4,
    sampler: str = "dds",
    steps: int | None = None,
    seed: int = 0,
    start_sigma: float | None = DEFAULT_START_SIGMA,
    **sampler_options: Any,
) -> tuple[torch.Tensor, float]:
    """``samples`` posterior samples ``(K, H, W)`` complex64 in DATA units, and the normalisation ``s``.

    ``start_sigma``: start from the normalised CG-SENSE image plus noise of this level (default
    :data:`DEFAULT_START_SIGMA`) instead of pure noise at the prior's ``sigma_max`` (``None``); fewer steps
    suffice (see :func:`~recon.solvers.diffusion.samplers.dds_sample`).
    """
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
    x_init, scale = initial_image(data)
    n_steps = DEFAULT_STEPS[sampler] if steps is None else int(steps)
    if start_sigma is not None:
        sampler_options = {**sampler_options, "init": x_init / scale, "sigma_max": float(start_sigma)}
    x = sample(sampler, denoiser, data.scaled(scale), samples=int(samples), steps=n_steps, seed=int(seed),
               **sampler_options)
    return x * scale, scale


def diffusion_method(
    raw: RawData,
    *,
    samples: int = 4,
    steps: int | None = None,
    sampler: str = "dds",
    seed: int = 0,
    weights: str | None = None,
    device: str | None = None,
    save_samples: bool = False,
    hard_dc: bool = False,
    start_sigma: float | None = DEFAULT_START_SIGMA,
    calibration: str | None = None,
) -> dict[str, np.ndarray]:
    """Diffusion posterior sampling on one slice ``(1, C, H, W)``; see the module docstring for the outputs.

    ``samples`` K >= 1 (drawn as one batch), ``steps`` (default 12 for DDS, 50 for DPS), ``sampler``
    ``dds``/``dps``, ``seed`` (reproducible samples), ``weights`` (default: the bundled prior), ``device``,
    ``save_samples`` (also return the sample magnitudes), ``hard_dc`` (finish exactly data-consistent),
    ``start_sigma`` (start from the CG-SENSE image plus noise of this level; None = from pure noise),
    ``calibration`` (a ``recon calibrate`` file: also ``lower``/``upper`` and ``uncertainty`` = the calibrated
    half-width, the raw std then as ``sample_std``; refused for other weights/options/acceleration,
    :mod:`recon.solvers.uncertainty.calibration`).
    """
    # deferred: loads scipy, which importing recon.solvers.diffusion.method does not
    from recon.solvers.diffusion.uncertainty import noise_level, summarise

    if int(samples) < 1:
        raise UsageError(f"samples must be >= 1, got {samples}")
    if steps is not None and int(steps) < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")

    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
    dev = resolve_device(device)
    mask = SamplingMask.first_slice(raw).array
    cal = None
    if calibration is not None:
        # deferred: loads recon.solvers.uncertainty, which importing recon.solvers.diffusion.method does not
        from recon.solvers.uncertainty import calibration as calib

        cal = calib.load_calibration(calibration)
        calib.check_calibration(cal, calibration, method="diffusion", weights=weights,
                                options=calib.resolved_options("diffusion", {"samples": samples, "steps": steps,
                                                                           "sampler": sampler,
                                                                           "start_sigma": start_sigma}),
                                acceleration=calib.measured_acceleration(mask))
    prior = get_prior(weights, str(dev))
    kspace = to_device(raw.kspace[0], dev)
    data = slice_model(kspace, mask)
    x, _ = posterior_sample(data, prior, samples=samples, sampler=sampler, steps=steps, seed=seed,
                            start_sigma=None if start_sigma is None else float(start_sigma), hard_dc=bool(hard_dc))
    noise = noise_level(raw.kspace[0], mask)
    summary = summarise(x, data, noise=noise)
    out = {
        "reconstruction": summary.mean[None],
        "uncertainty": summary.std[None],
        "hallucination": summary.hallucination[None],
        "hallucination_fraction": np.asarray([summary.hallucination_fraction], dtype=np.float32),
    }
    out["null_spread"] = summary.null_spread[None]
    out["noise_level"] = np.asarray([noise], dtype=np.float32)
    if cal is not None:
        out["sample_std"] = out["uncertainty"]
        out.update({k: v.astype(np.float32) for k, v in calib.calibrated_outputs(
            out["reconstruction"], out["sample_std"], noise, float(cal["scale"])).items()})
        out["interval_alpha"] = np.asarray([cal["alpha"]], dtype=np.float32)
    if save_samples:
        out["samples"] = x.abs().cpu().numpy().astype(np.float32)[None]
    return out
