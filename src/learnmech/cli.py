"""The ``learnmech`` command.

Exit codes: 0 — done, and every scored claim passed (a control: every targeted claim
failed, as it must); 1 — done, and the verdict is fail (a control: some targeted claim
survived; ``plan``: a check stopped the plan); 2 — bad input: one line on stderr, before
anything is written; 130 — interrupted (finished trials are kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from learnmech import __version__
from learnmech.errors import RunInterrupted, UserError

EXIT_USAGE = 2
EXIT_FAIL = 1


def _exit_for(res: Any) -> None:
    """Exit 1 when a run's outcome is a failure (see the module docstring)."""
    bad = not res.control_ok if res.control else res.verdict == "fail"
    if bad:
        raise click.exceptions.Exit(EXIT_FAIL)


class _Fail(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [_parse_value(p.strip()) for p in text.split(",") if p.strip()]
    return text


def _parse_sets(items: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise _Fail(f"--set expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key:
            raise _Fail(f"--set expects key=value, got {item!r}")
        bad = sorted({c for c in raw if c.isdigit() and not c.isascii()})
        if bad:
            # Python reads '１２' as 12; a config value typed that way is a mistake
            raise _Fail(
                f"--set {key}: {raw.strip()!r} has non-ASCII digits ({''.join(bad)}); "
                "type numbers with 0-9"
            )
        values[key] = _parse_value(raw.strip())
        sources[key] = f"--set {item}"
    return values, sources


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While a ``--json`` command works, anything written to stdout — a library's print,
    Ray's messages when a node dies, a C extension writing to file descriptor 1 — goes to
    stderr instead, so stdout carries the one JSON object alone (issue #19, item 8)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _progress(quiet: bool, json_out: bool = False):  # type: ignore[no-untyped-def]
    """A rich progress bar on stderr; returns (callback, context manager). With
    ``json_out`` the context also keeps stdout for the JSON result alone."""
    if json_out:
        return None, _stdout_to_stderr()
    if quiet:
        return None, contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = prog.add_task("starting", total=None)

    def cb(message: str, done: int, total: int) -> None:
        prog.update(task, description=message, completed=done, total=max(total, 1))

    return cb, prog


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="learnmech")
def cli() -> None:
    """learnmech — predict training dynamics from coarse statistics, measure them in real
    PyTorch runs, and score the prediction."""


@cli.command("studies")
@click.option("--controls", is_flag=True, help="Also list each study's negative controls.")
def studies_cmd(controls: bool) -> None:
    """The study catalog, one line each."""
    from learnmech.studies import list_studies

    studies = list_studies()
    width = max(len(s.name) for s in studies)
    for s in studies:
        click.echo(f"{s.name:<{width}} [{s.pillar}] {s.summary}")
        if controls:
            for c in s.controls:
                click.echo(
                    f"{'':<{width}}   control {c.name}: {c.why} (must fail: {', '.join(c.fails)})"
                )


_store_opt = click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("runs/learnmech.duckdb"),
    show_default=True,
    help="DuckDB store file.",
)


@cli.command("run")
@click.argument("study")
@click.option("--scale", type=click.Choice(["quick", "full"]), default="quick", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field.")
@click.option("--seeds", type=int, default=None, help="Seeds per config point.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Local worker processes.")
@click.option("--device", type=str, default=None, help="cpu or cuda (default: cuda if available).")
@_store_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option(
    "--fresh", is_flag=True, help="Re-measure every trial instead of reusing stored ones."
)
@click.option(
    "--control",
    type=str,
    default=None,
    help="Run one of the study's negative controls (a configuration where its theory must "
    "fail); see `learnmech studies --controls`.",
)
def run_cmd(
    study: str,
    scale: str,
    sets: tuple[str, ...],
    seeds: int | None,
    executor: str,
    workers: int,
    device: str | None,
    store: Path,
    as_json: bool,
    quiet: bool,
    fresh: bool,
    control: str | None,
) -> None:
    """Run STUDY: predict, measure, compare, report."""
    from learnmech.lab.runner import run_study

    overrides, sources = _parse_sets(sets)
    if seeds is not None and seeds < 1:
        raise _Fail(f"--seeds must be a positive integer, got {seeds}")
    if workers < 1:
        raise _Fail(f"--workers must be a positive integer, got {workers}")
    _check_device(device)
    _check_store_path(store)
    from learnmech.studies import get_study

    st = get_study(study)
    if control is not None:
        ctl = st.control(control)
        scale = ctl.scale
        cfg = st.config(scale, {**ctl.overrides, **overrides}, seeds, sources)
    else:
        cfg = st.config(scale, overrides, seeds, sources)  # validate before any output
    from learnmech.lab.provenance import resolve_device
    from learnmech.studies.base import check_memory

    check_memory(st, cfg, resolve_device(device))
    if executor == "ray":
        from learnmech.lab.executors import RayExecutor

        RayExecutor.check_available()
        address = os.environ.get("RAY_ADDRESS")
        if address:  # one line now, not minutes of retries inside ray.init
            from learnmech.lab.executors import check_reachable

            check_reachable(address)
    cb, ctx = _progress(quiet or as_json, json_out=as_json)
    with ctx:
        res = run_study(
            study,
            scale=scale,
            overrides=overrides,
            sources=sources,
            seeds=seeds,
            executor=executor,
            workers=workers,
            store=store,
            device=device,
            progress=cb,
            fresh=fresh,
            control=control,
        )
    if as_json:
        click.echo(json.dumps(res.as_json()))
    else:
        _print_result(res)
    _exit_for(res)


def _check_device(device: str | None) -> None:
    """``--device`` names a device this machine has (one line and exit 2 otherwise)."""
    if device is None:
        return
    from learnmech.lab.provenance import resolve_device

    try:
        resolve_device(device)
    except UserError as err:
        raise _Fail(f"--{err}") from None


def _check_writable_folder(folder: Path, what: str) -> None:
    """Before any work, without creating anything: the nearest existing ancestor of
    ``folder`` is a folder that takes a file (a temporary file, removed at once)."""
    import tempfile

    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(probe))
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise _Fail(f"{what}: cannot write in {folder} ({err.strerror or err})") from None


def _check_store_path(store: Path) -> None:
    """Before any work: the store is a file, in a folder that exists (or is made now) and
    takes a file (issue #19, item 6: the run used to start, then fail with a trace)."""
    if store.exists() and store.is_dir():
        raise _Fail(f"--store {store} is a directory, expected a .duckdb file")
    _check_writable_folder(store.parent, f"--store {store}")
    if store.exists():  # an existing file must be a learnmech store (read-only: no writes)
        from learnmech.lab.store import Store

        Store(store, read_only=True).close()


def _print_result(res) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # paths and stored strings are text, not markup: '[/x]/s.duckdb' crashed the print
    # after a finished run, and 'a[bold]b' lost its brackets (issue #19, item 7)
    con = Console()
    table = Table(title=escape(f"{res.study} · run {res.run_id} · verdict {res.verdict}"))
    for col in ("claim", "kind", "value", "SE", "bound", "tolerance", "verdict"):
        table.add_column(col)
    for m in res.metrics:
        verdict = "" if m.passed is None else ("[green]pass[/]" if m.passed else "[red]fail[/]")
        tol = f"{m.comparator} {m.tolerance:.4g}" if m.tolerance is not None else ""
        if m.kind in ("within", "equivalence", "slope") and m.tolerance is not None:
            # a curve claim has no single expected value (its value is already a deviation
            # in tolerance units): `learnmech run scaling-laws` crashed printing it
            centre = f" − {m.expected:.4g}" if m.expected is not None else ""
            tol = f"|v{centre}| ≤ {m.tolerance:.4g}"
        se = f"{m.stderr:.3g}" if m.stderr else ""
        bound = f"{m.bound:.4g}" if m.bound is not None and m.passed is not None else ""
        table.add_row(escape(m.name), m.kind, f"{m.value:.4g}", se, bound, escape(tol), verdict)
    con.print(table)
    if res.control:
        word = "[green]failed as it must[/]" if res.control_ok else "[red]did NOT fail[/]"
        con.print(
            f"negative control {escape(res.control)}: targeted claims {word} "
            f"(failed: {escape(', '.join(res.control_failed) or 'none')}; "
            f"passed: {escape(', '.join(res.control_survived) or 'none')})"
        )
    con.print(f"trials run: {res.trials_run}, reused: {res.trials_skipped}")
    for f in res.failed[:5]:
        con.print(f"[red]failed trial[/] {escape(str(f))}")
    if res.report:
        con.print(f"report: {escape(str(res.report))}")


@cli.command("lab")
@click.option("--scale", type=click.Choice(["quick", "full"]), default="quick", show_default=True)
@_store_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per run.")
@click.option("--quiet", is_flag=True)
@click.option(
    "--study", "only", multiple=True, metavar="NAME", help="Run only these studies (repeatable)."
)
@click.option(
    "--controls/--no-controls",
    default=False,
    show_default=True,
    help="Also run every negative control (at its own scale) and show whether it failed.",
)
def lab_cmd(
    scale: str, store: Path, as_json: bool, quiet: bool, only: tuple[str, ...], controls: bool
) -> None:
    """Run every study (or --study ones) and write an index page beside the store."""
    from learnmech.lab.runner import run_study
    from learnmech.report.html import write_index
    from learnmech.studies import get_study, list_studies

    _check_store_path(store)
    studies = [get_study(n) for n in only] if only else list_studies()
    entries = []
    failed = False
    for s in studies:
        runs = [None, *(c.name for c in s.controls)] if controls else [None]
        entry: dict[str, Any] = {}
        for control in runs:
            cb, ctx = _progress(quiet or as_json, json_out=as_json)
            with ctx:
                res = run_study(s.name, scale=scale, store=store, progress=cb, control=control)
            if control is None:
                entry = res.as_json() | {"title": s.title, "controls": {}}
                failed |= res.verdict == "fail"
            else:
                entry["controls"][control] = res.control_ok
                failed |= not res.control_ok
            if as_json:
                click.echo(json.dumps(res.as_json()))
            else:
                _print_result(res)
        entries.append(entry)
    index = write_index(store.parent / "index.html", entries)
    if not as_json:
        click.echo(f"index: {index}")
    if failed:
        raise click.exceptions.Exit(EXIT_FAIL)


@cli.group("runs")
def runs_grp() -> None:
    """Inspect and export stored runs."""


@runs_grp.command("list")
@_store_opt
@click.option("--json", "as_json", is_flag=True)
def runs_list(store: Path, as_json: bool) -> None:
    from learnmech.lab.store import Store

    with Store(store, read_only=True) as st:
        rows = st.runs()
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        wall = f"{r['wall_time']:.1f}s" if r["wall_time"] is not None else "-"
        click.echo(
            f"{r['id']:<24} {r['study']:<12} {r['scale']:<6} {r['status']:<22} "
            f"{r['verdict'] or '-':<5} trials={r['trials']:<5} {wall:>8}  {r['started_at']}"
        )


@runs_grp.command("show")
@click.argument("run")
@_store_opt
@click.option("--json", "as_json", is_flag=True)
def runs_show(run: str, store: Path, as_json: bool) -> None:
    from learnmech.lab.store import Store

    with Store(store, read_only=True) as st:
        info = st.run(run)
        metrics = st.metrics(info["id"])
        errors = st.errors(info["id"])
    if as_json:
        failed = [{"point": p, "seed": sd, "error": e} for p, sd, e in errors]
        click.echo(
            json.dumps(
                info | {"metrics": [m.as_dict() for m in metrics], "errors": failed}, default=str
            )
        )
        return
    for k in (
        "id",
        "study",
        "scale",
        "seeds",
        "status",
        "verdict",
        "started_at",
        "finished_at",
        "wall_time",
        "git_sha",
        "device",
        "report",
    ):
        click.echo(f"{k:>12}: {info.get(k)}")
    click.echo(f"{'config':>12}: {json.dumps(info['config'], sort_keys=True)}")
    for m in metrics:
        tol = "" if m.tolerance is None else f" (tol {m.comparator} {m.tolerance:.4g})"
        verdict = "" if m.passed is None else (" pass" if m.passed else " FAIL")
        click.echo(f"  {m.name}: {m.value:.5g}{tol}{verdict}")
    if errors:
        click.echo(f"{'errors':>12}: {len(errors)} trial(s) failed; the last line of each:")
        varying = sorted(
            {k for p, _, _ in errors for k in p if any(q.get(k) != p[k] for q, _, _ in errors)}
        )
        for point, seed, err in errors[:5]:
            last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "")
            where = "".join(f"{k}={point.get(k)} " for k in varying)
            click.echo(f"  {where}seed {seed}: {last}")
        if len(errors) > 5:
            click.echo(f"  … and {len(errors) - 5} more (--json has them all, with tracebacks)")


@runs_grp.command("export")
@click.argument("run")
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: beside the store, in <run>/export).",
)
@_store_opt
def runs_export(run: str, fmt: str, out: Path | None, store: Path) -> None:
    from learnmech.lab.store import Store, safe_run_id

    with Store(store, read_only=True) as st:
        run_id = st.resolve(run)
        paths = st.export(run_id, fmt, out or store.parent / safe_run_id(run_id) / "export")
    for p in paths:
        click.echo(str(p))


