"""The run manifest: ``OUTPUT_DIR/manifest.json``, rewritten atomically each time a file finishes.

Layout (JSON object)::

    {"manifest_version": 1, "tool": "recon batch",
     "started", "updated", "finished": ISO 8601 UTC times ("finished" null until the run ends),
     "state": "running" | "finished" | "interrupted",
     "pid", "host": the ``recon batch`` process (a "running" manifest whose process is gone is a killed run:
         :func:`recon.app.batch.lifetime.stale_run`),
     "previous_run": {"state": "killed", "started", "updated", "pid"} when this run resumed a killed one,
     "command": the argv, "input_dir", "output_dir",
     "parameters": {"method", "options", "undersampling", "pattern", "limit", "resume", "target_dir", "tiers"},
     "versions": {"recon", "python", "numpy", "torch", "h5py", "dask"?},
     "backend": {"name", "workers", "threads_per_worker", "scheduler"?},
     "files": {REL: {"input", "output", "status", "seconds", "slices", "metrics", "error", "worker"}},
     "summary": {"files", "ok", "skipped", "failed", "pending", "slices", "seconds", "slices_per_second",
                 "metrics": {"nmse": {"mean", "std", "n"}, "psnr": ..., "ssim": ..., <metrics of the other
                             --tiers, e.g. "haarpsi", "dice_mean">: {"mean", "std", "n"}}}}

``status`` is ``pending`` (not done yet), ``ok`` (reconstructed in this run), ``skipped`` (a finished output
of an earlier run with the same settings) or ``failed`` (``error`` = ``{"type", "message"}``). Aggregates are
over ``ok`` and ``skipped`` files with metrics: mean and sample standard deviation (``ddof=1``, as
fastMRI's ``evaluate.py``).
"""
from __future__ import annotations

import json
import math
import platform
import time
import numpy
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recon.io.atomic import atomic_path
from recon import __version__

MANIFEST_NAME = "manifest.json"
METRIC_NAMES = ("nmse", "psnr", "ssim")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def software_versions() -> dict[str, str]:
    """Versions of recon and the libraries that decide its numbers."""
    # deferred: loads h5py, which importing recon.app.batch.manifest does not
    import h5py
    # deferred: loads torch, which importing recon.app.batch.manifest does not
    import torch

    out = {"recon": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
           "torch": torch.__version__, "h5py": h5py.__version__}
    try:
        # deferred: dask may be missing on this platform or install (its ImportError is handled here)
        import dask
        # deferred: distributed may be missing on this platform or install (its ImportError is handled here)
        import distributed

        out["dask"] = dask.__version__
        out["distributed"] = distributed.__version__
    except ImportError:
        pass
    return out


def aggregate(values: list[float]) -> dict[str, float | int | None]:
    """Mean and sample std (ddof=1; 0 for a single value) of finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(vals)}


def load_manifest(path: str | Path) -> dict[str, Any] | None:
    """A previous run's manifest, or None when there is none or it cannot be parsed."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


class Manifest:
    """The manifest of one run, kept in memory and written with :meth:`write`."""

    def __init__(self, path: str | Path, header: dict[str, Any], items: list[tuple[str, str, str]],
                 metric_names: Sequence[str] = METRIC_NAMES):
        """``header``: the run-level fields; ``items``: ``(rel, input, output)`` of every file, in order;
        ``metric_names``: the metrics the summary aggregates (those of the run's tiers)."""
        self.path = Path(path)
        self.metric_names = tuple(metric_names)
        self._t0 = time.perf_counter()
        self.data: dict[str, Any] = {"manifest_version": 1, "tool": "recon batch", "started": now(),
                                     "updated": now(), "finished": None, "state": "running", **header}
        self.data["files"] = {rel: {"input": inp, "output": out, "status": "pending", "seconds": None,
                                    "slices": None, "metrics": None, "error": None}
                              for rel, inp, out in items}
        self.data["summary"] = self.summary()

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]

    def record(self, rel: str, **fields: Any) -> None:
        self.files[rel].update(fields)

    def summary(self) -> dict[str, Any]:
        entries = list(self.files.values())
        count = {s: sum(1 for e in entries if e["status"] == s) for s in ("ok", "skipped", "failed", "pending")}
        done = [e for e in entries if e["status"] == "ok"]
        slices = sum(int(e.get("slices") or 0) for e in done)
        elapsed = time.perf_counter() - self._t0
        scored = [e["metrics"] for e in entries if e["status"] in ("ok", "skipped") and e.get("metrics")]
        metrics = {m: aggregate([s.get(m) for s in scored]) for m in self.metric_names} if scored else None
        return {"files": len(entries), **count, "slices": slices, "seconds": round(elapsed, 3),
                "slices_per_second": round(slices / elapsed, 3) if elapsed > 0 and slices else None,
                "metrics": metrics}

    def write(self, state: str | None = None) -> None:
        """Write the manifest atomically (a crash leaves the previous complete version)."""
        if state is not None:
            self.data["state"] = state
            if state != "running":
                self.data["finished"] = now()
        self.data["updated"] = now()
        self.data["summary"] = self.summary()
        text = json.dumps(self.data, indent=2, default=str)
        with atomic_path(self.path, overwrite=True) as tmp:
            tmp.write_text(text + "\n")
