"""``recon.reconstruct``: one entry point for notebooks and the CLI, and the per-slice pipeline methods.

``reconstruct(data, method)`` takes a :class:`~recon.io.types.RawData` (or a k-space array ``(S, C, H, W)`` /
``(C, H, W)``), computes ESPIRiT maps per slice from the fully sampled centre when the method needs them, runs
the solver batched over slices (CPU or GPU) and returns a :class:`~recon.solvers.result.ReconResult` whose
``image`` is the ``(S, H, W)`` float32 magnitude on the data's scale (full k-space grid; ``cropped()`` gives
the header's recon size, as ``recon run`` writes it).

Methods: ``zero-filled`` (RSS), ``sense`` (CG-SENSE, optional Tikhonov ``lam``), ``grappa`` (``lam`` = the
calibration's relative Tikhonov weight), ``l1-wavelet`` and ``tv`` (compressed sensing; ``lam`` on the
automatically scaled data, :mod:`recon.solvers.cs`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from recon.errors import DataError, UsageError
from recon.io.types import RawData, validate_kspace
from recon.sampling import SamplingMask
from recon.solvers.autolambda import is_auto, select_lambda
from recon.solvers.checks import check_iterations, check_lambda
from recon.solvers.maps_cache import MapsCache
from recon.solvers.readout import crop_readout_oversampling
from recon.solvers.result import ReconResult
from recon.coils import espirit
from recon.coils.calibration import detect_calibration_size, sampled_pattern
from recon.coils.walsh import walsh_calibration_maps
from recon.solvers.zero_filled import rss_reconstruction
from recon.solvers.grappa import grappa
from recon.solvers.sense import cartesian_problem, normalize_maps
from recon.solvers.cs import default_lambda, solve_method
from recon.io.calibration import calibration_kspace
from recon.solvers.scaling import bart_scale, safe_scale
from recon.operators.device import to_device, to_host

METHODS = ("zero-filled", "sense", "grappa", "l1-wavelet", "tv")

#: CG-SENSE defaults: CG on undersampled noisy data is stopped early (more iterations amplify noise:
#: on the bundled sample at 4x, PSNR 24.0 / 24.6 / 23.7 / 18.6 dB after 5 / 10 / 20 / 40 iterations)
SENSE_ITERATIONS = 10
GRAPPA_KERNEL: tuple[int, int | None] = (5, None)  # 5 readout points; window from the ACS width
GRAPPA_REG = 0.1
#: fewer fully sampled centre lines than this (and at least 3): Walsh maps instead of ESPIRiT (estimate_maps)
WALSH_BELOW = 6
#: Walsh window (pixels) of those maps; 15 beat 7 on both cases measured (17.7 vs 16.8 dB, 22.8 dB)
WALSH_WINDOW = 15


def resolve_device(device: Any) -> torch.device:
    """A torch device from a name (None = CPU); :class:`UsageError` if it is unknown or unavailable."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
        torch.zeros(1, device=dev)
    except (RuntimeError, AssertionError, TypeError) as exc:
        raise UsageError(f"device {device!r} is not available: {exc}") from None
    return dev


def _as_kspace(data: RawData | np.ndarray | torch.Tensor, dev: torch.device) -> tuple[torch.Tensor, RawData | None]:
    """k-space ``(S, C, H, W)`` complex64 on ``dev`` and the :class:`RawData` it came from (None for an array).

    A torch tensor is checked and cast where it is (a CUDA tensor never goes through the host); numpy input is
    checked by :func:`recon.io.types.validate_kspace`. Both raise :class:`DataError` for a non-complex dtype,
    an empty axis or NaN/Inf values."""
    if isinstance(data, RawData):
        return to_device(data.kspace, dev), data
    if not isinstance(data, torch.Tensor):
        arr = np.asarray(data)
        arr = _with_slice_axis(arr, tuple(arr.shape))
        return to_device(validate_kspace(arr), dev), None
    k = _with_slice_axis(data.detach(), tuple(data.shape))
    if not (k.is_complex() or k.is_floating_point()):
        raise DataError(f"k-space must be complex, got dtype {k.dtype}")
    if 0 in k.shape:
        raise DataError(f"k-space has an empty axis: shape {tuple(k.shape)}")
    k = k.to(device=dev, dtype=torch.complex64)
    if not bool(torch.isfinite(k).all()):
        raise DataError(f"k-space contains {int((~torch.isfinite(k)).sum())} NaN/Inf values")
    return k, None


