"""Static HTML reports: one page per run, one index for ``learnmech lab``."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from learnmech.lab.records import Metric, TrialResult
from learnmech.studies.base import Figure

__all__ = ["write_index", "write_run_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5}.pass{color:#0a7d28;font-weight:600}.fail{color:#b00020;font-weight:600}
.na{color:#777}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%;border:1px solid #eee}code,pre{background:#f7f7f7;font-size:.85em}
pre{padding:.6em;overflow-x:auto}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _verdict_cell(passed: bool | None) -> str:
    if passed is None:
        return '<span class="na">reported</span>'
    return '<span class="pass">pass</span>' if passed else '<span class="fail">fail</span>'


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _study_doc(study: Any) -> str:
    import sys

    mod = sys.modules.get(type(study).__module__)
    return (mod.__doc__ if mod and mod.__doc__ else study.summary).strip()


def write_run_report(
    outdir: Path,
    info: dict[str, Any],
    study: Any,
    metrics: Sequence[Metric],
    figures: Sequence[Figure],
    trials: Sequence[TrialResult],
) -> Path:
    """Write ``outdir/report.html`` (figures embedded, so the page is self-contained)."""
    outdir.mkdir(parents=True, exist_ok=True)
    verdict = info.get("verdict") or "n/a"
    vclass = {"pass": "pass", "fail": "fail"}.get(verdict, "na")
    rows = "".join(
        f"<tr><td><code>{html.escape(m.name)}</code></td><td>{_fmt(m.value)}</td>"
        f"<td>{_fmt(m.stderr)}</td>"
        f"<td>{html.escape(m.comparator) if m.tolerance is not None else ''}"
        f" {_fmt(m.tolerance)}</td><td>{_verdict_cell(m.passed)}</td>"
        f"<td>{html.escape(m.description or '')}</td></tr>"
        for m in metrics
    )
    figs = "".join(
        f"<figure>{_img(f.path)}<figcaption>{html.escape(f.caption)}</figcaption></figure>"
        for f in figures
        if f.path.exists()
    )
    status_counts: dict[str, int] = {}
    for t in trials:
        status_counts[t.status] = status_counts.get(t.status, 0) + 1
    errors = [t for t in trials if t.status != "ok"][:20]
    err_rows = "".join(
        f"<tr><td>{html.escape(json.dumps(t.point))}</td><td>{t.seed}</td><td>{t.status}</td>"
        f"<td><pre>{html.escape((t.error or '')[:800])}</pre></td></tr>"
        for t in errors
    )
    prov = info.get("provenance") or {}
    config = json.dumps(info.get("config"), indent=2, sort_keys=True)
    err_table = (
        "<table><tr><th>point</th><th>seed</th><th>status</th><th>error</th></tr>"
        f"{err_rows}</table>"
        if err_rows
        else ""
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(info["study"])} · {html.escape(info["id"])}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(study.title)}</h1>
<p>Study <code>{html.escape(info["study"])}</code> · run <code>{html.escape(info["id"])}</code> ·
scale <code>{html.escape(str(info.get("scale")))}</code> · verdict
<span class="{vclass}">{html.escape(verdict)}</span></p>
<div style="white-space:pre-wrap;font-size:.9em">{html.escape(_study_doc(study))}</div>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>value</th><th>SE</th><th>tolerance</th><th>verdict</th><th>meaning</th></tr>
{rows}</table>
<h2>Figures</h2>{figs or '<p class="na">no figures</p>'}
<h2>Trials</h2><p>{", ".join(f"{k}: {v}" for k, v in sorted(status_counts.items()))}</p>
{err_table}
<h2>Configuration</h2><pre>{html.escape(config)}</pre>
<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=2, sort_keys=True, default=str))}</pre>
<p class="na">started {_fmt(info.get("started_at"))} · wall time {_fmt(info.get("wall_time"))} s</p>
</body></html>"""
    path = outdir / "report.html"
    _atomic_write(path, page)
    return path


def write_index(path: Path, entries: Sequence[dict[str, Any]]) -> Path:
    """An index page linking each study's report with its verdict and headline metrics."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in entries:
        report = e.get("report")
        link = (
            f'<a href="{html.escape(str(Path(report).relative_to(path.parent)))}">report</a>'
            if report
            else ""
        )
        verdict = e.get("verdict", "n/a")
        vclass = {"pass": "pass", "fail": "fail"}.get(verdict, "na")
        ms = "<br>".join(
            f"<code>{html.escape(k)}</code> = {_fmt(v['value'])}"
            for k, v in list((e.get("metrics") or {}).items())[:4]
        )
        rows.append(
            f"<tr><td><code>{html.escape(e['study'])}</code></td>"
            f"<td>{html.escape(e.get('title', ''))}</td>"
            f'<td class="{vclass}">{html.escape(verdict)}</td><td>{ms}</td><td>{link}</td></tr>'
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>learnmech lab</title>
<style>{_CSS}</style></head><body><h1>learnmech lab</h1>
<table><tr><th>study</th><th>claim</th><th>verdict</th><th>headline metrics</th><th></th></tr>
{"".join(rows)}</table></body></html>"""
    _atomic_write(path, page)
    return path
