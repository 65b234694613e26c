"""``recon report RUN_DIR``: one self-contained HTML page per run (images, error / uncertainty maps, metric
tables per tier, per file and aggregate, metric vs acceleration plots).

* :mod:`recon.report.collect`: a run folder (``recon batch`` OUTPUT_DIR, ``recon demo`` folder, or any folder
  of reconstruction ``.h5`` files) -> :class:`~recon.report.collect.RunData`;
* :mod:`recon.report.build`: metrics, pictures, :func:`build_report` (writes ``RUN_DIR/report.html``);
* :mod:`recon.report.figures`: the PNGs (matplotlib, Agg); :mod:`recon.report.html`: the page.
"""
from __future__ import annotations

from recon.report.build import REPORT_NAME, build_report
from recon.report.collect import RunData, collect_run

__all__ = ["REPORT_NAME", "RunData", "build_report", "collect_run"]
