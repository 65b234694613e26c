"""Batch progress on stderr: a live tqdm bar (files, slices, rate, ETA) on a terminal, one plain log line
per finished file otherwise (logs, CI, ``nohup``)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class BatchProgress:
    """Reports each finished file.

    Parameters
    ----------
    total: files to reconstruct in this run (skipped ones excluded).
    stream: where to write (stderr).
    live: a tqdm bar (True), plain lines (False), or decide by ``stream.isatty()`` (None).
    """

    def __init__(self, total: int, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self.done = 0
        self.slices = 0
        self._t0 = time.perf_counter()
        if live is None:
            live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        if live and total > 0:
            # deferred: loads tqdm, which importing recon.app.batch.progress does not
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=self.stream, dynamic_ncols=True,
                             desc="recon batch", smoothing=0.1)

    def log(self, message: str) -> None:
        """A message that does not break the bar."""
        if self._bar is not None:
            self._bar.write(f"recon batch: {message}", file=self.stream)
        else:
            self.stream.write(f"recon batch: {message}\n")
            self.stream.flush()

    def update(self, result: dict[str, Any]) -> None:
        """Account for one finished file (a :func:`recon.app.batch.tasks.run_task` result)."""
        self.done += 1
        self.slices += int(result.get("slices") or 0)
        rate = self.slices / max(time.perf_counter() - self._t0, 1e-9)
        if self._bar is not None:
            if result["status"] != "ok":
                self._bar.write(f"recon batch: FAILED {result['rel']}: {result['error']['message']}",
                                file=self.stream)
            self._bar.set_postfix_str(f"{self.slices} slices, {rate:.2f} slices/s", refresh=False)
            self._bar.update(1)
            return
        prefix = f"[{self.done}/{self.total}]"
        if result["status"] == "ok":
            self.log(f"{prefix} ok {result['rel']} ({result.get('slices')} slices, {result['seconds']:.2f} s; "
                     f"{rate:.2f} slices/s overall)")
        else:
            error = result.get("error") or {}
            self.log(f"{prefix} FAILED {result['rel']}: {error.get('type')}: {error.get('message')}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
