"""``recon report RUN_DIR``: one self-contained HTML page per run (images, error / uncertainty maps, metric
tables per tier, per file and aggregate, metric vs acceleration plots).

* :mod:`recon.app.report.collect`: a run folder (``recon batch`` OUTPUT_DIR, ``recon demo`` folder, or any folder
  of reconstruction ``.h5`` files) -> :class:`~recon.app.report.collect.RunData`;
* :mod:`recon.app.report.build`: metrics, pictures, :func:`build_report` (writes ``RUN_DIR/report.html``);
* :mod:`recon.app.report.figures`: the PNGs (matplotlib, Agg); :mod:`recon.app.report.html`: the page.
"""
from __future__ import annotations

from recon.app.report.build import REPORT_NAME, build_report
from recon.app.report.collect import RunData, collect_run

__all__ = ["REPORT_NAME", "RunData", "build_report", "collect_run"]