def _with_slice_axis(kspace: Any, shape: tuple[int, ...]) -> Any:
    """``(C, H, W)`` k-space as ``(1, C, H, W)``; a :class:`UsageError` for any rank but 3 or 4."""
    if len(shape) == 3:
        return kspace[None]
    if len(shape) != 4:
        raise UsageError(f"k-space must have shape (slices, coils, H, W) or (coils, H, W), got {shape}")
    return kspace


def _sampling(kspace: torch.Tensor, mask: Any) -> SamplingMask | None:
    """The boolean mask broadcastable to ``(S, 1, H, W)``, numpy or torch as given (a CUDA mask stays there);
    None (the file's mask, else the nonzero samples) = all sampled when every point is nonzero in some coil."""
    if mask is None:  # the sampled points: nonzero in any coil, on the k-space's device
        sampled = (kspace != 0).any(dim=1, keepdim=True)
        return None if bool(sampled.all()) else SamplingMask(sampled)
    return SamplingMask.from_any(mask, tuple(kspace.shape)).for_kspace().as_bool()


def estimate_maps(kspace: torch.Tensor, mask: np.ndarray | None, **espirit_options: Any) -> torch.Tensor:
    """ESPIRiT maps ``(S, C, H, W)`` (one set, BART ``ecalib -m1`` defaults) from each slice's fully sampled centre.

    A small calibration region gets a 4x4 kernel instead of BART's 6x6, with which ESPIRiT (BART's too) fails
    there: fewer than 10 fully sampled lines (on the bundled sample at 8x, 8 lines: L1-wavelet PSNR 2.5 dB with
    6x6 (BART 4.6 dB), 20.5 dB with 4x4), or a 2D calibration box under 12 x 12 (BART's Shepp-Logan, Poisson
    8x, 10 x 10 box: BART pics 25.8 dB with 6x6, 41.8 dB with 4x4). Ten or more full lines keep 6x6: BART's
    8x Shepp-Logan with 10 lines gives 22.68 dB with 6x6 vs 21.90 with 4x4 (``benchmarks/classical.py``).

    Three to five centre lines (e.g. fastMRI's 8x centre fraction 0.04 of 96-128 phase encodes) are too few for
    ESPIRiT with any kernel, recon's and BART's alike (128 x 96 12-coil Colin 27 slice, 4 lines: L1-wavelet 3.0 dB
    with recon's ESPIRiT, BART ``ecalib -k 4/3/2`` + ``pics`` 0.9-7.9 dB, zero-filled 17.1 dB): those get Walsh
    maps of the calibration lines' low-resolution coil images instead (window :data:`WALSH_WINDOW`): 17.7 dB
    there, and on a real nibabel EPI brain on 12 coils 22.8 dB instead of 8.9 (zero-filled 21.2;
    ``benchmarks/shift.py``'s nibabel-epi 8x). Explicit ESPIRiT options keep ESPIRiT.

    Raises :class:`DataError` when there is no fully sampled centre to calibrate from.
    """
    if "kernel_size" not in espirit_options and "calib_size" not in espirit_options:
        ch, cw = detect_calibration_size(sampled_pattern(kspace, mask))
        narrow, wide = min(ch, cw), max(ch, cw)
        if 3 <= narrow < WALSH_BELOW and not espirit_options:  # too few lines for ESPIRiT: Walsh maps
            return walsh_calibration_maps(kspace, (ch, cw), window=WALSH_WINDOW)
        if 4 <= narrow < 12 and (narrow < 10 or wide < 12):  # a few lines, or a small 2D box
            espirit_options["kernel_size"] = 4

    try:
        return espirit(kspace, mask=mask, **espirit_options).maps[:, 0]
    except DataError as exc:
        raise DataError(f"ESPIRiT sensitivity maps need a fully sampled k-space centre: {exc.reason}") from None


