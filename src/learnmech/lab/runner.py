"""Run a study end to end: sweep → measure (skipping finished trials) → predict → compare →
report. The driver is the store's only writer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from learnmech.claims import claims_hash
from learnmech.errors import UserError
from learnmech.lab.executors import Job, make_executor
from learnmech.lab.provenance import provenance, resolve_device
from learnmech.lab.store import DEFAULT_STORE, Store, safe_run_id
from learnmech.lab.sweep import expand, run_key
from learnmech.lab.tracked import TRACKED, TrackedRun
from learnmech.records import Metric, verdict_of
from learnmech.studies import get_study
from learnmech.studies.base import check_memory, failing_claims

__all__ = ["RunResult", "render_report", "run_study"]


@dataclass
class RunResult:
    study: str
    run_id: str
    verdict: str
    metrics: list[Metric]
    report: Path | None
    trials_run: int = 0
    trials_skipped: int = 0
    failed: list[str] = field(default_factory=list)
    control: str | None = None
    #: for a control run: targeted claims that failed / that did not (both lists of names)
    control_failed: list[str] = field(default_factory=list)
    control_survived: list[str] = field(default_factory=list)
    claims_hash: str = ""
    device: str = "cpu"

    @property
    def control_ok(self) -> bool:
        """A control run's outcome: every targeted claim failed (and there was one)."""
        return bool(self.control_failed) and not self.control_survived

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "study": self.study,
            "run_id": self.run_id,
            "verdict": self.verdict,
            "metrics": {
                m.name: {k: v for k, v in m.as_dict().items() if k not in ("name", "description")}
                for m in self.metrics
            },
            "report": str(self.report) if self.report else None,
            "claims_hash": self.claims_hash,
            "device": self.device,
        }
        if self.control:
            out["control"] = {
                "name": self.control,
                "targeted_claims_failed": self.control_failed,
                "targeted_claims_passed": self.control_survived,
                "as_expected": self.control_ok,
            }
        return out


Progress = Callable[[str, int, int], None]  # (message, done, total)


