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
Outputs: an ``.h5`` holds ``reconstruction`` (float32 ``(S, h, w)``), the method's extra datasets, ``mask``
(retrospective undersampling) and attributes ``method``, ``parameters`` (JSON: the options given, plus
``epi_correction``/``partial_fourier``/``prewhiten`` where not default, ``mask``), ``recon_version``,
``input_file``, ``format``, ``acquisition``, ``threads``, ``prewhitened`` (0/1), ``prewhitening`` (JSON:
:meth:`recon.coils.noise.Prewhitening.record` or the reason it did not run), ``noise_bandwidth_ratio``,
``metric_nmse/psnr/ssim`` (when the input has a reference or is undersampled retrospectively;
:mod:`recon.metrics.reference`), ``mask_*``, and the method's summary entries as JSON (``adaptation``,
``partial_fourier``: mode and sampled extents). Images carry the method and thread count as provenance
(:mod:`recon.io.images`). Extra files are the method's choice (``Method.outputs``, drawn by
:data:`OUTPUT_WRITERS`): diffusion, and VarNet/MoDL with ``--ensemble``, write ``OUT_panels.png``.

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
import torch

from recon.errors import OutputError, UsageError
from recon.io.atomic import check_output_path
from recon.arrays import center_crop_or_pad
from recon import __version__
from recon.app.memory import keep_solver_buffers, release_free_memory
from recon.app.report.panels import write_panels
from recon.io.types import RawData, stack_slices
from recon.metrics.reference import reference_metrics, reference_slice
from recon.sampling import apply_mask, mask_from_options, SamplingMask
from recon.solvers.maps_cache import MapsCache
from recon.solvers.methods import METHODS, Method, register_method  # noqa: F401 - the registry, re-exported
from recon.solvers.methods import get_method as method_spec
from recon.io.images import image_format, write_image
from recon.coils.noise import apply_prewhitening, prewhitening_for
from recon.io import open_raw, validate
from recon.solvers.partial_fourier import detect, MODES, partial_fourier_method

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

    try:
        return image_format(path)
    except OutputError:
        raise OutputError(
            f"unknown output extension '{''.join(Path(path).suffixes) or '(none)'}' "
            "(use .h5 for a reconstruction, or .png, .nii, .nii.gz, .dcm, .mrd.h5 for images)", path
        ) from None


def _torch_threads() -> int:
    """torch's intra-op thread count, recorded with every output (results depend on it: recon.app.runtime)."""
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
    kspace, used = apply_mask(raw.kspace, mask, raw.header)
    return RawData(kspace, raw.header, used, raw.reference, raw.reference_name, raw.path,
                   raw.calibration, raw.calibration_mask)