def _check_common(lam: float | str | None, iterations: int | None, method: str = "l1-wavelet") -> None:
    if is_auto(lam):
        if method not in ("l1-wavelet", "tv"):
            raise UsageError(f"lambda 'auto' (cross-validated) is for l1-wavelet and tv, not {method}")
        return
    if isinstance(lam, str):
        raise UsageError(f"lambda must be a number >= 0 or 'auto', got {lam!r}")
    check_lambda(lam)
    check_iterations(iterations)


def reconstruct(
    data: RawData | np.ndarray | torch.Tensor,
    method: str = "l1-wavelet",
    *,
    mask: Any = None,
    lam: float | None = None,
    iterations: int | None = None,
    maps: Any = None,
    device: Any = None,
    **opts: Any,
) -> ReconResult:
    """Reconstruct Cartesian multi-coil k-space.

    Parameters
    ----------
    data: :class:`RawData` (its ``mask`` is used) or k-space ``(S, C, H, W)`` / ``(C, H, W)`` (numpy/torch).
    method: ``zero-filled``, ``sense``, ``grappa``, ``l1-wavelet`` (default) or ``tv``.
    mask: sampling mask (``(W,)``, ``(H, W)``, ``(S, H, W)``); None = ``data.mask``, else the nonzero samples.
    lam: regularisation (``sense``: Tikhonov, default 0; ``grappa``: calibration Tikhonov, default 0.1;
        ``l1-wavelet``/``tv``: on scaled data, default 0.005; ``l1-wavelet`` with a 2D mask 0.0025,
        :func:`recon.solvers.cs.default_lambda`). Must be >= 0.
    iterations: solver iterations (``sense`` 10, ``l1-wavelet`` 40 FISTA, ``tv`` 30 ADMM by default).
    maps: coil maps ``(S, C, H, W)`` or ``(C, H, W)``; None = ESPIRiT per slice. They are normalised to
        ``sum_c |S_c|^2 = 1`` where nonzero, so that images are RSS-comparable.
    device: torch device (``cpu``, ``cuda``...).
    opts: ``solver`` (fista/admm/pdhg), ``wavelet``, ``levels``, ``seed``, ``scale``, ``random_shift``,
        solver step options (:mod:`recon.solvers.cs`); ``tol`` (sense); ``kernel_size`` (grappa);
        ``calib_size`` and other ESPIRiT options under ``espirit={...}``; with ``lam="auto"``: ``lambda_grid``
        (candidate weights, each evaluated, instead of the anchored search on the default's ladder) and
        ``holdout_seed`` (the seed of the held-out samples, default 0), see :mod:`recon.solvers.autolambda`.

    Returns
    -------
    :class:`ReconResult` (``image`` ``(S, H, W)`` float32 magnitude, ``complex_image``, ``maps``, ``solver``).
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    _check_common(lam, iterations, method)
    dev = resolve_device(device)
    kspace, raw = _as_kspace(data, dev)
    sampling = _sampling(kspace, raw.mask if mask is None and raw is not None else mask)
    recon_size = raw.header.recon_size if raw is not None else None
    params: dict[str, Any] = {"method": method}
    solver_result = None
    complex_image = used_maps = scale = None

    if method == "zero-filled":
        image = _zero_filled(kspace, sampling, lam, iterations, dev)
    elif method == "grappa":
        solver_result = _grappa(kspace, sampling, raw, lam, iterations, opts)
        image = solver_result.image
        params.update(solver_result.parameters)
    else:
        used_maps = _coil_maps(kspace, sampling, raw, maps, dev, opts)
        solver_result, scale = _iterative(kspace, sampling, used_maps, method, lam, iterations, dev, opts, params)
        complex_image = solver_result.image
        image = complex_image.abs()
        params.update(solver_result.parameters)
        params.pop("scale", None)
    image_np, complex_np, maps_np = to_host(image.detach().to(torch.float32), complex_image, used_maps)
    return ReconResult(
        image=image_np, method=method, complex_image=complex_np, maps=maps_np,
        scale=scale, seconds=time.perf_counter() - start, parameters=params, solver=solver_result,
        recon_size=recon_size,
    )


def _zero_filled(kspace: torch.Tensor, sampling: SamplingMask | None, lam: Any, iterations: Any,
                 dev: torch.device) -> torch.Tensor:
    """``zero-filled``: the RSS image of the (masked) k-space."""
    if lam is not None or iterations is not None:
        raise UsageError("zero-filled takes no lambda or iterations")

    return rss_reconstruction(kspace, None if sampling is None else sampling.to(dev))


def _grappa(kspace: torch.Tensor, sampling: SamplingMask | None, raw: RawData | None, lam: Any, iterations: Any,
            opts: dict[str, Any]):
    """``grappa``: the :class:`SolverResult` of :func:`recon.solvers.grappa.grappa` (``lam``: calibration Tikhonov)."""
    if iterations is not None:
        raise UsageError("grappa takes no iterations")

    if sampling is None:
        lines = SamplingMask(np.ones(kspace.shape[-1], dtype=bool))
    elif raw is not None and raw.header.attrs.get("asymmetric_echo"):  # (H, W) mask: its lines
        lines = SamplingMask(sampling.numpy().reshape(-1, kspace.shape[-1]).any(axis=0))
    else:
        lines = sampling  # GRAPPA reduces it to its (W,) lines (recon.solvers.grappa.column_mask)
    fill = raw.header.acquired_pe if raw is not None else None
    cal = raw.calibration if raw is not None and opts.pop("use_calibration", True) else None
    result = grappa(kspace, lines, kernel_size=opts.pop("kernel_size", GRAPPA_KERNEL),
                    reg=GRAPPA_REG if lam is None else float(lam), fill_range=fill,
                    calibration=cal, calibration_mask=None if cal is None else raw.calibration_mask)
    if opts:
        raise UsageError(f"grappa does not take option(s): {', '.join(sorted(opts))}")
    return result


def _coil_maps(kspace: torch.Tensor, sampling: SamplingMask | None, raw: RawData | None, maps: Any,
               dev: torch.device, opts: dict[str, Any]) -> torch.Tensor:
    """The coil maps ``(S, C, H, W)``: given ones normalised, else ESPIRiT (on the file's reference lines when
    it has them); takes the ESPIRiT options (``espirit``, ``calib_size``) out of ``opts``."""
    espirit_options = dict(opts.pop("espirit", None) or {})
    if "calib_size" in opts:
        espirit_options["calib_size"] = opts.pop("calib_size")
    if maps is None and raw is not None and raw.calibration is not None:
        return _maps_from_reference_lines(raw, dev, **espirit_options)
    if maps is None:
        return estimate_maps(kspace, None if sampling is None else sampling.array, **espirit_options)
    used_maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
    used_maps = used_maps.to(device=dev, dtype=torch.complex64)
    if used_maps.ndim == 3:
        used_maps = used_maps.unsqueeze(0).expand(kspace.shape[0], -1, -1, -1)
    if tuple(used_maps.shape[-3:]) != tuple(kspace.shape[-3:]) or used_maps.ndim != 4:
        raise UsageError(f"maps of shape {tuple(used_maps.shape)} do not fit k-space {tuple(kspace.shape)}")
    return normalize_maps(used_maps)


def _iterative(kspace: torch.Tensor, sampling: SamplingMask | None, used_maps: torch.Tensor, method: str,
               lam: Any, iterations: int | None, dev: torch.device, opts: dict[str, Any],
               params: dict[str, Any]):
    """``sense``, ``l1-wavelet``, ``tv``: the SENSE data term (``A = M F S``) solved by
    :func:`recon.solvers.cs.solve_method` (the code the non-Cartesian methods share, with the NUFFT's ``A``).
    Returns the :class:`SolverResult` and the data scale (None for sense); ``lam="auto"`` records its
    choice in ``params``."""
    m = None if sampling is None else sampling.real_weight(dev)
    problem, _ = cartesian_problem(kspace, used_maps, m)
    if method == "sense":
        result, _ = solve_method(problem, "sense", lam=lam, iterations=iterations,
                                 sense_iterations=SENSE_ITERATIONS, **opts)
        result.parameters["solver"] = "cg-sense"
        return result, None
    if lam is None:
        lam = default_lambda(method, sampling)  # l1-wavelet: lower for 2D masks
    opts = dict(opts)  # the caller's options stay as they were (the auto options are taken out of this copy)
    auto = {"grid": opts.pop("lambda_grid", None), "holdout_seed": opts.pop("holdout_seed", 0)}
    if is_auto(lam):  # k-space cross-validation, solving with the final solve's options
        lam, params["lambda_auto"] = select_lambda(kspace, used_maps, sampling, method, iterations=iterations,
                                                   **auto, **opts)
    elif auto["grid"] is not None:
        raise UsageError("lambda_grid is the candidate list of lam='auto'; it needs lam='auto'")
    return solve_method(problem, method, lam=lam, iterations=iterations, **opts)


# --- pipeline methods: one slice (1, C, H, W) in, (1, H, W) float32 magnitude out ----------------------

def _maps_from_reference_lines(raw: RawData, dev: Any, **espirit_options: Any) -> torch.Tensor | None:
    """ESPIRiT maps calibrated on the image lines plus the file's reference lines
    (:func:`recon.io.calibration.calibration_kspace`); None when ``raw`` has no reference lines."""
    if raw.calibration is None:
        return None

    k_cal, m_cal = calibration_kspace(raw)
    return estimate_maps(to_device(k_cal, dev),
                         None if m_cal is None else SamplingMask(m_cal).for_kspace().array, **espirit_options)


def _without_readout_oversampling(raw: RawData, device: Any) -> tuple[RawData, dict[str, Any]]:
    """``raw`` with the readout oversampling removed (:func:`recon.solvers.readout.crop_readout_oversampling`),
    and the options that keep the solution that of the full field of view: the ESPIRiT ``maps`` of the full
    readout cropped to it, and (compressed sensing) the data ``scale`` of the full field of view. ``(raw, {})``
    when nothing is cropped.

    The iterative solvers then run on half the pixels of 2x-oversampled data. With a column mask the problem
    decouples over image rows (CG's step sizes aside, which are global), so with the same maps CG-SENSE gives
    the same PSNR. ESPIRiT on the cropped
    calibration data gives other maps, and BART's scaling rule (percentiles of ``|A^H y|``) sees a fuller field
    of view: on a simulated 640 x 368 15-coil file at 4x, maps and scale of the cropped data cost 0.18 dB
    (CG-SENSE) and 0.1 dB / 0.03 SSIM (L1-wavelet); with these two the result is that of the full grid.
    """
    cropped = crop_readout_oversampling(raw)
    if cropped is raw:
        return raw, {}

    dev = resolve_device(device)
    kspace = to_device(raw.kspace, dev)
    mask = SamplingMask.of_raw(raw)
    maps = _maps_from_reference_lines(raw, dev)  # the file's reference lines when it has them
    maps = estimate_maps(kspace, mask.array) if maps is None else maps
    problem, _ = cartesian_problem(kspace, maps, mask.real_weight(dev))
    top = (raw.kspace.shape[-2] - cropped.kspace.shape[-2]) // 2  # recon.arrays.center_crop_or_pad's convention
    maps = maps[..., top:top + cropped.kspace.shape[-2], :]
    return cropped, {"maps": maps, "scale": safe_scale(bart_scale(problem.aty))}


def _with_lambda_record(result: ReconResult) -> np.ndarray | dict[str, np.ndarray]:
    """The pipeline output of a CS reconstruction: the image, plus with ``lam="auto"`` the per-slice record of
    the choice (datasets ``lambda_auto`` ``(1,)``, ``lambda_grid`` and ``lambda_validation_error`` ``(1, G)``)."""
    record = result.parameters.get("lambda_auto")
    if record is None:
        return result.image
    return {"reconstruction": result.image,
            "lambda_auto": np.array([record["lambda"]], dtype=np.float32),
            "lambda_grid": np.array([record["grid"]], dtype=np.float32),
            "lambda_validation_error": np.array([[np.nan if v is None else v for v in record["validation_error"]]],
                                                dtype=np.float32)}  # NaN: a weight the search did not try


def _prepared(raw: RawData, device: str | None, maps_cache: MapsCache | None
              ) -> tuple[RawData, dict[str, Any], str | None]:
    """The slice(s) to solve (readout oversampling removed), the options that keep the full field of view's
    solution (``maps``, ``scale``; :func:`_without_readout_oversampling`) taken from ``maps_cache`` when it
    has them, and the cache key to store new maps under (None: no cache or already stored)."""
    if maps_cache is None:
        return (*_without_readout_oversampling(raw, device), None)
    key = maps_cache.key(raw.kspace, raw.mask, device)
    hit = maps_cache.get(key)
    if hit is None:
        return (*_without_readout_oversampling(raw, device), key)
    return crop_readout_oversampling(raw), dict(hit), None


def _solve_method(raw: RawData, method: str, maps_cache: MapsCache | None, device: str | None,
                  **options: Any) -> ReconResult:
    """``reconstruct`` of a pipeline method on ``raw``, sharing ESPIRiT maps through ``maps_cache`` (CG-SENSE
    takes the full field of view's maps only; compressed sensing also its data scale)."""
    raw, full_fov, key = _prepared(raw, device, maps_cache)
    given = {k: v for k, v in full_fov.items() if method != "sense" or k == "maps"}
    result = reconstruct(raw, method, device=device, **given, **options)
    if key is not None:
        maps_cache.put(key, full_fov if full_fov else {"maps": result.maps})
    return result


def sense_method(raw: RawData, *, lam: float | None = None, iterations: int | None = None,
                 device: str | None = None, maps_cache: MapsCache | None = None) -> np.ndarray:
    """``recon run --method sense``: CG-SENSE with ESPIRiT maps (readout oversampling removed first;
    ``maps_cache``: maps shared with other methods on the same data, :mod:`recon.solvers.maps_cache`)."""
    return _solve_method(raw, "sense", maps_cache, device, lam=lam, iterations=iterations).image


def grappa_method(raw: RawData, *, lam: float | None = None, device: str | None = None) -> np.ndarray:
    """``recon run --method grappa``: GRAPPA (``--lambda`` = calibration Tikhonov weight)."""
    return reconstruct(raw, "grappa", lam=lam, device=device).image


def l1_wavelet_method(raw: RawData, *, lam: float | str | None = None, iterations: int | None = None,
                      solver: str | None = None, device: str | None = None,
                      maps_cache: MapsCache | None = None) -> np.ndarray:
    """``recon run --method l1-wavelet``: L1-wavelet CS with ESPIRiT maps (FISTA by default; readout
    oversampling removed first; ``maps_cache`` as :func:`sense_method`)."""
    opts = {} if solver is None else {"solver": solver}
    return _with_lambda_record(_solve_method(raw, "l1-wavelet", maps_cache, device, lam=lam,
                                             iterations=iterations, **opts))


def tv_method(raw: RawData, *, lam: float | str | None = None, iterations: int | None = None,
              solver: str | None = None, device: str | None = None,
              maps_cache: MapsCache | None = None) -> np.ndarray:
    """``recon run --method tv``: TV CS with ESPIRiT maps (ADMM by default; readout oversampling removed
    first; ``maps_cache`` as :func:`sense_method`)."""
    opts = {} if solver is None else {"solver": solver}
    return _with_lambda_record(_solve_method(raw, "tv", maps_cache, device, lam=lam, iterations=iterations,
                                             **opts))


def _stacks_unless_auto(options: dict[str, Any]) -> bool:
    """Stacked slices are solved as independent problems (per-slice scale, step, restart and stopping), so the
    pipeline may batch them (:func:`recon.app.pipeline.slice_batch_size`); ``--lambda auto`` chooses per call, so
    it keeps one slice per call."""
    return not is_auto(options.get("lam"))


sense_method.slice_batch = _stacks_unless_auto  # type: ignore[attr-defined]
l1_wavelet_method.slice_batch = _stacks_unless_auto  # type: ignore[attr-defined]
tv_method.slice_batch = _stacks_unless_auto  # type: ignore[attr-defined]
