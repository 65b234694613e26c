"""One raw file in, one reconstruction out: ``reconstruct_file`` (what ``recon run`` and ``recon demo`` call).

Steps: check the output path (nothing is computed when it exists or its folder is missing) -> open the input
lazily (:func:`recon.io.open_raw`) -> reconstruct slice by slice, or a few slices per call for methods that
solve stacked slices independently (memory bounded by :data:`SLICE_BATCH_BYTES`; :func:`slice_batch_size`) -> centre-crop
to the header's recon size -> write ``.h5`` (fastMRI submission layout) or an image by extension.

Methods come from the one registry :data:`recon.solvers.methods.METHODS` (re-exported here as :data:`METHODS`,
with :func:`register_method`): a name mapped to a :class:`~recon.solvers.methods.Method` whose callable
``method(raw, **options)`` takes a
:class:`~recon.io.types.RawData` of one slice (``(1, C, H, W)``) and returns the ``(1, H, W)`` float32
magnitude on the full k-space grid, or a dict with that array under ``"reconstruction"`` plus extra per-slice
arrays (``uncertainty``, ...) with the same leading slice axis of length 1, stored as datasets of the same
name (concatenated over slices; those whose last two axes are the grid's are centre-cropped like the image).
Options are checked once, by the method's options class, before any work (a :class:`UsageError`); what the
pipeline must know of a method (partial Fourier, shared maps, summary entries) are attributes of the
:class:`~recon.solvers.methods.Method`, so there are no method-specific branches here.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import OutputError, UsageError
from recon.io.atomic import check_output_path
from recon.arrays import center_crop_or_pad
from recon.io.types import RawData, stack_slices
from recon.solvers.maps_cache import MapsCache
from recon.solvers.methods import METHODS, Method, register_method  # noqa: F401 - the registry, re-exported
from recon.solvers.methods import get_method as method_spec

MethodFn = Callable[..., "np.ndarray | dict[str, np.ndarray]"]
ProgressFn = Callable[[int, int], None]

#: output extensions that are not images
RECONSTRUCTION_EXTENSIONS = (".h5", ".hdf5")


#: options of :func:`reconstruct_file` itself that arrive with the method options (``recon batch`` passes one
#: options dict): they are not handed to the method
PIPELINE_OPTIONS = ("partial_fourier", "epi_correction")


def get_method(name: str, options: dict[str, Any]) -> MethodFn:
    """The method callable, after checking ``options`` once against its options class (else
    :class:`UsageError`; :meth:`recon.solvers.methods.Method.parse_options`)."""
    spec = method_spec(name)
    spec.parse_options(options, PIPELINE_OPTIONS)
    return spec.function()


def output_kind(path: str | Path) -> str:
    """``reconstruction`` for ``.h5``/``.hdf5``, else the image format (:func:`recon.io.images.image_format`)."""
    if Path(path).suffix.lower() in RECONSTRUCTION_EXTENSIONS and not Path(path).name.lower().endswith(".mrd.h5"):
        return "reconstruction"
    from recon.io.images import image_format

    try:
        return image_format(path)
    except OutputError:
        raise OutputError(
            f"unknown output extension '{''.join(Path(path).suffixes) or '(none)'}' "
            "(use .h5 for a reconstruction, or .png, .nii, .nii.gz, .dcm, .mrd.h5 for images)", path
        ) from None


def _torch_threads() -> int:
    """torch's intra-op thread count, recorded with every output (results depend on it: recon.app.runtime)."""
    import torch

    return int(torch.get_num_threads())


def _split_result(result: Any, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if isinstance(result, dict):
        extras = {k: np.asarray(v) for k, v in result.items() if k != "reconstruction"}
        result = result.get("reconstruction")
        if result is None:
            raise TypeError(f"method {name!r} returned a dict without 'reconstruction'")
    else:
        extras = {}
    rec = np.asarray(result)
    if rec.ndim == 2:
        rec = rec[None]
    return rec, extras


@dataclass
class Undersampling:
    """Retrospective undersampling of a fully sampled input with a fastMRI (or 2D) mask.

    ``seed=None`` seeds from the input's file name, as fastMRI's data transforms do, so every slice of a
    volume gets the same mask and a rerun gives the same mask.
    """

    mask_type: str = "random"
    accelerations: tuple[float, ...] = (4,)
    center_fractions: tuple[float, ...] = (0.08,)
    seed: int | str | None = None

    def mask_for(self, input_path: str | Path, shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any]]:
        """The mask (``(W,)`` column or ``(H, W)``) and its parameters for one file of k-space ``shape``."""
        from recon.sampling import mask_from_options

        seed = Path(input_path).name if self.seed is None else self.seed
        return mask_from_options(self.mask_type, shape[-2:], list(self.accelerations),
                                 list(self.center_fractions), seed)