def run_study(
    name: str,
    *,
    scale: str = "quick",
    overrides: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
    seeds: int | None = None,
    executor: str = "local",
    workers: int = 1,
    store: str | Path = DEFAULT_STORE,
    device: str | None = None,
    report: bool = True,
    progress: Progress | None = None,
    fresh: bool = False,
    control: str | None = None,
) -> RunResult:
    """Run (or resume) study ``name`` and return its verdict.

    The run id is a hash of the study and its resolved config, so the same command resumes
    the same run: finished trials (ok or diverged) are skipped, failed ones retried.
    ``fresh=True`` re-measures every trial (e.g. after changing measurement code, which
    trial keys do not hash) and replaces the stored ones.

    ``control`` runs one of the study's negative controls (its overrides on top of its
    scale, then ``overrides``): the theory must fail there, and the result says whether
    every claim the control targets did.
    """
    study = get_study(name)
    ctl = None
    if control is not None:
        ctl = study.control(control)
        scale = ctl.scale
        overrides = {**ctl.overrides, **(overrides or {})}
    cfg = study.config(scale, overrides, seeds, sources)  # validates before anything is written
    config = cfg.model_dump(mode="json")
    device = resolve_device(device)
    check_memory(study, cfg, device)  # a size that cannot fit is refused before any write
    run_id = run_key(name, config | ({"__control__": control} if control else {}))
    # each distinct measurement once: grid points measured as another (Study.measured_as)
    # share its trials, which the analysis sees under both
    measured = study.measured_points(cfg)
    points = [p for p, _ in measured]
    trials = [t for p, m in measured for t in expand(name, [p], study.seeds_for(cfg, m))]
    ex = make_executor(executor, workers=workers, device=device)  # fails before writing
    t0 = time.perf_counter()
    prov = provenance()
    prov["executor"] = executor
    prov["device"] = device
    if control:
        prov["control"] = control
    prov["driver_pid"] = os.getpid()
    # the store is opened for each write and closed between them, so other processes can
    # read it (runs list, report) or run on it while this run measures (issue #19)
    with Store(store) as st:
        st.reap_stale_runs()
        st.begin_run(run_id, name, config, scale, cfg.seeds, prov)
        st.link_trials(run_id, [t.key for t in trials])
        done = set() if fresh else st.done_keys(t.key for t in trials)
    pending = [t for t in trials if t.key not in done]
    jobs: list[Job] = []
    for point in points:
        mine = [t for t in pending if t.point == point]
        if mine:
            jobs.append(
                Job(name, config, point, tuple(t.seed for t in mine), tuple(t.key for t in mine))
            )
    total = len(pending)
    finished = 0
    failed: list[str] = []
    if progress:
        progress(f"{name}: {len(done)} trials already done", 0, total)
    try:
        for results in ex.map(jobs):
            with Store(store) as st:
                st.add_trials(run_id, name, results, device)
            for r in results:
                if r.status == "error":
                    failed.append(f"{r.point} seed {r.seed}: {(r.error or '').splitlines()[0]}")
            finished += len(results)
            if progress:
                progress(f"{name}: measured {results[0].point}", finished, total)
    except BaseException:
        with Store(store) as st:
            st.finish_run(run_id, "interrupted", None, time.perf_counter() - t0, None)
        raise
    finally:
        ex.close()
    if progress:
        progress(f"{name}: predicting and comparing", finished, total)
    theory = study.predict(cfg)
    with Store(store) as st:
        st.set_theory(run_id, theory)
        all_trials = st.trials(run_id)
    metrics = study.evaluate(cfg, theory, all_trials).metrics
    used = sorted({t.device for t in all_trials if t.device}) or [device]
    prov["device_used"] = ",".join(used)
    # float32 results depend on torch's thread count in their last digits (a reduction's
    # order): a run resumed with another --workers mixes trials measured both ways
    prov["trial_threads"] = sorted({t.threads for t in all_trials if t.threads})
    prov["claims_hash"] = claims_hash(metrics)
    verdict = verdict_of(metrics)
    report_path = None
    status = "finished" if not failed else "finished-with-errors"
    with Store(store) as st:
        st.set_metrics(run_id, metrics)
        st.set_run_device(run_id, ",".join(used))
        st.set_provenance(run_id, prov)
        st.finish_run(run_id, status, verdict, time.perf_counter() - t0, None)
    if report:
        with Store(store) as st:
            report_path = render_report(st, run_id, study=study, cfg=cfg)
            st.finish_run(run_id, status, verdict, time.perf_counter() - t0, str(report_path))
    res = RunResult(name, run_id, verdict, metrics, report_path, total, len(done), failed)
    res.claims_hash = prov["claims_hash"]
    res.device = prov["device_used"]
    if ctl is not None:
        res.control = ctl.name
        res.control_failed, res.control_survived = failing_claims(ctl, metrics)
    return res


def render_report(st: Store, run_id: str, *, study: Any = None, cfg: Any = None) -> Path:
    """(Re)render ``<store folder>/<run_id>/report.html`` from what the store holds."""
    from learnmech.report.html import write_run_report

    info = st.run(run_id)
    if study is None and info["study"] == TRACKED:
        study = TrackedRun()
    if study is None:
        study = get_study(info["study"])
    if cfg is None:
        try:
            cfg = study.Config(**info["config"])
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise UserError(
                f"run {run_id} was stored with a {info['study']} config this version no longer "
                f"accepts ({field}: {first['msg']}); re-run the study to get a new report"
            ) from None
    outdir = st.path.parent / safe_run_id(run_id)
    theory = st.theory(run_id)
    trials = st.trials(run_id)
    metrics = st.metrics(run_id)
    outdir.mkdir(parents=True, exist_ok=True)
    # a report shows whatever finished: a figure that cannot be drawn from a partial sweep
    # (an out-of-memory trial left one width) becomes a note, not a crash (#19, item 1)
    note = None
    try:
        ev = study.evaluate(cfg, theory, trials)
        ev.metrics = metrics  # the stored claims are the record; the summary feeds figures
        figures = study.render_figures(cfg, theory, trials, ev, outdir)
    except Exception as err:
        figures = []
        done = sum(t.status == "ok" for t in trials)
        note = (
            f"The figures could not be drawn from the {done} of {len(trials)} trials that "
            f"finished ({type(err).__name__}: {err})."
        )
    controls = st.control_runs(info["study"]) if study.controls else []
    return write_run_report(
        outdir, info, study, metrics, figures, trials, controls=controls, note=note
    )
