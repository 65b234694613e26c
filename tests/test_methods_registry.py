"""The one method registry (recon.solvers.methods): options classes that match the method functions, checks
made once with clear messages, command-line flags generated from it, and ESPIRiT maps shared explicitly."""
from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.errors import UsageError
from recon.solvers.methods import METHODS, UNSET, command_line_options, get_method
from recon.solvers.maps_cache import MapsCache


@pytest.mark.parametrize("name", sorted(METHODS))
def test_options_class_matches_the_method_function(name):
    """Every option field is a keyword of the function, and every keyword of the function (but maps_cache,
    handed by the pipeline) is an option: the two cannot drift apart."""
    method = METHODS[name]
    params = {n for n, p in inspect.signature(method.function()).parameters.items()
              if p.kind is p.KEYWORD_ONLY} - {"maps_cache"}
    assert set(method.options.names()) == params
    assert method.takes("maps_cache") is False
    assert method.shares_maps == ("maps_cache" in inspect.signature(method.function()).parameters)


@pytest.mark.parametrize("name, options, message", [
    ("sense", {"adapt": True}, "does not take option(s): adapt (--adapt: varnet, modl)"),
    ("zero-filled", {"lam": 0.1}, "does not take option(s): lam (--lambda:"),
    ("sense", {"lam": "auto"}, "--lambda auto is for l1-wavelet and tv"),
    ("l1-wavelet", {"lam": -1}, "--lambda must be >= 0 or 'auto', got -1"),
    ("tv", {"lam": float("nan")}, "--lambda must be >= 0"),
    ("sense", {"iterations": 0}, "--iterations must be >= 1"),
    ("tv", {"solver": "lbfgs"}, "--solver must be one of fista, admm, pdhg"),
    ("varnet", {"adapt_steps": 3}, "--adapt-steps needs --adapt"),
    ("modl", {"adapt": True, "adapt_lr": 0}, "--adapt-lr must be > 0"),
    ("varnet", {"ensemble": 1}, "--ensemble must be >= 2"),
    ("diffusion", {"ensemble": 3}, "ensemble (--ensemble: varnet, modl)"),
    ("diffusion", {"samples": 0}, "--samples must be >= 1"),
    ("diffusion", {"sampler": "euler"}, "--sampler must be one of dds, dps"),
    ("nope", {}, "unknown method 'nope'"),
])
def test_bad_options_are_one_clear_usage_error(name, options, message):
    with pytest.raises(UsageError) as exc:
        get_method(name).parse_options(options)
    assert message in str(exc.value)


def test_given_options_only_reach_the_method():
    assert get_method("l1-wavelet").parse_options({"lam": "auto", "iterations": 5}) == {"lam": "auto", "iterations": 5}
    assert get_method("diffusion").parse_options({"start_sigma": None}) == {"start_sigma": None}  # None != unset
    assert get_method("sense").parse_options({"partial_fourier": "zero"}, ("partial_fourier",)) == {}
    assert not UNSET


def test_every_registry_flag_is_on_the_command_line_and_round_trips():
    from recon.app.cli import build_parser
    from recon.app.cli.run import options_from_args

    flags = {name: spec.flag for name, (spec, _) in command_line_options().items()}
    assert {"--lambda", "--iterations", "--solver", "--adapt", "--adapt-steps", "--adapt-per", "--adapt-lr",
            "--ensemble", "--samples", "--save-samples", "--steps", "--sampler", "--calibration", "--device",
            "--weights"} == set(flags.values())
    args = build_parser().parse_args(["run", "in.h5", "out.h5", "--method", "varnet", "--adapt", "--adapt-steps",
                                      "4", "--adapt-lr", "0.01", "--ensemble", "3", "--device", "cpu"])
    options = options_from_args(args)
    assert options == {"adapt": True, "adapt_steps": 4, "adapt_lr": 0.01, "ensemble": 3, "device": "cpu"}
    assert get_method("varnet").parse_options(options) == options
    batch = build_parser().parse_args(["batch", "in", "out", "--method", "tv", "--lambda", "auto"])
    assert options_from_args(batch) == {"lam": "auto"}