def _prewhitening(header: Any, input_path: str | Path, enabled: bool) -> tuple[Any, dict[str, Any]]:
    """The file's :class:`recon.coils.noise.Prewhitening` (or None) and what to record about it."""
    if not header.has_noise:
        return None, {"prewhitened": False, "reason": "no noise scans in the input"}
    if not enabled:
        return None, {"prewhitened": False, "reason": "--no-prewhiten"}

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

    ``input_path``: any raw file :func:`recon.io.open_raw` reads. ``output_path``: ``.h5`` or an image
    (``.png``, ``.nii``, ``.nii.gz``, ``.dcm``, ``.mrd.h5``); what each records: the module docstring.
    ``method``: a key of :data:`METHODS`; ``options``: its options (its options class in
    :mod:`recon.solvers.methods`, e.g. ``device="cuda"``), checked before any work. ``overwrite``: replace an
    existing output. ``progress(done, total)``: called after each slice. ``undersampling``: undersample a fully
    sampled input retrospectively (an already undersampled input is a :class:`UsageError`).
    ``epi_correction``: EPI ramp regridding + Nyquist-ghost correction (``--no-epi-correction``).
    ``partial_fourier``: ``pocs`` (default), ``homodyne`` or ``zero``: how methods with
    ``completes_partial_fourier`` (zero-filled, grappa, sense) complete a partial-Fourier input (declared by the
    header and seen in the data; :mod:`recon.solvers.partial_fourier`). ``prewhiten``: whiten the k-space with
    the input's noise scans first, when it has them (:func:`recon.coils.noise.prewhitening_for`).
    ``maps_cache``: a :class:`~recon.solvers.maps_cache.MapsCache` shared by several calls on the same input,
    so methods with ``shares_maps`` reuse ESPIRiT maps of the same slices and mask (same result).

    Returns ``{"input", "output", "method", "parameters", "format", "shape" (the written (S, h, w)),
    "seconds" (read + reconstruct + write), "recon_version", "threads", "prewhitening"}``, plus ``"metrics"``
    ``{"nmse", "psnr", "ssim"}`` when there is a reference, ``"panels"``, and the method's summary entries
    (``"adaptation"``, ``"partial_fourier"``) when they apply.
    """
    keep_solver_buffers()  # flat memory over slices without page faults inside the solvers (recon/app/memory.py)
    start = time.perf_counter()
    kind = output_kind(output_path)
    out = check_output_path(output_path, overwrite)
    validate.check_not_input(out, input_path)  # never replace the raw data (issue 18)
    spec = method_spec(method)
    call_options = spec.parse_options(options, PIPELINE_OPTIONS)  # checked once, before any work
    if maps_cache is not None and spec.shares_maps:
        call_options["maps_cache"] = maps_cache
    _check_partial_fourier_mode(partial_fourier)

    with open_raw(input_path, epi_correction=epi_correction) as raw_file:
        validate.check_opened(raw_file, input_path)  # absurd declared shapes / recon sizes before any work
        header, fmt = raw_file.header, raw_file.format
        mask = mask_info = None
        if undersampling is not None:
            mask, mask_info = undersampling.mask_for(input_path, raw_file.shape)
        whitening, prewhitening = _prewhitening(header, input_path, prewhiten)
        loop = _SliceLoop(spec, call_options, header.recon_size, raw_file.num_slices, progress, partial_fourier,
                          slice_batch_size(spec, options, raw_file.shape))
        for i in range(raw_file.num_slices):
            loop.feed(_prepared_slice(raw_file.read_slices(i), i, whitening, mask, loop.references, input_path))
        loop.flush()
    reconstruction = np.concatenate(loop.slices, axis=0)
    validate.check_reconstruction(reconstruction, input_path, method)  # never an all-zero/NaN "success"
    datasets = {k: np.concatenate(vs, axis=0) for k, vs in loop.extras.items()}
    metrics = reference_metrics(reconstruction, loop.references)  # None without a reference
    parameters = _parameters(method, options, epi_correction, partial_fourier, prewhiten)
    entries = spec.summary_entries(datasets, options)  # e.g. the adaptation record of a learned method
    if loop.pf_info is not None:
        entries["partial_fourier"] = loop.pf_info
    if mask is not None:
        datasets["mask"] = SamplingMask(mask).acquired(header, raw_file.shape[-1]).array
        parameters["mask"] = mask_info
    record = {"method": method, "parameters": parameters, "input_file": Path(input_path).name, "format": fmt,
              "acquisition": header.acquisition, "threads": _torch_threads(), "prewhitening": prewhitening,
              "metrics": metrics, "entries": entries, "mask_info": mask_info}
    _write_output(out, kind, reconstruction, datasets, header, record, overwrite)
    title = f"{Path(input_path).name}: {method}"
    written = {name: OUTPUT_WRITERS[name](out, reconstruction, datasets, title) for name in spec.outputs}
    return _summary(input_path, out, record, reconstruction.shape, time.perf_counter() - start,
                    {name: str(path) for name, path in written.items() if path is not None})


def _uncertainty_panels(out: Path, reconstruction: np.ndarray, datasets: dict[str, np.ndarray],
                        title: str) -> Path | None:
    """``OUT_panels.png`` (:func:`recon.app.report.panels.write_panels`) when the run gave an ``uncertainty``."""
    return write_panels(out, reconstruction, datasets, title=title) if "uncertainty" in datasets else None


#: the writers a method may name in :attr:`Method.outputs <recon.solvers.methods.Method.outputs>`:
#: ``(output path, reconstruction (S, h, w), datasets, title) -> the file written, or None``
OUTPUT_WRITERS: dict[str, Callable[[Path, np.ndarray, dict[str, np.ndarray], str], Path | None]] = {
    "panels": _uncertainty_panels,
}


def _summary(input_path: str | Path, out: Path, record: dict[str, Any], shape: tuple[int, ...], seconds: float,
             written: dict[str, str]) -> dict[str, Any]:
    """The JSON-serialisable summary :func:`reconstruct_file` returns (and ``recon run --json`` prints)."""
    return {
        "input": str(input_path),
        "output": str(out),
        "method": record["method"],
        "parameters": json.loads(json.dumps(record["parameters"], default=str)),
        "format": record["format"],
        "shape": list(shape),
        "seconds": round(seconds, 4),
        "recon_version": __version__,
        "threads": record["threads"],
        "prewhitening": record["prewhitening"],
        **({"metrics": record["metrics"]} if record["metrics"] is not None else {}),
        **written,  # extra files the method wrote ("panels")
        **record["entries"],
    }


def _check_partial_fourier_mode(mode: str) -> None:
    """``--partial-fourier`` must name a completion (:data:`recon.solvers.partial_fourier.MODES`)."""
    if mode not in MODES:
        raise UsageError(f"--partial-fourier must be one of {', '.join(MODES)}, got {mode!r}")


def _prepared_slice(raw: RawData, index: int, whitening: Any, mask: np.ndarray | None,
                    references: list[np.ndarray | None], input_path: str | Path) -> RawData:
    """One slice read from the file, prewhitened, its reference appended to ``references`` (cropped to the
    recon size; the RSS of the fully sampled data when undersampling retrospectively), then undersampled
    with ``mask`` (an already undersampled input is a :class:`UsageError`)."""
    if whitening is not None:  # before the reference, so a fully sampled RSS reference is on its scale
        raw = apply_prewhitening(raw, whitening)
    references.append(reference_slice(raw, raw.header.recon_size, fully_sampled_rss=mask is not None))
    validate.check_reference(raw.reference, input_path, raw.reference_name)
    if mask is None:
        return raw
    if index == 0 and raw.is_undersampled:
        raise UsageError("input is already undersampled; retrospective undersampling (--accel/--mask-type) "
                         "needs fully sampled data", input_path)
    return _undersample(raw, mask)


class _SliceLoop:
    """The slices of one file through a method: collected into batches of ``batch`` (solved together when
    they stack), partial-Fourier slices of a direct method through its completion, outputs centre-cropped to
    ``crop`` (image-shaped extras too), progress reported per slice, free memory returned after each batch."""

    def __init__(self, spec: Method, options: dict[str, Any], crop: tuple[int, int], total: int,
                 progress: ProgressFn | None, partial_fourier: str, batch: int):
        self.spec, self.options, self.crop, self.total = spec, options, crop, total
        self.progress, self.partial_fourier, self.batch = progress, partial_fourier, batch
        self.func = spec.function()
        self.slices: list[np.ndarray] = []
        self.extras: dict[str, list[np.ndarray]] = {}
        self.references: list[np.ndarray | None] = []  # per-slice references for the metrics
        self.pending: list[RawData] = []
        self.pf_info: dict[str, Any] | None = None

    def feed(self, raw: RawData) -> None:
        """Queue one slice; solve the queue when it is a full batch."""
        pf = _partial_fourier(raw)
        if pf is not None and self.spec.completes_partial_fourier:
            self.flush()  # the slices before it, in order
            self.pending.append(raw)
            self.pf_info = {"mode": self.partial_fourier, **pf.summary()}
            self.flush(partial(partial_fourier_method, method=self.spec.name, mode=self.partial_fourier),
                       {k: v for k, v in self.options.items() if k != "maps_cache"})
            return
        if pf is not None:
            self.pf_info = {"mode": "unsampled k-space (iterative/learned method)", **pf.summary()}
        self.pending.append(raw)
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self, fn: MethodFn | None = None, options: dict[str, Any] | None = None) -> None:
        """Solve the queued slices (with ``fn``/``options`` instead of the method's, for partial Fourier)."""
        if not self.pending:
            return
        for rec, more in _solve(fn or self.func, self.spec.name, self.pending,
                                self.options if options is None else options):
            for key, value in more.items():  # image-shaped extras are cropped like the reconstruction
                if value.ndim >= 2 and value.shape[-2:] == rec.shape[-2:]:
                    value = center_crop_or_pad(value, self.crop)
                self.extras.setdefault(key, []).append(np.asarray(value))
            self.slices.append(np.asarray(center_crop_or_pad(rec, self.crop), dtype=np.float32))
            if self.progress is not None:
                self.progress(len(self.slices), self.total)
        self.pending.clear()
        release_free_memory()  # per-slice buffers must not pile up in a fragmented heap (recon/app/memory.py)


def _parameters(method: str, options: dict[str, Any], epi_correction: bool, partial_fourier: str,
                prewhiten: bool) -> dict[str, Any]:
    """What the output records as ``parameters``: the method and the options given, plus the pipeline's
    options where they differ from their defaults."""
    parameters = {"method": method, **options}
    if not epi_correction:
        parameters["epi_correction"] = False
    if partial_fourier != "pocs":
        parameters["partial_fourier"] = partial_fourier
    if not prewhiten:
        parameters["prewhiten"] = False
    return parameters


def _write_output(out: Path, kind: str, reconstruction: np.ndarray, datasets: dict[str, np.ndarray], header: Any,
                  record: dict[str, Any], overwrite: bool) -> None:
    """Write ``reconstruction`` ``(S, h, w)`` atomically: an ``.h5`` with ``datasets`` and the ``record``'s
    attributes (:func:`recon.io.fastmri.write_reconstruction`), or an image with provenance."""
    if kind != "reconstruction":
        write_image(out, reconstruction, header=header, overwrite=overwrite,  # threads: issue 18 defect 14
                    provenance=f"recon {__version__} {record['method']} threads={record['threads']}")
        return
    # deferred: loads h5py, which importing recon.app.pipeline does not
    from recon.io.fastmri import write_reconstruction

    prewhitening = record["prewhitening"]
    attrs = {
        "method": record["method"],
        "parameters": json.dumps(record["parameters"], sort_keys=True, default=str),
        "recon_version": __version__,
        "input_file": record["input_file"],
        "format": record["format"],
        "acquisition": record["acquisition"],
        "threads": record["threads"],
        "prewhitened": int(bool(prewhitening["prewhitened"])),
        "prewhitening": json.dumps(prewhitening, sort_keys=True),
    }
    if "bandwidth_ratio" in prewhitening:
        attrs["noise_bandwidth_ratio"] = float(prewhitening["bandwidth_ratio"])
    if record["metrics"] is not None:
        attrs.update({f"metric_{k}": v for k, v in record["metrics"].items()})
    attrs.update({k: json.dumps(v) for k, v in record["entries"].items()})
    if record["mask_info"] is not None:
        attrs.update({k if k.startswith("mask_") else f"mask_{k}": v for k, v in record["mask_info"].items()
                      if v is not None})
    write_reconstruction(out, reconstruction, attrs=attrs, datasets=datasets or None, overwrite=overwrite)


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

    pf = detect(raw)
    return pf if pf.is_partial else None
