"""Resume: is an existing output a finished result of *this* run's settings?

Outputs are written atomically (:func:`recon.io.atomic.atomic_path`), so an output under its final name is
complete. It counts as finished when its attributes match the run:

* ``recon_version`` equals the installed version;
* ``method`` equals the run's method;
* ``parameters`` (JSON) minus its ``mask`` entry equals ``{"method": method, **options}``, plus
  ``"prewhiten": false`` when the run has ``--no-prewhiten`` (the default, prewhitening, is not written);
* the ``prewhitened`` attribute is present (outputs made before noise prewhitening became the default lack
  it, and may be unwhitened where the input has noise scans);
* retrospective undersampling: ``parameters["mask"]`` is present exactly when the run undersamples, with the
  run's mask type, one of its accelerations and centre fractions, and its seed (the input's file name when no
  ``--seed`` is given, which is what :class:`recon.app.pipeline.Undersampling` uses).

A mismatch is never silently redone or overwritten: that file fails, telling the user to choose another
``OUTPUT_DIR`` or pass ``--no-resume`` (which reconstructs and overwrites every output).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from recon import __version__

#: states of an output path
MISSING, FINISHED, MISMATCH, UNREADABLE = "missing", "finished", "mismatch", "unreadable"


@dataclass(frozen=True)
class OutputState:
    """``state`` is one of :data:`MISSING`, :data:`FINISHED`, :data:`MISMATCH`, :data:`UNREADABLE`;
    ``reason`` says why for the last two; ``slices`` is the stored reconstruction's slice count; ``metrics``
    the ``metric_nmse/psnr/ssim`` attributes :func:`recon.app.pipeline.reconstruct_file` stored (against the
    input's own reference), or None."""

    state: str
    reason: str = ""
    slices: int = 0
    metrics: dict[str, float] | None = None


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _close(a: Any, choices: Any) -> bool:
    try:
        return any(abs(float(a) - float(c)) <= 1e-9 * max(1.0, abs(float(c))) for c in choices)
    except (TypeError, ValueError):
        return False


def _mask_mismatch(stored: Any, undersampling: Any, input_name: str) -> str | None:
    if undersampling is None:
        return None if stored is None else "output is retrospectively undersampled, this run is not"
    if not isinstance(stored, dict):
        return "output is not retrospectively undersampled, this run is"
    if stored.get("mask_type") != undersampling.mask_type:
        return f"mask type {stored.get('mask_type')!r} != {undersampling.mask_type!r}"
    if not _close(stored.get("acceleration"), undersampling.accelerations):
        return f"acceleration {stored.get('acceleration')} not in {list(undersampling.accelerations)}"
    if not _close(stored.get("center_fraction"), undersampling.center_fractions):
        return f"centre fraction {stored.get('center_fraction')} not in {list(undersampling.center_fractions)}"
    seed = input_name if undersampling.seed is None else undersampling.seed
    if _normalise(stored.get("seed")) != _normalise(seed):
        return f"mask seed {stored.get('seed')!r} != {seed!r}"
    return None


def output_state(
    output: str | Path,
    *,
    input_name: str,
    method: str,
    options: dict[str, Any],
    undersampling: Any = None,
    version: str | None = None,
    prewhiten: bool = True,
) -> OutputState:
    """Compare an existing output's attributes with a run's settings (see the module docstring).

    Parameters
    ----------
    output: the output ``.h5`` path.
    input_name: the input's file name (the default mask seed).
    method, options, undersampling: the run's :func:`recon.app.pipeline.reconstruct_file` arguments.
    version: the expected ``recon_version`` (default: the installed one).
    prewhiten: the run's prewhitening setting (False: ``--no-prewhiten``).
    """
    # deferred: loads h5py, which importing recon.app.batch.resume does not
    import h5py

    path = Path(output)
    if not path.exists():
        return OutputState(MISSING)
    version = __version__ if version is None else version
    try:
        with h5py.File(path, "r") as f:
            if "reconstruction" not in f:
                return OutputState(UNREADABLE, "exists but has no 'reconstruction' dataset")
            slices = int(f["reconstruction"].shape[0])
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError) as exc:
        return OutputState(UNREADABLE, f"exists but cannot be read ({exc})")
    if str(attrs.get("recon_version")) != version:
        return OutputState(MISMATCH, f"made by recon {attrs.get('recon_version')}, this is recon {version}")
    if attrs.get("method") != method:
        return OutputState(MISMATCH, f"made with method {attrs.get('method')!r}, this run uses {method!r}")
    try:
        stored = json.loads(str(attrs.get("parameters", "{}")))
    except ValueError:
        return OutputState(MISMATCH, "its 'parameters' attribute is not JSON")
    if not isinstance(stored, dict):
        return OutputState(MISMATCH, "its 'parameters' attribute is not a JSON object")
    stored_mask = stored.pop("mask", None)
    expected = _normalise({"method": method, **options, **({} if prewhiten else {"prewhiten": False})})
    if _normalise(stored) != expected:
        return OutputState(MISMATCH, f"made with parameters {json.dumps(stored, sort_keys=True)}, "
                                     f"this run uses {json.dumps(expected, sort_keys=True)}")
    if "prewhitened" not in attrs:
        return OutputState(MISMATCH, "made before noise prewhitening was recorded (it may be unwhitened)")
    reason = _mask_mismatch(stored_mask, undersampling, input_name)
    if reason is not None:
        return OutputState(MISMATCH, reason)
    metrics = {name: float(attrs[f"metric_{name}"]) for name in ("nmse", "psnr", "ssim")
               if f"metric_{name}" in attrs}
    return OutputState(FINISHED, slices=slices, metrics=metrics if len(metrics) == 3 else None)
