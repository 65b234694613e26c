"""The one registry of reconstruction methods: each a :class:`Method` with a typed options dataclass.

``recon run --method NAME``, ``recon batch``, ``recon demo`` and :func:`recon.app.pipeline.reconstruct_file`
all look methods up here (:func:`get_method`), Cartesian and non-Cartesian alike. A method is

* an entry point ``"module:function"`` imported on first use (listing methods and parsing the command line
  import no torch), called as ``function(raw, **options)`` on a :class:`~recon.io.types.RawData` of one slice
  ``(1, C, H, W)`` (or of stacked slices when its ``slice_batch`` says so) and returning the ``(S, H, W)``
  float32 magnitude, or a dict with it under ``"reconstruction"`` plus per-slice extras;
* an options dataclass (a subclass of :class:`MethodOptions`): the options it takes, each field carrying its
  command-line flag and help (:class:`Option`), every value checked once when the options are built
  (:meth:`MethodOptions.from_dict`: unknown options, ranges, choices, options that need another one);
* what the pipeline needs to know without method-specific branches: whether it completes partial Fourier
  itself (``completes_partial_fourier``), whether it takes shared coil maps (``shares_maps``), an optional
  ``summarize`` entry turning its extra datasets into summary entries (e.g. adaptation records), and the extra
  files it writes beside its output (``outputs``, e.g. the uncertainty panels of diffusion and the ensembles).

Fields default to :data:`UNSET` (not given): the method's own default applies and nothing is recorded, so a
recorded ``parameters`` entry is exactly what the user set. Add a method with :func:`register_method` (an
entry point string or a callable; a plain callable without an options class gets one made from its signature,
:func:`options_from_signature`) or with one :class:`Method` line in :data:`METHODS`.
"""
from __future__ import annotations

import importlib
import inspect
import math
import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, ClassVar

from recon.errors import UsageError


class _Unset:
    """The default of every option field: "not given" (distinct from None, which some options take)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Option:
    """How one options field appears on the command line (``flag=None``: Python only).

    ``parse`` turns the command-line text into the value (None for a switch, ``store_true``); ``check``
    returns an error message for a bad value, or None.
    """

    help: str
    flag: str | None = None
    parse: Callable[[str], Any] | None = str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    group: str = "method options"
    check: Callable[[Any], str | None] | None = None


def option(help: str, **spec: Any) -> Any:
    """A dataclass field defaulting to :data:`UNSET`, its :class:`Option` in the field's metadata."""
    return field(default=UNSET, metadata={"option": Option(help, **spec)})