#: memory for one batched solve of several slices (bytes; :func:`slice_batch_size`)
SLICE_BATCH_BYTES = 1 << 30
#: working memory of a batched iterative solve per byte of a slice's k-space (maps, conjugated maps, the
#: data, FFT buffers and the solver's iterates; measured peak of FISTA on 16 x 8 x 256^2: about 8x)
SOLVE_WORKSPACE = 10


def slice_batch_size(func: MethodFn, options: dict[str, Any], shape: tuple[int, ...]) -> int:
    """How many slices of a file of ``shape`` ``(S, C, H, W)`` go into one call of ``func``.

    1 unless the method says it solves stacked slices independently (a ``slice_batch(options) -> bool``
    attribute, e.g. :func:`recon.solvers.reconstruct.l1_wavelet_method`); then as many as fit
    :data:`SLICE_BATCH_BYTES`. It depends on the shape only, never on the machine's free memory, so the same
    command gives the same output.
    """
    accepts = func.slice_batch if isinstance(func, Method) else getattr(func, "slice_batch", None)
    if accepts is None or not accepts(options):
        return 1
    per_slice = int(np.prod(shape[1:])) * 8 * SOLVE_WORKSPACE
    return int(max(1, min(shape[0], SLICE_BATCH_BYTES // max(per_slice, 1))))


def _solve(func: MethodFn, method: str, raws: list[RawData], options: dict[str, Any]
           ) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(rec (1, H, W), extras)`` per slice of ``raws``: one call of ``func`` on the stacked slices when they
    stack (:func:`recon.io.types.stack_slices`), else one call per slice."""
    stacked = stack_slices(raws) if len(raws) > 1 else None
    if stacked is None:
        return [_split_result(func(raw, **options), method) for raw in raws]
    rec, more = _split_result(func(stacked, **options), method)
    if rec.shape[0] != len(raws):
        raise TypeError(f"method {method!r} returned {rec.shape[0]} slices for {len(raws)}")
    return [(rec[j:j + 1], {k: v[j:j + 1] for k, v in more.items()}) for j in range(len(raws))]


def _undersample(raw: RawData, mask: np.ndarray) -> RawData:
    """Apply ``mask`` to one slice's k-space (honouring the header's phase-encode padding)."""
    from recon.sampling import apply_mask

    kspace, used = apply_mask(raw.kspace, mask, raw.header)
    return RawData(kspace, raw.header, used, raw.reference, raw.reference_name, raw.path,
                   raw.calibration, raw.calibration_mask)


def _prewhitening(header: Any, input_path: str | Path, enabled: bool) -> tuple[Any, dict[str, Any]]:
    """The file's :class:`recon.coils.noise.Prewhitening` (or None) and what to record about it."""
    if not header.has_noise:
        return None, {"prewhitened": False, "reason": "no noise scans in the input"}
    if not enabled:
        return None, {"prewhitened": False, "reason": "--no-prewhiten"}
    from recon.coils.noise import prewhitening_for

    pw = prewhitening_for(header, input_path)
    return pw, pw.record()


def reconstruct_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    method: str = "zero-filled",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    undersampling: Undersampling | None = None,
    epi_correction: bool = True,
    partial_fourier: str = "pocs",
    prewhiten: bool = True,
    maps_cache: MapsCache | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Reconstruct one raw file and write the result; return a JSON-serialisable summary.

    Parameters
    ----------
    input_path: any raw file :func:`recon.io.open_raw` reads.
    output_path: ``.h5`` (``reconstruction`` dataset, float32 ``(S, h, w)``, attributes ``method``,
        ``parameters`` (JSON), ``recon_version``, ``input_file``, ``format``, ``acquisition``) or an image
        (``.png``, ``.nii``, ``.nii.gz``, ``.dcm``; see :mod:`recon.io.images`).
    method: a key of :data:`METHODS` (:mod:`recon.solvers.methods`).
    overwrite: replace an existing output.
    progress: called as ``progress(done, total)`` after each slice.
    undersampling: undersample a fully sampled input retrospectively; the mask is written to the ``.h5``
        output as the ``mask`` dataset and its parameters as ``mask_*`` attributes (an already undersampled
        input is a :class:`UsageError`).
    epi_correction: EPI ramp regridding + Nyquist-ghost correction of twix inputs (``--no-epi-correction``).
    partial_fourier: ``pocs`` (default), ``homodyne`` or ``zero``: how the direct methods (``zero-filled``,
        ``grappa``, ``sense``: ``Method.completes_partial_fourier``) complete
        a partial-Fourier input (declared by the header and seen in the data; :mod:`recon.solvers.partial_fourier`).
        A non-default mode is recorded in ``parameters``; what was done (mode, sampled extents) in the
        ``partial_fourier`` summary entry and ``.h5`` attribute, when the input is partial Fourier.
    prewhiten: when the input has noise scans (or a noise covariance), whiten every slice's k-space first,
        with the noise/data bandwidth ratio (:func:`recon.coils.noise.prewhitening_for`); ``False`` is
        ``--no-prewhiten`` (recorded as ``parameters["prewhiten"] = False``). Whether it ran is recorded
        either way: ``.h5`` attributes ``prewhitened`` (0/1) and ``noise_bandwidth_ratio`` (when it ran), and
        the summary's ``"prewhitening"`` entry.
    maps_cache: a :class:`~recon.solvers.maps_cache.MapsCache` shared by several calls on the same input:
        methods that estimate ESPIRiT maps (``Method.shares_maps``) reuse maps computed on the same slices
        and mask (``recon demo``); not recorded, the result is the same.
    options: the method's options (its options class in :mod:`recon.solvers.methods`; e.g. ``device="cuda"``).

    Returns
    -------
    ``{"input", "output", "method", "parameters", "format", "shape", "seconds", "recon_version"}``; ``shape``
    is the written ``(S, h, w)``, ``seconds`` the wall time of reading + reconstructing + writing; plus
    ``"metrics": {"nmse", "psnr", "ssim"}`` (also ``metric_*`` attributes of an ``.h5``) when the input has a
    reference or is undersampled retrospectively (:mod:`recon.metrics.reference`); ``"prewhitening"``:
    ``{"prewhitened": bool, "reason"}`` or, when it ran, :meth:`recon.coils.noise.Prewhitening.record`
    (``bandwidth_ratio``, dwell times, a note when the ratio was unknown and 1 was used).
    """
    from recon import __version__
    from recon.io import open_raw
    from recon.metrics.reference import reference_metrics, reference_slice

    from recon.app.memory import keep_solver_buffers, release_free_memory

    keep_solver_buffers()  # flat memory over slices without page faults inside the solvers (recon/app/memory.py)
    start = time.perf_counter()
    kind = output_kind(output_path)
    out = check_output_path(output_path, overwrite)
    from recon.io import validate

    validate.check_not_input(out, input_path)  # never replace the raw data (issue 18)
    spec = method_spec(method)
    call_options = spec.parse_options(options, PIPELINE_OPTIONS)  # checked once, before any work
    if maps_cache is not None and spec.shares_maps:
        call_options["maps_cache"] = maps_cache
    func = spec.function()
    from recon.solvers.partial_fourier import MODES as PF_MODES

    if partial_fourier not in PF_MODES:
        raise UsageError(f"--partial-fourier must be one of {', '.join(PF_MODES)}, got {partial_fourier!r}")
    pf_info: dict[str, Any] | None = None

    with open_raw(input_path, epi_correction=epi_correction) as raw_file:
        validate.check_opened(raw_file, input_path)  # absurd declared shapes / recon sizes before any work
        header = raw_file.header
        fmt = raw_file.format
        crop = header.recon_size
        slices: list[np.ndarray] = []
        extras: dict[str, list[np.ndarray]] = {}
        total = raw_file.num_slices
        mask = mask_info = None
        references: list[np.ndarray | None] = []  # per-slice references for the metrics
        if undersampling is not None:
            mask, mask_info = undersampling.mask_for(input_path, raw_file.shape)
        whitening, prewhitening = _prewhitening(header, input_path, prewhiten)
        batch = slice_batch_size(spec, options, raw_file.shape)
        pending: list[RawData] = []

        def flush(fn: MethodFn = func, opts: dict[str, Any] = call_options) -> None:  # the pending slices
            for rec, more in _solve(fn, method, pending, opts):  # (solved together when they stack)
                for key, value in more.items():  # image-shaped extras are cropped like the reconstruction
                    if value.ndim >= 2 and value.shape[-2:] == rec.shape[-2:]:
                        value = center_crop_or_pad(value, crop)
                    extras.setdefault(key, []).append(np.asarray(value))
                slices.append(np.asarray(center_crop_or_pad(rec, crop), dtype=np.float32))
                if progress is not None:
                    progress(len(slices), total)
            pending.clear()
            release_free_memory()  # per-slice buffers must not pile up in a fragmented heap (recon/app/memory.py)

        for i in range(total):
            raw = raw_file.read_slices(i)
            if whitening is not None:  # before the reference, so a fully sampled RSS reference is on its scale
                from recon.coils.noise import apply_prewhitening

                raw = apply_prewhitening(raw, whitening)
            references.append(reference_slice(raw, crop, fully_sampled_rss=mask is not None))
            validate.check_reference(raw.reference, input_path, raw.reference_name)
            if mask is not None:
                if i == 0 and raw.is_undersampled:
                    raise UsageError(
                        "input is already undersampled; retrospective undersampling (--accel/--mask-type) "
                        "needs fully sampled data", input_path)
                raw = _undersample(raw, mask)
            pf = _partial_fourier(raw)
            if pf is not None and spec.completes_partial_fourier:
                from recon.solvers.partial_fourier import partial_fourier_method

                flush()  # the slices before it, in order
                pending.append(raw)
                pf_info = {"mode": partial_fourier, **pf.summary()}
                flush(partial(partial_fourier_method, method=method, mode=partial_fourier),
                      {k: v for k, v in call_options.items() if k != "maps_cache"})
                continue
            if pf is not None:
                pf_info = {"mode": "unsampled k-space (iterative/learned method)", **pf.summary()}
            pending.append(raw)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    reconstruction = np.concatenate(slices, axis=0)
    validate.check_reconstruction(reconstruction, input_path, method)  # never an all-zero/NaN "success"
    datasets = {k: np.concatenate(vs, axis=0) for k, vs in extras.items()}
    metrics = reference_metrics(reconstruction, references)  # None without a reference
    parameters = {"method": method, **{k: v for k, v in options.items()}}
    if not epi_correction:
        parameters["epi_correction"] = False
    if partial_fourier != "pocs":
        parameters["partial_fourier"] = partial_fourier
    if not prewhiten:
        parameters["prewhiten"] = False
    entries = spec.summary_entries(datasets, options)  # e.g. the adaptation record of a learned method
    if mask is not None:
        from recon.sampling import SamplingMask

        datasets["mask"] = SamplingMask(mask).acquired(header, raw_file.shape[-1]).array
        parameters["mask"] = mask_info

    if kind == "reconstruction":
        from recon.io.fastmri import write_reconstruction

        attrs = {
            "method": method,
            "parameters": json.dumps(parameters, sort_keys=True, default=str),
            "recon_version": __version__,
            "input_file": Path(input_path).name,
            "format": fmt,
            "acquisition": header.acquisition,
            "threads": _torch_threads(),
            "prewhitened": int(bool(prewhitening["prewhitened"])),
            "prewhitening": json.dumps(prewhitening, sort_keys=True),
        }
        if "bandwidth_ratio" in prewhitening:
            attrs["noise_bandwidth_ratio"] = float(prewhitening["bandwidth_ratio"])
        if metrics is not None:
            attrs.update({f"metric_{k}": v for k, v in metrics.items()})
        attrs.update({k: json.dumps(v) for k, v in entries.items()})
        if pf_info is not None:
            attrs["partial_fourier"] = json.dumps(pf_info)
        if mask_info is not None:
            attrs.update({k if k.startswith("mask_") else f"mask_{k}": v for k, v in mask_info.items() if v is not None})
        write_reconstruction(out, reconstruction, attrs=attrs, datasets=datasets or None, overwrite=overwrite)
    else:
        from recon.io.images import write_image

        write_image(out, reconstruction, header=header, overwrite=overwrite,  # threads: issue 18 defect 14
                    provenance=f"recon {__version__} {method} threads={_torch_threads()}")
    panels = None
    if "uncertainty" in datasets:  # posterior sampling: PNG panels next to the output (OUT_panels.png)
        from recon.app.report.panels import write_panels

        panels = write_panels(out, reconstruction, datasets, title=f"{Path(input_path).name}: {method}")

    return {
        "input": str(input_path),
        "output": str(out),
        "method": method,
        "parameters": json.loads(json.dumps(parameters, default=str)),
        "format": fmt,
        "shape": list(reconstruction.shape),
        "seconds": round(time.perf_counter() - start, 4),
        "recon_version": __version__,
        "threads": _torch_threads(),
        "prewhitening": prewhitening,
        **({"metrics": metrics} if metrics is not None else {}),
        **({"panels": str(panels)} if panels is not None else {}),
        **entries,
        **({"partial_fourier": pf_info} if pf_info is not None else {}),
    }


def _partial_fourier(raw: RawData) -> Any:
    """The :class:`~recon.solvers.partial_fourier.PartialFourier` extents of a slice whose header declares
    partial Fourier (twix ``ucPhasePartialFourier``/``ucReadoutPartialFourier`` < 1, an asymmetric echo) and
    whose data is one-sided; else None. Header first: a random mask that happens to miss outer lines on one
    side is not partial Fourier."""
    attrs = raw.header.attrs
    declared = (attrs.get("asymmetric_echo") or any(
        isinstance(attrs.get(k), (int, float)) and attrs[k] < 1 for k in ("partial_fourier_pe", "partial_fourier_readout")))
    if not declared:
        return None
    from recon.solvers.partial_fourier import detect

    pf = detect(raw)
    return pf if pf.is_partial else None
