"""Static HTML reports: one page per run, one index for ``learnmech lab``."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from learnmech.records import Figure, Metric, TrialResult

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
    *,
    controls: Sequence[dict[str, Any]] = (),
    note: str | None = None,
) -> Path:
    """Write ``outdir/report.html`` (figures embedded, so the page is self-contained);
    ``note`` is shown in place of figures that could not be drawn.

    ``controls`` are the stored negative-control runs of the study (newest per control),
    shown in the "Can this test fail?" section next to the declared controls."""
    outdir.mkdir(parents=True, exist_ok=True)
    verdict = info.get("verdict") or "n/a"
    vclass = {"pass": "pass", "fail": "fail"}.get(verdict, "na")
    rows = "".join(_claim_row(m) for m in metrics)
    control_html = _controls_section(study, controls or [])
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
        f"<tr><td>{html.escape(json.dumps(t.point))}</td><td>{t.seed}</td>"
        f"<td>{html.escape(str(t.status))}</td>"
        f"<td><pre>{html.escape((t.error or '')[:800])}</pre></td></tr>"
        for t in errors
    )
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(status_counts.items()))
    note_html = f'<p class="fail">{html.escape(note)}</p>' if note else ""
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
<h2>Claims</h2>
<p class="na">Each scored claim passes only when its confidence bound (at the stated
one-sided level, Student's t with the estimate's degrees of freedom) clears a tolerance fixed
before the run. Claim set <code>{html.escape(str(prov.get("claims_hash", "")))}</code>.</p>
<table><tr><th>claim</th><th>kind</th><th>value ± SE</th><th>expected</th><th>bound</th>
<th>tolerance</th><th>level</th><th>verdict</th><th>meaning</th></tr>
{rows}</table>
{control_html}
<h2>Figures</h2>{note_html}{figs or ("" if note else '<p class="na">no figures</p>')}
<h2>Trials</h2><p>{html.escape(counts)}</p>
{err_table}
<h2>Configuration</h2><pre>{html.escape(config)}</pre>
<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=2, sort_keys=True, default=str))}</pre>
<p class="na">started {_fmt(info.get("started_at"))} · wall time {_fmt(info.get("wall_time"))} s</p>
</body></html>"""
    path = outdir / "report.html"
    _atomic_write(path, page)
    return path


def _claim_row(m: Metric) -> str:
    val = _fmt(m.value) + (f" ± {_fmt(m.stderr)}" if m.stderr else "")
    tol = f"{html.escape(m.comparator)} {_fmt(m.tolerance)}" if m.tolerance is not None else ""
    if m.kind in ("within", "equivalence", "slope") and m.tolerance is not None:
        tol = f"|dev| ≤ {_fmt(m.tolerance)}"
    level = f"{m.level:.3g}" if m.level else ""
    return (
        f"<tr><td><code>{html.escape(m.name)}</code></td><td>{html.escape(m.kind)}</td>"
        f"<td>{val}</td><td>{_fmt(m.expected)}</td><td>{_fmt(m.bound)}</td><td>{tol}</td>"
        f"<td>{level}</td><td>{_verdict_cell(m.passed)}</td>"
        f"<td>{html.escape(m.description or '')}</td></tr>"
    )


def _controls_section(study: Any, runs: Sequence[dict[str, Any]]) -> str:
    """ "Can this test fail?": each declared negative control, the claims it must make
    fail, and what its newest stored run did."""
    import fnmatch

    declared = getattr(study, "controls", ())
    if not declared:
        return (
            '<h2>Can this test fail?</h2><p class="fail">This study declares no negative '
            "control.</p>"
        )
    by_name = {r["control"]: r for r in runs}
    rows = []
    for c in declared:
        r = by_name.get(c.name)
        if r is None:
            outcome = '<span class="na">not run in this store</span> '
            outcome += f"(<code>learnmech run {html.escape(study.name)} --control "
            outcome += f"{html.escape(c.name)}</code>)"
        else:
            hit = {
                n: p
                for n, p in r["claims"].items()
                if any(fnmatch.fnmatchcase(n, pat) for pat in c.fails)
            }
            ok = bool(hit) and all(p is False for p in hit.values())
            cls = "pass" if ok else "fail"
            word = "failed as it must" if ok else "did NOT fail as it must"
            detail = ", ".join(
                f"<code>{html.escape(n)}</code> {'failed' if p is False else 'passed'}"
                for n, p in hit.items()
            )
            outcome = f'<span class="{cls}">{word}</span> (run <code>{html.escape(r["id"])}'
            outcome += f"</code>, {html.escape(str(r['scale']))}): {detail or 'no such claim'}"
        rows.append(
            f"<tr><td><code>{html.escape(c.name)}</code></td>"
            f"<td><code>{html.escape(json.dumps(c.overrides, sort_keys=True))}</code></td>"
            f"<td>{html.escape(', '.join(c.fails))}</td><td>{html.escape(c.why)}</td>"
            f"<td>{outcome}</td></tr>"
        )
    return (
        "<h2>Can this test fail?</h2><p>Negative controls: configurations where the theory "
        "must fail. A claim that cannot fail here would pass whatever the data.</p>"
        "<table><tr><th>control</th><th>overrides</th><th>claims that must fail</th>"
        f"<th>why</th><th>newest run</th></tr>{''.join(rows)}</table>"
    )


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
        ctl = e.get("controls") or {}
        ctl_html = "<br>".join(
            f'<code>{html.escape(n)}</code> <span class="{"pass" if ok else "fail"}">'
            f"{'failed as it must' if ok else 'did not fail'}</span>"
            for n, ok in ctl.items()
        )
        rows.append(
            f"<tr><td><code>{html.escape(e['study'])}</code></td>"
            f"<td>{html.escape(e.get('title', ''))}</td>"
            f'<td class="{vclass}">{html.escape(verdict)}</td><td>{ms}</td><td>{ctl_html}</td>'
            f"<td>{link}</td></tr>"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>learnmech lab</title>
<style>{_CSS}</style></head><body><h1>learnmech lab</h1>
<table><tr><th>study</th><th>claim</th><th>verdict</th><th>headline claims</th>
<th>negative controls</th><th></th></tr>
{"".join(rows)}</table></body></html>"""
    _atomic_write(path, page)
    return path