def _at_least(low: float, what: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        try:
            ok = float(value) >= low and not math.isnan(float(value))
        except (TypeError, ValueError):
            ok = False
        return None if ok else f"must be >= {low:g}{what}, got {value!r}"

    return check


def _positive(value: Any) -> str | None:
    try:
        ok = float(value) > 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    return None if ok else f"must be > 0, got {value!r}"


def _in(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"


def _weight(value: Any) -> str | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto is for l1-wavelet and tv (chosen by k-space cross-validation)"
    return _at_least(0)(value)


def _weight_or_auto(value: Any) -> str | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return _at_least(0, " or 'auto'")(value)


def lambda_value(text: str) -> float | str:
    """``--lambda``: a number, or ``auto`` (cross-validated, l1-wavelet and tv)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


_CLASSICAL = "classical solvers"
_ADAPT = "scan-specific adaptation"
_ENSEMBLE = "uncertainty ensemble"
_POSTERIOR = "posterior sampling"
_CALIBRATED = "calibrated intervals"


_LAMBDA_HELP = (
    "regularisation weight >= 0 (l1-wavelet/tv on auto-scaled data, default 0.005, l1-wavelet with a 2D mask "
    "0.0025; sense: Tikhonov, default 0; grappa: calibration Tikhonov, default 0.1); 'auto' (l1-wavelet, tv): "
    "chosen per slice by k-space cross-validation on held-out samples (recon.solvers.autolambda)")


def _lambda_option(check: Callable[[Any], str | None]) -> Any:
    """``--lambda``: one flag for every classical method; the check says whether ``auto`` is allowed."""
    return option(_LAMBDA_HELP, flag="--lambda", parse=lambda_value, metavar="LAM", group=_CLASSICAL, check=check)


@dataclass(frozen=True)
class MethodOptions:
    """Options every method takes: the torch ``device``. Subclasses add fields made with :func:`option`."""

    device: str | None = option("torch device, e.g. cpu or cuda (default: cpu)", flag="--device", group="")

    #: (option, option it needs) pairs: the first given without the second is a usage error
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: fields the method function does not take (a signature-made class without ``device``)
    refused: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names (the method function's keywords)."""
        return tuple(f.name for f in fields(cls) if f.name not in cls.refused)

    @classmethod
    def from_dict(cls, method: str, options: dict[str, Any], ignore: tuple[str, ...] = ()) -> "MethodOptions":
        """The checked options of ``method`` (a :class:`UsageError` naming the option otherwise)."""
        unknown = sorted(set(options) - set(cls.names()) - set(ignore))
        if unknown:
            raise UsageError(f"method {method!r} does not take option(s): {_described(unknown)}")
        made = cls(**{k: v for k, v in options.items() if k in cls.names()})
        made.check(method)
        return made

    def check(self, method: str) -> None:
        """Every given value against its field's check, and :attr:`requires`."""
        for f in fields(self):
            value = getattr(self, f.name)
            spec: Option | None = f.metadata.get("option")
            if value is UNSET or value is None or spec is None:
                continue
            problem = None
            if spec.choices is not None:
                problem = _in(spec.choices)(value)
            if problem is None and spec.check is not None:
                problem = spec.check(value)
            if problem:
                raise UsageError(f"{spec.flag or f.name} {problem} (method {method})")
        for name, needed in self.requires:
            if getattr(self, name) not in (UNSET, None, False) and getattr(self, needed) in (UNSET, None, False):
                flag = fields_by_name(type(self))[name].metadata["option"].flag or name
                need = fields_by_name(type(self))[needed].metadata["option"].flag or needed
                raise UsageError(f"{flag} needs {need}")

    def given(self) -> dict[str, Any]:
        """The options that were given (``{name: value}``), what the method function is called with."""
        return {n: getattr(self, n) for n in self.names() if getattr(self, n) is not UNSET}


def fields_by_name(cls: type) -> dict[str, Any]:
    """``{name: dataclass field}`` of an options class."""
    return {f.name: f for f in fields(cls)}


@dataclass(frozen=True)
class SenseOptions(MethodOptions):
    """CG-SENSE with ESPIRiT maps."""

    lam: float | None = _lambda_option(_weight)
    iterations: int | None = option("solver iterations (defaults: sense 10, l1-wavelet 40, tv 30)",
                                    flag="--iterations", parse=int, metavar="N", group=_CLASSICAL,
                                    check=_at_least(1, " (0 iterations would return the starting image)"))


@dataclass(frozen=True)
class GrappaOptions(MethodOptions):
    """GRAPPA: ``lam`` is the calibration's Tikhonov weight."""

    lam: float | None = _lambda_option(_weight)


@dataclass(frozen=True)
class CompressedSensingOptions(SenseOptions):
    """L1-wavelet / TV: ``lam`` may be ``"auto"``; ``solver`` fista, admm or pdhg."""

    lam: float | str | None = _lambda_option(_weight_or_auto)
    solver: str | None = option("optimiser for l1-wavelet/tv (defaults: fista for l1-wavelet, admm for tv)",
                                flag="--solver", parse=str, choices=("fista", "admm", "pdhg"), group=_CLASSICAL)


_WEIGHTS_HELP = "weights for varnet/modl/diffusion (a recon train checkpoint; default: the bundled ones)"
_CALIBRATION_HELP = ("a 'recon calibrate' file: also write calibrated intervals lower/upper, and uncertainty = "
                     "their half-width (refused if made for other weights, options or acceleration)")


@dataclass(frozen=True)
class WeightsOptions(MethodOptions):
    """A learned method: ``weights`` (default: the bundled ones)."""

    weights: str | None = option(_WEIGHTS_HELP, flag="--weights", metavar="PATH", group="")


@dataclass(frozen=True)
class LearnedOptions(WeightsOptions):
    """VarNet / MoDL: adaptation, k-space split ensemble and its calibration."""

    adapt: bool = option("fine-tune a copy of the weights on the scan's own k-space first (self-supervised, with a "
                         "self-validation set choosing the step, step 0 = the given weights included); the weights "
                         "file is never changed", flag="--adapt", parse=None, group=_ADAPT)
    adapt_steps: int | None = option("adaptation steps (default: varnet 40; modl 20); from 6x acceleration on varnet averages 2 "
                                     "runs of 70 steps (of N with this option)", flag="--adapt-steps", parse=int, metavar="N",
                                     group=_ADAPT, check=_at_least(0))
    adapt_per: str | None = option("adapt per slice (default), or once per file (on its first slice) for all its "
                                   "slices", flag="--adapt-per", choices=("slice", "volume"), group=_ADAPT)
    adapt_lr: float | None = option("Adam learning rate (default 1e-3; VarNet at 6x or more: 2e-3)", flag="--adapt-lr", parse=float,
                                    metavar="LR", group=_ADAPT, check=_positive)
    ensemble: int | None = option(
        "also run the network K >= 2 more times, each without a random 20%% of the acquired lines outside the "
        "calibration region; uncertainty = std of those K reconstructions (the reconstruction itself is "
        "unchanged); needed for --calibration with varnet/modl", flag="--ensemble", parse=int, metavar="K",
        group=_ENSEMBLE, check=_at_least(2, " members (their spread is the uncertainty)"))
    ensemble_fraction: float | None = option("share of the acquired lines outside the calibration region each "
                                             "member leaves out (default 0.2)", flag=None)
    ensemble_seed: int = option("seed of the members' splits (default 0)", flag=None)
    calibration: str | None = option(_CALIBRATION_HELP, flag="--calibration", metavar="FILE", group=_CALIBRATED)

    requires: ClassVar[tuple[tuple[str, str], ...]] = (
        ("adapt_steps", "adapt"), ("adapt_per", "adapt"), ("adapt_lr", "adapt"))


@dataclass(frozen=True)
class DiffusionOptions(WeightsOptions):
    """Diffusion posterior sampling."""

    samples: int = option("number of posterior samples per slice (default 4); their mean is the reconstruction",
                          flag="--samples", parse=int, metavar="K", group=_POSTERIOR, check=_at_least(1))
    save_samples: bool = option("also write the samples (S, K, H, W) magnitudes", flag="--save-samples",
                                parse=None, group=_POSTERIOR)
    steps: int | None = option("sampler steps (default: 12 for dds, 50 for dps)", flag="--steps", parse=int,
                               metavar="N", group=_POSTERIOR, check=_at_least(1))
    sampler: str = option("posterior sampler (default: dds)", flag="--sampler", choices=("dds", "dps"),
                          group=_POSTERIOR)
    calibration: str | None = option(_CALIBRATION_HELP, flag="--calibration", metavar="FILE", group=_CALIBRATED)
    seed: int = option("sampler seed (default 0)", flag=None)
    hard_dc: bool = option("finish exactly data-consistent", flag=None)
    start_sigma: float | None = option("start from the CG-SENSE image plus noise of this level (None: pure noise)",
                                       flag=None)


@dataclass(frozen=True)
class Method:
    """A reconstruction method: its entry point, options class and what the pipeline must know of it."""

    name: str
    entry: str | Callable[..., Any]
    options: type[MethodOptions] | None
    summary: str = ""
    completes_partial_fourier: bool = False
    shares_maps: bool = False
    summarize: str | None = None
    adaptable: bool = False
    has_ensemble: bool = False
    calibratable: bool = False
    #: extra files the method writes beside its output, named by the application layer's writers
    #: (``recon.app.pipeline.OUTPUT_WRITERS``; ``"panels"``: PNG panels of its uncertainty maps, written when
    #: the run produced an ``uncertainty``): the method owns the choice, the app layer the drawing
    outputs: tuple[str, ...] = ()

    def function(self) -> Callable[..., Any]:
        """The callable (imported on first use, then cached)."""
        if callable(self.entry):
            return self.entry
        fn = _LOADED.get(self.entry)
        if fn is None:
            module, _, attr = self.entry.partition(":")
            fn = _LOADED[self.entry] = getattr(importlib.import_module(module), attr)
        return fn

    def options_class(self) -> type[MethodOptions]:
        """Its options class: :attr:`options`, or for a plain callable registered without one, the class
        :func:`options_from_signature` makes of its keywords (once, when first needed: importing a lazy entry
        point waits until then)."""
        if self.options is not None:
            return self.options
        made = _GENERATED.get(self.name)
        if made is None or made[0] is not self.entry:
            made = _GENERATED[self.name] = (self.entry, options_from_signature(self.name, self.function()))
        return made[1]

    def parse_options(self, options: dict[str, Any], ignore: tuple[str, ...] = ()) -> dict[str, Any]:
        """``options`` checked once (unknown names, ranges, choices, dependencies): the keywords to call with."""
        return self.options_class().from_dict(self.name, options, ignore).given()

    def slice_batch(self, options: dict[str, Any]) -> bool:
        """Whether stacked slices may go into one call (the function's ``slice_batch(options)`` attribute)."""
        accepts = getattr(self.function(), "slice_batch", None)
        return bool(accepts is not None and accepts(options))

    def summary_entries(self, datasets: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        """Extra summary / attribute entries the method derives from its datasets (``summarize``), or ``{}``."""
        if self.summarize is None:
            return {}
        module, _, attr = self.summarize.partition(":")
        return getattr(importlib.import_module(module), attr)(datasets, options)

    def takes(self, option_name: str) -> bool:
        """Whether the method has the option."""
        return option_name in self.options_class().names()


def options_from_signature(name: str, function: Callable[..., Any]) -> type[MethodOptions]:
    """The options class of a plain callable registered without one: a field per keyword parameter but ``raw``
    (Python only: no command-line flag, no range check), with ``device`` from :class:`MethodOptions`. A
    ``**kwargs`` catch-all takes nothing: options it should take need an options class of their own."""
    params = inspect.signature(function).parameters
    keywords = [n for n, p in params.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in ("raw", "device")]
    spec = [(n, Any, option(f"option {n!r} of {name} (from its signature)", flag=None)) for n in keywords]
    made = make_dataclass(f"{name.title().replace('-', '')}SignatureOptions", spec, bases=(MethodOptions,),
                          frozen=True)
    if "device" not in params:  # the function takes no device: giving one is a usage error, as before
        made.refused = ("device",)
    return made


_LOADED: dict[str, Callable[..., Any]] = {}
#: method name -> (entry, options class made from its signature), for methods registered without one
_GENERATED: dict[str, tuple[Any, type["MethodOptions"]]] = {}
_LEARNED = dict(adaptable=True, has_ensemble=True, calibratable=True, outputs=("panels",),
                summarize="recon.solvers.learned.adapt:adaptation_summary")

#: method name -> :class:`Method`
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("zero-filled", "recon.solvers.zero_filled:zero_filled_method", MethodOptions,
           "inverse FFT + root-sum-of-squares", completes_partial_fourier=True),
    Method("sense", "recon.solvers.reconstruct:sense_method", SenseOptions, "CG-SENSE with ESPIRiT maps",
           completes_partial_fourier=True, shares_maps=True),
    Method("grappa", "recon.solvers.reconstruct:grappa_method", GrappaOptions, "GRAPPA",
           completes_partial_fourier=True),
    Method("l1-wavelet", "recon.solvers.reconstruct:l1_wavelet_method", CompressedSensingOptions,
           "L1-wavelet compressed sensing", shares_maps=True),
    Method("tv", "recon.solvers.reconstruct:tv_method", CompressedSensingOptions, "total-variation compressed sensing",
           shares_maps=True),
    Method("varnet", "recon.solvers.learned.method:varnet_method", LearnedOptions, "E2E-VarNet", **_LEARNED),
    Method("modl", "recon.solvers.learned.method:modl_method", LearnedOptions, "MoDL", **_LEARNED),
    Method("unet", "recon.solvers.learned.fastmri_method:unet_method", WeightsOptions, "fastMRI U-Net"),
    Method("diffusion", "recon.solvers.diffusion.method:diffusion_method", DiffusionOptions,
           "diffusion posterior sampling", calibratable=True, outputs=("panels",)),
)}


def register_method(name: str, func: Method | Callable[..., Any] | str, *, replace: bool = False,
                    options: type[MethodOptions] | None = None) -> None:
    """Make ``func`` available as ``reconstruct_file(..., method=name)`` / ``recon run --method name``.

    ``func``: a :class:`Method`, a callable, or ``"module:function"``; ``options``: its options class (None: one
    made from the function's keywords when first needed, :func:`options_from_signature`)."""
    if name in METHODS and not replace:
        raise UsageError(f"method {name!r} is already registered")
    METHODS[name] = func if isinstance(func, Method) else Method(name, func, options)


def get_method(name: str) -> Method:
    """The registered :class:`Method` (a :class:`UsageError` listing the names otherwise)."""
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _described(names: list[str]) -> str:
    """``lam (--lambda), adapt (--adapt: varnet, modl)``: option names with their flags and the methods that
    take them, for a usage error."""
    known = command_line_options()
    return ", ".join(f"{n} ({known[n][0].flag}: {', '.join(known[n][1])})" if n in known else n for n in names)


def command_line_options() -> dict[str, tuple[Option, tuple[str, ...]]]:
    """Every option with a flag: ``{name: (Option, methods that take it)}``, in registry order (for the CLI)."""
    found: dict[str, tuple[Option, list[str]]] = {}
    for method in METHODS.values():
        if method.options is None:
            continue
        for f in fields(method.options):
            spec = f.metadata.get("option")
            if spec is None or spec.flag is None:
                continue
            found.setdefault(f.name, (spec, []))[1].append(method.name)
    return {k: (spec, tuple(ms)) for k, (spec, ms) in found.items()}