def test_listing_methods_and_parsing_imports_no_torch():
    code = ("import sys; from recon.app.cli import build_parser; build_parser().parse_args(['run', 'a.h5', 'b.h5', "
            "'--method', 'tv', '--lambda', '0.01']); from recon.solvers.methods import METHODS; "
            "assert len(METHODS) >= 9; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_shared_maps_are_an_explicit_argument_and_change_nothing(tmp_path: Path):
    """sense then l1-wavelet with one MapsCache: the second reuses the first's maps (no new entry) and both
    equal runs without the cache; the registry is untouched."""
    from recon.app.pipeline import Undersampling, reconstruct_file
    from recon.data import sample_path

    before = dict(METHODS)
    und = Undersampling(accelerations=(4,), center_fractions=(0.08,))
    cache = MapsCache()
    images = {}
    for method in ("sense", "l1-wavelet"):
        for shared in (cache, None):
            out = tmp_path / f"{method}_{shared is not None}.h5"
            reconstruct_file(sample_path(), out, method=method, undersampling=und, maps_cache=shared, iterations=5)
            with h5py.File(out) as f:
                images[method, shared is not None] = f["reconstruction"][()]
        if method == "sense":
            entries = len(cache)
    assert entries >= 1 and len(cache) == entries  # l1-wavelet found every slice batch's maps
    for method in ("sense", "l1-wavelet"):
        a, b = images[method, True], images[method, False]
        assert np.abs(a - b).max() <= 1e-4 * b.max()
    assert dict(METHODS) == before


def test_a_plain_callable_gets_an_options_class_from_its_signature():
    """register_method(name, function) without an options class: its keywords become an options class (the one
    checking path every method takes), made when first needed so a lazy entry point is not imported early."""
    from recon.solvers.methods import MethodOptions, register_method

    def scaled(raw, *, factor: float = 2.0, **unused):
        return raw

    def on_device(raw, factor=1.0, device=None):
        return raw

    register_method("test-scaled", scaled)
    register_method("test-device", on_device)
    register_method("test-lazy-signature", "recon.solvers.zero_filled:zero_filled_method")
    try:
        method = get_method("test-scaled")
        assert issubclass(method.options_class(), MethodOptions) and method.options_class().names() == ("factor",)
        assert method.parse_options({"factor": 3.0}) == {"factor": 3.0}
        assert method.parse_options({}) == {}
        with pytest.raises(UsageError, match=r"does not take option\(s\): bogus"):
            method.parse_options({"bogus": 1})  # **unused is no option list
        with pytest.raises(UsageError, match=r"does not take option\(s\): device"):
            method.parse_options({"device": "cpu"})  # the function takes none
        assert method.takes("factor") and not method.takes("device")
        assert get_method("test-device").parse_options({"device": "cpu", "factor": 2}) == {"device": "cpu", "factor": 2}
        lazy = get_method("test-lazy-signature")
        assert lazy.parse_options({"device": "cpu"}) == {"device": "cpu"}
        with pytest.raises(UsageError, match="does not take"):
            lazy.parse_options({"lam": 0.1})
        assert "test-scaled" not in {m for _, ms in command_line_options().values() for m in ms}  # no flags
        register_method("test-scaled", on_device, replace=True)  # a replaced entry gets its own class
        assert get_method("test-scaled").parse_options({"device": "cpu"}) == {"device": "cpu"}
    finally:
        for name in ("test-scaled", "test-device", "test-lazy-signature"):
            METHODS.pop(name, None)


def test_each_method_names_its_extra_outputs_and_the_app_layer_has_their_writers():
    """The method owns the choice of extra files (issue 13: no dataset-driven branch in the pipeline): the
    sampling and ensemble methods name the uncertainty panels, the others nothing."""
    from recon.app.pipeline import OUTPUT_WRITERS

    for method in METHODS.values():
        assert set(method.outputs) <= set(OUTPUT_WRITERS), method.name
    assert {m.name for m in METHODS.values() if "panels" in m.outputs} == {"diffusion", "varnet", "modl"}