@cli.command("report")
@click.argument("run")
@_store_opt
def report_cmd(run: str, store: Path) -> None:
    """(Re)render the HTML report of RUN from the store."""
    from learnmech.lab.runner import render_report
    from learnmech.lab.store import Store

    with Store(store, read_only=True) as st:
        path = render_report(st, st.resolve(run))
    click.echo(str(path))


@cli.group("fit")
def fit_grp() -> None:
    """Fit empirical laws to data."""


def _floats(text: str | None, name: str) -> list[float]:
    if not text:
        return []
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise _Fail(f"--{name} takes comma-separated numbers, got {text!r}") from None
    return vals


@fit_grp.command("scaling")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.option(
    "--law",
    default="chinchilla",
    show_default=True,
    help="chinchilla, saturating, kaplan, bnsl (1 break), bnsl2, bnsl3, bnsl4.",
)
@click.option("--n-col", default=None, help="Parameter-count column (default: N, params, …).")
@click.option("--d-col", default=None, help="Token column (default: D, tokens, …).")
@click.option("--c-col", default=None, help="Compute column; D = C/(6N) when D is absent.")
@click.option("--x-col", default=None, help="Input column for single-input laws.")
@click.option("--loss-col", default=None, help="Loss column (default: loss, L, …).")
@click.option(
    "--drop-highest",
    type=int,
    default=0,
    show_default=True,
    help="Drop this many highest-loss rows first.",
)
@click.option("--huber-delta", type=float, default=1e-3, show_default=True)
@click.option(
    "--bootstrap",
    type=int,
    default=0,
    show_default=True,
    help="Bootstrap replicates for standard errors and intervals.",
)
@click.option(
    "--cluster", default=None, help="Resample whole clusters sharing this input's value (e.g. N)."
)
@click.option(
    "--groups",
    "groups_col",
    default=None,
    help="Column of labels (e.g. run ids) whose rows the bootstrap resamples together.",
)
@click.option(
    "--strata",
    default=None,
    help="Resample within each value of this input (e.g. N: every model size keeps its "
    "number of rows in every replicate).",
)
@click.option(
    "--holdout",
    type=int,
    default=0,
    show_default=True,
    help="Also fit without the K largest values of the first input and score "
    "the extrapolation to them.",
)
@click.option("--compute", default=None, help="Compute budgets C for N_opt, D_opt (chinchilla).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a figure of data, fit and extrapolation (PNG).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fit_scaling_cmd(
    csv_file: Path,
    law: str,
    n_col: str | None,
    d_col: str | None,
    c_col: str | None,
    x_col: str | None,
    loss_col: str | None,
    drop_highest: int,
    huber_delta: float,
    bootstrap: int,
    cluster: str | None,
    groups_col: str | None,
    strata: str | None,
    holdout: int,
    compute: str | None,
    seed: int,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Fit a scaling law to FILE.csv (Huber regression on log loss from a grid of starts)."""
    import warnings

    import numpy as np

    from learnmech.laws import extrapolation_score, fit_law, get_law
    from learnmech.laws.io import read_scaling_csv

    lw = get_law(law)
    if bootstrap < 0:
        raise _Fail(f"--bootstrap must be non-negative, got {bootstrap}")
    if holdout < 0:
        raise _Fail(f"--holdout must be non-negative, got {holdout}")
    budgets = _floats(compute, "compute")
    if plot is not None and plot.suffix.lower() != ".png":
        raise _Fail(f"--plot writes PNG files; got {plot}")
    if plot is not None:
        _check_writable_folder(plot.parent, "--plot")
    cols = {"N": n_col, "D": d_col, "C": c_col, "x": x_col, "loss": loss_col}
    cols["groups"] = groups_col
    data = read_scaling_csv(csv_file, lw, columns=cols, drop_highest=drop_highest)
    used = data.pop("_columns")
    groups = data.pop("_groups", None)
    inputs = {k: v for k, v in data.items() if k != "loss"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported in the output instead
        res = fit_law(
            lw,
            data["loss"],
            huber_delta=huber_delta,
            bootstrap=bootstrap,
            cluster=cluster,
            groups=groups,
            strata=strata,
            seed=seed,
            **inputs,
        )
        score = (
            extrapolation_score(
                lw, data["loss"], holdout=holdout, huber_delta=huber_delta, **inputs
            )
            if holdout
            else None
        )
    out = res.as_dict() | {"file": str(csv_file), "columns": used, "dropped": drop_highest}
    if budgets:
        opt = res.compute_optimal(budgets)
        out["compute_optimal"] = {
            k: (
                np.asarray(v).tolist()
                if not isinstance(v, tuple)
                else [np.asarray(x).tolist() for x in v]
            )
            for k, v in opt.items()
        }
    if score is not None:
        out["extrapolation"] = {
            k: v
            for k, v in score.items()
            if k not in ("fit", "predicted", "observed", "test_inputs")
        }
    if plot is not None:
        from learnmech.report.plots import scaling_fit_figure

        plot.parent.mkdir(parents=True, exist_ok=True)  # checked writable before the fit
        scaling_fit_figure(res, score, plot)
        out["plot"] = str(plot)
    if as_json:
        click.echo(json.dumps(out, default=float))
        return
    _print_fit(out)


def _print_fit(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    boot = out.get("bootstrap")
    t = Table(title=f"{out['law']} fit · {out['points']} points · {out['starts']} starts")
    t.add_column("parameter")
    t.add_column("value", justify="right")
    if boot:
        t.add_column("SE (bootstrap)", justify="right")
        t.add_column("95% interval", justify="right")
    for k, v in out["params"].items():
        row = [k, f"{v:.5g}"]
        if boot:
            lo, hi = boot["interval95"][k]
            row += [f"{boot['stderr'][k]:.3g}", f"[{lo:.4g}, {hi:.4g}]"]
        t.add_row(*row)
    con.print(t)
    con.print(
        f"objective {out['objective']:.6g} (Huber δ = {out['huber_delta']:g} on log loss); "
        f"{100 * out['converged_fraction']:.1f}% of starts converged"
    )
    if boot:
        con.print(
            f"bootstrap: {boot['replicates']} replicates"
            + (f", clustered by {boot['cluster']}" if boot["cluster"] else "")
            + (f", within each {boot['strata']}" if boot.get("strata") else "")
        )
    if "compute_optimal" in out:
        co = out["compute_optimal"]
        for i, c in enumerate(co["C"]):
            line = (
                f"C = {c:.3g}: N_opt = {co['N_opt'][i]:.3g}, D_opt = {co['D_opt'][i]:.3g}, "
                f"D/N = {co['tokens_per_param'][i]:.3g}"
            )
            if "tokens_per_param_interval" in co:
                lo, hi = co["tokens_per_param_interval"]
                line += f" (95%: {lo[i]:.3g}–{hi[i]:.3g})"
            con.print(line)
    if "extrapolation" in out:
        e = out["extrapolation"]
        con.print(
            f"extrapolation to the {e['test_points']} runs with {e['held_out_by']} ≥ "
            f"{e['threshold']:.3g} (fit on {e['train_points']}): mean |error| "
            f"{100 * e['mean_abs_rel_error']:.2f}%, max {100 * e['max_abs_rel_error']:.2f}%"
        )
    for w in out["warnings"]:
        con.print(f"[yellow]warning:[/yellow] {escape(str(w))}")
    if "plot" in out:
        con.print(f"figure: {escape(str(out['plot']))}")


@cli.command("plan")
@click.argument("spec", metavar="SPEC|verify")
@click.argument("plan_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--budget", type=float, default=None, help="Compute budget of the planned run, FLOPs."
)
@click.option("--width", "target_width", type=int, default=None, help="Plan for this width.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for plan.json and plan.html (default: next to the store).",
)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="verify: read the planned run's losses (a 'loss' column) instead of training.",
)
@click.option("--seeds", type=int, default=None, help="verify: seeds of the planned run.")
@click.option("--device", type=str, default=None, help="cpu or cuda (default: cuda if available).")
@_store_opt
@click.option("--json", "as_json", is_flag=True, help="Print the plan (or verdict) as JSON.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def plan_cmd(
    spec: str,
    plan_dir: Path | None,
    budget: float | None,
    target_width: int | None,
    out: Path | None,
    csv_file: Path | None,
    seeds: int | None,
    device: str | None,
    store: Path,
    as_json: bool,
    quiet: bool,
) -> None:
    """Plan a run of your model family from small proxies (SPEC is module:function
    returning a learnmech.plan.PlanSpec), or ``plan verify PLAN_DIR`` to train the planned
    run (or read --csv) and score the prediction. Exit 1 when a check stops the plan."""
    import math

    from learnmech.plan import Plan, PlanStopped, make_plan, verify_plan

    _check_device(device)
    _check_store_path(store)
    cb, ctx = _progress(quiet or as_json, json_out=as_json)

    def say(msg: str) -> None:
        if cb is not None:
            cb(msg, 0, 0)

    if spec == "verify":
        if plan_dir is None:
            raise _Fail("plan verify needs the plan's folder (or its plan.json)")
        if seeds is not None and seeds < 1:
            raise _Fail(f"--seeds must be a positive integer, got {seeds}")
        p = Plan.load(plan_dir)
        with ctx:
            res = verify_plan(
                p, losses_csv=csv_file, seeds=seeds, store=store, device=device, progress=say
            )
        if as_json:
            from learnmech.plan.workflow import dumps

            click.echo(dumps(res, default=float))
        else:
            lo, hi = p.predicted_interval
            click.echo(
                f"verify {res['verdict'].upper()}: measured {res['measured_mean']:.4f} "
                f"({len(res['measured'])} runs) vs predicted {p.predicted_loss:.4f} "
                f"[{lo:.4f}, {hi:.4f}] — written to {p.path}"
            )
        if res["verdict"] == "fail":
            raise click.exceptions.Exit(EXIT_FAIL)
        return
    if plan_dir is not None:
        raise _Fail(f"unexpected argument {str(plan_dir)!r} (plan takes one SPEC)")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise _Fail(f"--budget must be a positive number of FLOPs, got {budget}")
    if target_width is not None and target_width < 1:
        raise _Fail(f"--width must be a positive integer, got {target_width}")
    if budget is None and target_width is None:
        raise _Fail("give --budget FLOPS or --width N")
    if out is not None:
        _check_writable_folder(out, "--out")
    from learnmech.plan import load_spec

    load_spec(spec)  # a bad spec is bad input: refused before any output
    try:
        with ctx:
            p = make_plan(
                spec,
                budget=budget,
                target_width=target_width,
                store=store,
                device=device,
                out=out,
                progress=say,
            )
    except PlanStopped as err:
        raise _Fail(f"plan stopped: {err}", code=EXIT_FAIL) from None
    if as_json:
        from learnmech.plan.workflow import dumps

        click.echo(dumps(p.as_dict() | {"path": p.path}, default=float))
        return
    click.echo(p.summary())
    for n in p.notes:
        click.echo(f"  note: {n}")
    click.echo(
        f"  written: {p.path} and plan.html; verify with: learnmech plan verify "
        f"{Path(p.path).parent}"
    )


def _load_array(path: Path, what: str) -> Any:
    import numpy as np

    if not path.is_file():
        raise _Fail(f"{what}: no such file {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise _Fail(f"{what}: {path} is not a readable .npy array ({err})") from None
    if not isinstance(arr, np.ndarray):
        raise _Fail(f"{what}: {path} holds several arrays; give one array saved with np.save")
    if arr.dtype.kind not in "fiu":
        raise _Fail(f"{what}: {path} holds {arr.dtype} values, expected numbers")
    return arr


@cli.command("kernels")
@click.argument("net_file", metavar="NET.json", type=click.Path(path_type=Path))
@click.argument("x_file", metavar="X.npy", type=click.Path(path_type=Path))
@click.option(
    "--x2",
    "x2_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Second inputs (.npy); default: the symmetric kernel of X.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the kernels (.npz with arrays nngp and ntk).",
)
@click.option(
    "--get",
    "get_",
    default="nngp,ntk",
    show_default=True,
    help="Comma-separated subset of nngp,ntk.",
)
@click.option(
    "--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True
)
@click.option(
    "--budget-gb",
    type=float,
    default=2.0,
    show_default=True,
    help="Memory the working set may use.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def kernels_cmd(
    net_file: Path,
    x_file: Path,
    x2_file: Path | None,
    out_file: Path,
    get_: str,
    dtype: str,
    budget_gb: float,
    as_json: bool,
    quiet: bool,
) -> None:
    """Infinite-width NNGP and NTK of the network in NET.json on the inputs in X.npy.

    NET.json is a list of layers, e.g. [{"type": "Conv", "out": 64, "kernel_size": [3, 3]},
    {"type": "Activation", "fn": "relu"}, {"type": "GlobalAvgPool"}, {"type": "Dense",
    "out": 1}] (see learnmech.theory.stax.from_spec); X.npy holds (n, d), (n, C, L) or
    (n, C, H, W) inputs. The .npz is written whole or not at all."""
    import math
    import os
    import tempfile
    import time

    import numpy as np
    import torch

    from learnmech.theory import stax

    if not math.isfinite(budget_gb) or budget_gb <= 0:
        raise _Fail(f"--budget-gb must be a positive number, got {budget_gb}")
    if out_file.suffix.lower() != ".npz":
        raise _Fail(f"--out writes a .npz file; got {out_file}")
    get = tuple(g.strip() for g in get_.split(",") if g.strip())
    if not get or set(get) - {"nngp", "ntk"}:
        raise _Fail(f"--get must be a comma-separated subset of nngp,ntk; got {get_!r}")
    if not net_file.is_file():
        raise _Fail(f"NET.json: no such file {net_file}")
    try:
        spec = json.loads(net_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _Fail(f"NET.json: {net_file} is not valid JSON ({err})") from None
    try:
        net = stax.from_spec(spec)
    except (TypeError, ValueError) as err:
        raise _Fail(f"NET.json: {err}") from None
    x = _load_array(x_file, "X.npy")
    x2 = None if x2_file is None else _load_array(x2_file, "--x2")
    _check_writable_folder(out_file.parent, "--out")
    t0 = time.perf_counter()
    show = not quiet and not as_json
    try:
        k = stax.kernels(
            net,
            torch.as_tensor(x, dtype=getattr(torch, dtype)),
            None if x2 is None else torch.as_tensor(x2, dtype=getattr(torch, dtype)),
            get=get,
            memory_budget=int(budget_gb * 1024**3),
            progress=show,
        )
    except (TypeError, ValueError) as err:
        raise _Fail(str(err)) from None
    seconds = time.perf_counter() - t0
    arrays = {n: getattr(k, n).cpu().numpy() for n in get}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_file.parent, suffix=".npz.part")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, out_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    shape = next(iter(arrays.values())).shape
    out = {"out": str(out_file), "shape": list(shape), "get": list(get), "seconds": seconds}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"wrote {', '.join(get)} ({shape[0]}×{shape[1]}) to {out_file} in {seconds:.2f} s")


INTERRUPTED = "learnmech: interrupted (finished trials are saved; re-run to resume)"


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (0 pass, 1 fail, 2 bad input, 130 interrupted)."""
    import matplotlib

    matplotlib.use("Agg")  # the command line draws to files; a notebook keeps its backend
    try:
        rv = cli.main(args=argv, prog_name="learnmech", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):  # click returns Exit's code here
            return rv
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:  # click's form of Ctrl-C (KeyboardInterrupt)
        click.echo(INTERRUPTED, err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"learnmech: error: {e.format_message()}", err=True)
        return EXIT_USAGE
    except _Fail as e:
        click.echo(f"learnmech: error: {e}", err=True)
        return e.code
    except UserError as e:
        click.echo(f"learnmech: error: {e}", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        return 130
    except RunInterrupted as e:
        click.echo(f"learnmech: error: {e}", err=True)
        return EXIT_FAIL
    except OSError as e:  # a folder that cannot be made or written: one line, not a trace
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        click.echo(f"learnmech: error: {e.strerror or e}{where}", err=True)
        return EXIT_USAGE
    except Exception as e:
        # a Ctrl-C that lands inside a DuckDB query surfaces as DuckDB's InterruptException
        # or as RuntimeError("Query interrupted"), not as KeyboardInterrupt
        duck = type(e).__name__ == "InterruptException" and "duckdb" in type(e).__module__
        if duck or (isinstance(e, RuntimeError) and "Query interrupted" in str(e)):
            click.echo(INTERRUPTED, err=True)
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
