"""Render a :class:`recon.app.report.build.Report` as one self-contained HTML page.

Images are embedded as ``data:image/png;base64,`` URIs, the style sheet is inline, and there are no external
URLs or libraries: the page opens from disk in any browser, without a server. A few lines of inline script
record, once the page has loaded, how many images decoded (``data-images-loaded="k/n"`` on ``<body>``) and
how many script errors occurred (``data-console-errors``): the headless-browser test reads them.
Every text from the run (file names, parameters, error messages) is HTML-escaped.
"""
from __future__ import annotations

import base64
import math
from html import escape
from typing import TYPE_CHECKING
from recon.app.report.intervals import render_rows

if TYPE_CHECKING:  # pragma: no cover
    from recon.app.report.build import Figure, Report, TierTable

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1400px;
  padding:0 1em;color:#1d1d1f;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.agg td{background:#fafafa;font-style:italic}
td.best{font-weight:bold}.muted{color:#666;font-size:.85em}.bad{color:#a00}
figure{margin:.6em 0}.images{display:flex;flex-wrap:wrap;gap:0 1.5em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#444}dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.summary dt{font-weight:bold}dl.summary dd{margin:0;font-family:ui-monospace,monospace;font-size:.85em;
  word-break:break-all}
"""

#: records decoded images and script errors on <body> for automated checks
SCRIPT = """
(function(){var errors=0;var orig=console.error;
console.error=function(){errors++;return orig.apply(console,arguments);};
window.addEventListener('error',function(){errors++;},true);
window.addEventListener('load',function(){var imgs=document.images,ok=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){ok++;}}
document.body.setAttribute('data-images-loaded',ok+'/'+imgs.length);
document.body.setAttribute('data-console-errors',String(errors));});})();
"""


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def fmt(value: float | None, name: str = "") -> str:
    """A metric value for the table: 4 significant digits (PSNR: 2 decimals); ``-`` for missing."""
    if value is None or not math.isfinite(value):
        return "-"
    if name == "psnr":
        return f"{value:.2f}"
    return f"{value:.4g}"


def _figure(fig: Figure) -> str:
    return (f'<figure><img src="{data_uri(fig.png)}" alt="{escape(fig.alt)}">'
            f"<figcaption>{escape(fig.caption)}</figcaption></figure>")


def _best(table: TierTable) -> dict[str, float]:
    """Best per-file value of each column (by its direction), when at least two files have one."""
    out: dict[str, float] = {}
    for col in table.columns:
        vals = [v[col] for _, v in table.rows if v.get(col) is not None and math.isfinite(v[col])]
        if len(vals) > 1:
            out[col] = max(vals) if table.higher[col] else min(vals)
    return out


def _table(table: TierTable) -> str:
    arrows = {c: ("&uarr; higher is better" if table.higher[c] else "&darr; lower is better") for c in table.columns}
    head = "".join(f"<th>{escape(c)}<br><span class=\"muted\">{arrows[c]}</span></th>" for c in table.columns)
    best = _best(table)
    lines = [f'<table class="metrics" data-tier="{escape(table.tier)}"><thead><tr><th>file</th><th>method</th>'
             f"<th>acceleration</th><th>status</th>{head}<th>where the values come from</th></tr></thead><tbody>"]
    for rec, values in table.rows:
        cells = []
        for c in table.columns:
            v = values.get(c)
            cls = "num best" if c in best and v is not None and v == best[c] else "num"
            cells.append(f'<td class="{cls}">{fmt(v, c)}</td>')
        status = escape(rec.status) + (f' <span class="bad">{escape(rec.error)}</span>' if rec.error else "")
        accel = "-" if rec.acceleration is None else f"{rec.acceleration:g}x"
        lines.append(f"<tr><td>{escape(rec.name)}</td><td>{escape(rec.method or '-')}</td><td>{accel}</td>"
                     f"<td>{status}</td>{''.join(cells)}"
                     f"<td class=\"muted\">{escape(table.sources.get(rec.name, ''))}</td></tr>")
    for agg in table.aggregates:
        cells = []
        n = max((agg.values[c][2] for c in table.columns), default=0)
        for c in table.columns:
            mean, std, k = agg.values[c]
            cells.append(f'<td class="num">{fmt(mean, c)} &plusmn; {fmt(std, c)}</td>' if k else '<td class="num">-</td>')
        lines.append(f'<tr class="agg"><td colspan="4">{escape(agg.label)}: mean &plusmn; std (n = {n})</td>'
                     f"{''.join(cells)}<td></td></tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def render(report: Report) -> str:
    """The page's HTML text."""
    run = report.run
    summary = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in run.summary)
    summary += (f"<dt>report</dt><dd>recon report, recon {escape(report.version)}, {escape(report.generated)}, "
                f"tiers {escape(', '.join(report.tiers))}</dd>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>recon report: {escape(run.root.name or str(run.root))}</title>",
        f"<style>{STYLE}</style>",
        f"<script>{SCRIPT}</script>",
        "</head><body>",
        f"<h1>recon report: {escape(str(run.root))}</h1>",
        f'<p class="muted">{escape(run.kind)} run, {sum(f.usable for f in run.files)} reconstruction(s) '
        f"of {len(run.files)} file(s)</p>",
        '<h2 id="summary">Run summary</h2>',
        f'<dl class="summary">{summary}</dl>',
    ]
    if run.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in run.notes) + "</ul>")
    parts.append('<h2 id="metrics">Metrics</h2>')
    parts.append('<p class="muted">Per file, then mean &plusmn; sample standard deviation (ddof 1) over the files '
                 "with a value; the best file value of each column is bold. Pixel metrics follow fastMRI's "
                 "definitions on fastMRI's crop; metrics the run did not store are computed against the reference "
                 "named in the last column.</p>")
    for table in report.tables:
        parts.append(f'<h3 id="tier-{escape(table.tier)}">{escape(table.title)}</h3>')
        parts.append(_table(table))
    if report.plots:
        parts.append('<h2 id="plots">Metric vs acceleration</h2>')
        parts += [_figure(f) for f in report.plots]

    parts.append(render_rows(getattr(report, "intervals", [])))
    parts.append('<h2 id="images">Images</h2>')
    parts.append('<p class="muted">Middle slice of each reconstruction; the reference and the reconstruction share '
                 "a grey scale; error, uncertainty and hallucination maps carry their own colour bars.</p>")
    parts.append('<div class="images">' + "".join(_figure(f) for f in report.images) + "</div>")
    parts.append(f'<p class="muted">Generated in {report.seconds:.1f} s.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
