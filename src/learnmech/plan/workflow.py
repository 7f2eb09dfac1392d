"""Plan a large run from small proxies, then check the plan against the real run.

The workflow (each step's trials live in the store and resume like a study's):

1. **μP** — every proxy is parameterized by :func:`~learnmech.hparams.parametrize`
   against the narrowest proxy's shapes (Yang et al. 2022, "Tensor Programs V").
2. **Coord check** — per-layer activation and update sizes must not move with width
   (:func:`~learnmech.hparams.coord_check`); if they do, the planner stops with the
   diagnosis: the rates it would transfer are not width-independent.
3. **Learning-rate sweeps** at every proxy width and seed: η* per (width, seed) by
   parabolic interpolation (:func:`~learnmech.hparams.optimal_lr`); the claim that η*
   stays put across the proxies is scored as an equivalence test. The planned rate is
   the widest proxy's η* (mean of log₂ η* over seeds, t-interval).
4. **Noise scale and stability** at the planned rate on the widest proxy: B_simple along
   the run (McCandlish et al. 2018) → the batch size beyond which more examples per step
   stop saving steps; λ_max of the (preconditioned) Hessian against 2/η (38/η for Adam's
   preconditioned sharpness; Cohen et al. 2021, 2022).
5. **Loss law** — every proxy run at the planned rate's grid neighbour records the
   held-out loss at log-spaced steps: (N parameters, D tokens, L) points fitted by the
   Chinchilla law L = E + A/N^α + B/D^β (Hoffmann et al. 2022) with a bootstrap over
   model sizes; with a FLOPs budget C the compute-optimal N and D for C = k·N·D, k
   *counted* by ``torch.utils.flop_counter`` on the proxies (not assumed 6); the
   predicted loss with its bootstrap interval.
6. **Verify** — train the planned run (or read its losses from a CSV) and score whether
   the predicted interval covers the measured loss.
"""

from __future__ import annotations

import csv
import html
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from learnmech.claims import Claims, Estimate, quantile
from learnmech.errors import UserError
from learnmech.lab.runner import run_study
from learnmech.lab.store import DEFAULT_STORE, Store
from learnmech.laws import fit_law
from learnmech.plan.spec import PlanSpec, load_spec
from learnmech.plan.study import PlanStudy, count_params, law_points, sweep_summary
from learnmech.records import Metric, verdict_of
from learnmech.studies.base import Trials

__all__ = ["Plan", "PlanStopped", "make_plan", "verify_plan"]

Progress = Callable[[str], None]


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON (RFC 8259 has no NaN or Infinity, and ``jq`` or a browser's
    ``JSON.parse`` reject them): non-finite numbers are written as the strings "inf",
    "-inf" and "nan", which :meth:`Plan.load` reads back as floats."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float | np.floating):
            f = float(v)
            if math.isfinite(f):
                return f
            return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        return v

    return json.dumps(clean(obj), allow_nan=False, **kw)


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    return v


class PlanStopped(UserError):
    """A check the plan relies on failed (e.g. the coord check): the message says why."""


@dataclass
class Plan:
    """A planned run and the evidence behind it (``as_dict`` is what ``plan.json`` holds)."""

    spec: str
    spec_hash: str
    scheme: str
    optimizer: str
    lr: float
    lr_interval: tuple[float, float]
    batch_size: int
    batch_size_noise: float
    batch_size_noise_range: tuple[float, float]
    width: int
    params: float
    tokens: float
    steps: int
    predicted_loss: float
    predicted_interval: tuple[float, float]
    budget: float | None
    flops_per_param_token: float
    proxy_flops: float
    proxy_seconds: float
    overhead_seconds: float
    law: dict[str, float]
    checks: dict[str, Any]
    runs: dict[str, str]
    notes: list[str] = field(default_factory=list)
    verified: dict[str, Any] | None = None
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        p = Path(path)
        if p.is_dir():
            p = p / "plan.json"
        try:
            d = _decode(json.loads(p.read_text()))
        except FileNotFoundError:
            raise UserError(f"no plan at {p}") from None
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read the plan {p}: {err}") from None
        try:
            plan = cls(**d)
        except TypeError as err:
            raise UserError(f"{p} is not a learnmech plan: {err}") from None
        plan.path = str(p)
        return plan

    def summary(self) -> str:
        lo, hi = self.predicted_interval
        return (
            f"plan for {self.spec}: width {self.width} ({self.params:,.0f} parameters), "
            f"lr {self.lr:.3g} [{self.lr_interval[0]:.3g}, {self.lr_interval[1]:.3g}], "
            f"batch {self.batch_size} (noise scale {self.batch_size_noise:.0f}), "
            f"{self.steps:,} steps = {self.tokens:,.0f} tokens; predicted loss "
            f"{self.predicted_loss:.4f} [{lo:.4f}, {hi:.4f}]; proxy compute "
            f"{self.proxy_flops:.3g} FLOPs"
        )


# ------------------------------------------------------------------------------------------
def _stage(
    ref: str,
    spec_hash: str,
    spec: PlanSpec,
    stage: str,
    store: str | Path,
    device: str | None,
    progress: Progress | None,
    **extra: Any,
) -> tuple[Any, list[Any]]:
    overrides = {"spec": ref, "spec_hash": spec_hash, "stage": stage, **extra}

    def tick(msg: str, done: int, total: int) -> None:
        if progress:
            progress(f"plan, {stage} stage: {done}/{total} trials")

    r = run_study(
        "plan",
        overrides=overrides,
        seeds=spec.seeds,
        store=store,
        device=device,
        progress=tick,
        report=False,
    )
    with Store(store) as st:
        trials = st.trials(r.run_id)
    return r, trials


def _width_for(spec: PlanSpec, n_target: float) -> int:
    """The smallest multiple of ``width_step`` whose model has at least ``n_target``
    parameters (bisection; parameter counts are built on the meta device)."""
    step = spec.width_step
    lo = max(1, spec.widths[0] // step)
    if count_params(spec, lo * step) >= n_target:
        return lo * step
    hi = lo
    while count_params(spec, hi * step) < n_target:
        hi *= 2
        if hi * step > 2**24:
            raise PlanStopped(f"no width up to {2**24} reaches {n_target:.3g} parameters")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_params(spec, mid * step) >= n_target:
            hi = mid
        else:
            lo = mid
    return hi * step


def make_plan(
    ref: str,
    *,
    budget: float | None = None,
    target_width: int | None = None,
    store: str | Path = DEFAULT_STORE,
    device: str | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    bootstrap: int = 200,
) -> Plan:
    """Run the workflow for the spec ``module:function`` and write ``plan.json`` and
    ``plan.html`` (into ``out``, default ``<store folder>/plan-<hash>``).

    Give a FLOPs ``budget`` (the plan picks the compute-optimal size and tokens) or a
    ``target_width`` (and optionally a budget for its tokens; without one the target
    trains as many steps as the proxies). Raises :class:`PlanStopped` when the coord
    check fails.
    """
    if budget is not None and not (
        isinstance(budget, int | float) and math.isfinite(budget) and budget > 0
    ):
        raise UserError(f"budget must be a positive number of FLOPs, got {budget!r}")
    if target_width is not None and (
        isinstance(target_width, bool) or not isinstance(target_width, int) or target_width < 1
    ):
        raise UserError(f"target width must be a positive integer, got {target_width!r}")
    if budget is None and target_width is None:
        raise UserError("give a compute budget (FLOPs) or a target width")
    spec, h = load_spec(ref)
    out_dir = Path(out) if out else Path(store).parent / f"plan-{h}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write the plan to {out_dir}: {err.strerror or err}") from None
    t_start = time.perf_counter()

    r1, trials = _stage(ref, h, spec, "sweep", store, device, progress)
    s = sweep_summary(spec, Trials(trials))
    notes: list[str] = []
    cc = s["coord"]
    if cc is not None and not cc.passed:
        hint = ""
        if spec.init == "sp" and any("initial variance" in d for d in cc.diagnose()):
            hint = (
                "\nif the model initialises its weights with one std at every width (as "
                "HuggingFace's initializer_range does), set init='fixed' in the spec"
            )
        raise PlanStopped(
            "the coord check failed, so rates tuned on the proxies will not transfer:\n"
            + "\n".join(cc.diagnose())
            + hint
            + f"\n(report: learnmech report {r1.run_id})"
        )
    widths = sorted(s["widths"])
    if len(widths) < 3 or widths[-1] not in s["optima"]:
        with Store(store) as st:
            errors = st.errors(r1.run_id)
        first = ""
        if errors:
            point, seed, err = errors[0]
            last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "")
            where = f"{point.get('part', 'sweep')} run" + (
                f" at width {point['width']}" if point.get("width") else ""
            )
            first = f"; {len(errors)} trial(s) failed, the first ({where}, seed {seed}): {last}"
        raise PlanStopped(
            f"too few proxy widths finished to plan from{first}\n"
            f"(every error: learnmech runs show {r1.run_id} --store {store})"
        )
    wide = widths[-1]
    logs = np.array([o.log2_lr for o in s["optima"][wide]])
    if any(o.at_edge for o in s["optima"][wide]):
        notes.append(
            f"the widest proxy's best rate lies at the edge of the grid: extend lrs beyond "
            f"{spec.lrs[0]:g}…{spec.lrs[-1]:g}"
        )
    est = Estimate.of(logs)
    q = quantile(0.95, est.df)
    lr = float(2.0**est.value)
    lr_int = (float(2.0 ** (est.value - q * est.se)), float(2.0 ** (est.value + q * est.se)))

    r2, trials2 = _stage(ref, h, spec, "check", store, device, progress, lr=lr, width=wide)
    check = PlanStudy().analyze(
        PlanStudy().config("quick", {"spec": ref, "spec_hash": h, "stage": "check"}),
        [],
        Trials(trials2),
    )
    _, bs = check["b_simple"]
    if bs.size:
        tail = bs[:, bs.shape[1] // 2 :]
        b_noise = float(np.median(bs[:, -1]))
        b_range = (float(tail.min()), float(tail.max()))
    else:
        b_noise, b_range = math.nan, (math.nan, math.nan)
        notes.append("the noise-scale run failed: no batch-size evidence")
    ratio = check["sharpness_ratio"]

    # loss law from the runs at the planned rate's nearest grid rate
    tokens_per_step = spec.batch_size * spec.tokens_per_example
    N, D, L = law_points(spec, s, lr)
    if len(set(N)) < 3:
        raise PlanStopped("the loss law needs finished runs at three widths at least")
    fit = fit_law(
        "chinchilla",
        L,
        N=N,
        D=D,
        bootstrap=bootstrap,
        cluster="N",
        warn=False,
    )
    notes += fit.warnings
    k = float(
        np.mean(
            [
                s["widths"][w]["step_flops"] / (s["widths"][w]["params"] * tokens_per_step)
                for w in widths
            ]
        )
    )
    if target_width is None:
        co = fit.compute_optimal(budget, flops_per_param_token=k)
        width = _width_for(spec, float(co["N_opt"][0]))
    else:
        width = int(target_width)
    n_params = float(count_params(spec, width))
    tokens = budget / (k * n_params) if budget else spec.steps * tokens_per_step
    steps = max(1, math.ceil(tokens / tokens_per_step))
    tokens = steps * tokens_per_step
    pred = float(fit.predict(N=[n_params], D=[tokens])[0])
    lo, hi = fit.predict_interval(N=[n_params], D=[tokens])
    if width > 8 * wide:
        notes.append(f"the target is {width / wide:.0f}× wider than the widest proxy")

    # compute the proxies spent: every training step and evaluation, counted per step
    proxy = 0.0
    for w in widths:
        r = s["widths"][w]
        runs = len(r["seeds"]) * len(spec.lrs)
        proxy += runs * (spec.steps * r["step_flops"] + spec.checkpoints * r["eval_flops"])
    proxy += spec.seeds * spec.steps * s["widths"][wide]["step_flops"]  # the check runs
    train_seconds = _trial_seconds(trials) + _trial_seconds(trials2)
    checks = {
        "coord_check": None if cc is None else {"passed": cc.passed, "diagnosis": cc.diagnose()},
        "transfer": _claim(r1.metrics, "proxy_lr_shift_log2"),
        "stability": {
            "sharpness_over_threshold": [float(v) for v in ratio],
            **(_claim(r2.metrics, "sharpness_over_threshold") or {}),
        },
        "law_fit": {
            "rmse_log": float(
                np.sqrt(
                    np.mean(np.log(fit.predict(N=np.array(N), D=np.array(D)) / np.array(L)) ** 2)
                )
            )
        },
    }
    plan = Plan(
        spec=ref,
        spec_hash=h,
        scheme=spec.scheme,
        optimizer=spec.optimizer,
        lr=lr,
        lr_interval=lr_int,
        batch_size=spec.batch_size,
        batch_size_noise=b_noise,
        batch_size_noise_range=b_range,
        width=width,
        params=n_params,
        tokens=float(tokens),
        steps=steps,
        predicted_loss=pred,
        predicted_interval=(float(lo[0]), float(hi[0])),
        budget=float(budget) if budget else None,
        flops_per_param_token=k,
        proxy_flops=float(proxy),
        proxy_seconds=train_seconds,
        overhead_seconds=max(time.perf_counter() - t_start - train_seconds, 0.0),
        law=fit.params,
        checks=checks,
        runs={"sweep": r1.run_id, "check": r2.run_id},
        notes=notes,
    )
    _write(plan, out_dir, s, fit, spec, check)
    # the figures and the report are the workflow's too: count them, then save again
    plan.overhead_seconds = max(time.perf_counter() - t_start - train_seconds, 0.0)
    Path(plan.path).write_text(dumps(plan.as_dict(), indent=2, default=float))
    return plan


def _claim(metrics: list[Metric], name: str) -> dict[str, Any] | None:
    for m in metrics:
        if m.name == name:
            return {
                "passed": m.passed,
                "value": m.value,
                "bound": m.bound,
                "description": m.description,
            }
    return None


def _trial_seconds(trials: list[Any]) -> float:
    return float(sum(t.duration for t in trials if t.duration))


# ------------------------------------------------------------------------------------------
def _read_losses(path: str | Path) -> np.ndarray:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"no such file: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {p}: {err}") from None
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "loss" not in rows[0]:
        raise UserError(f"{p} needs a 'loss' column (one row per seed of the planned run)")
    try:
        # float() takes "１.５" (fullwidth digits): a typo, not a measurement
        cells = [str(r["loss"]).strip() for r in rows]
        if not all(c.isascii() for c in cells):
            raise ValueError
        v = np.array([float(c) for c in cells])
    except (TypeError, ValueError):
        raise UserError(f"{p}: every loss must be a number") from None
    if not np.all(np.isfinite(v)):
        raise UserError(f"{p}: every loss must be finite")
    return v


def verify_plan(
    plan: Plan | str | Path,
    *,
    losses_csv: str | Path | None = None,
    seeds: int | None = None,
    store: str | Path = DEFAULT_STORE,
    device: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score the plan against its real run: trained here (``seeds`` seeds, default the
    spec's) or read from a CSV with a ``loss`` column (one row per seed). The claim: the
    measured loss's 95% interval lies inside the predicted interval (``within``). The
    result is written into the plan's JSON."""
    p = plan if isinstance(plan, Plan) else Plan.load(plan)
    if losses_csv is not None:
        measured = _read_losses(losses_csv)
        source = str(losses_csv)
    else:
        spec, h = load_spec(p.spec)
        if h != p.spec_hash:
            raise UserError(f"the spec {p.spec} changed since this plan was made: plan again")
        if seeds is not None:
            spec = replace(spec, seeds=seeds)
        r, trials = _stage(
            p.spec,
            h,
            spec,
            "verify",
            store,
            device,
            progress,
            lr=p.lr,
            width=p.width,
            steps=p.steps,
        )
        measured = np.array(
            [
                t.curve("eval_loss").values[-1]
                for t in trials
                if t.status == "ok" and t.curve("eval_loss") is not None
            ]
        )
        if not measured.size:
            raise PlanStopped(f"the planned run did not finish (learnmech runs show {r.run_id})")
        source = r.run_id
    lo, hi = p.predicted_interval
    est = Estimate.of(measured) if measured.size > 1 else Estimate(float(measured[0]), math.nan)
    claims = Claims()
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    claims.within(
        "planned_loss_in_predicted_interval",
        Estimate((est.value - mid) / half, est.se / half, est.df),
        0.0,
        1.0,
        description=f"(measured loss of the planned run − the predicted interval's centre)/"
        f"half-width, interval [{lo:.4f}, {hi:.4f}] (point prediction "
        f"{p.predicted_loss:.4f}): within ±1 puts the measured 95% interval inside it",
    )
    claims.reported(
        "planned_loss_rel_error",
        abs(est.value / p.predicted_loss - 1),
        description="|measured / predicted − 1|",
    )
    result = {
        "measured": [float(v) for v in measured],
        "measured_mean": est.value,
        "source": source,
        "verdict": verdict_of(claims),
        "claims": [m.as_dict() for m in claims],
    }
    p.verified = result
    if p.path:
        Path(p.path).write_text(dumps(p.as_dict(), indent=2, default=float))
    return result


# ------------------------------------------------------------------------------------------
def _write(
    plan: Plan, out: Path, s: dict[str, Any], fit: Any, spec: PlanSpec, check: dict[str, Any]
) -> None:
    from learnmech.report.plots import colors, law_curves, legend, save_png, subplots

    fig, axes = subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    widths = sorted(s["widths"])
    for c, w in zip(colors(len(widths)), widths, strict=True):
        r = s["widths"][w]
        ax.plot(r["lrs"], np.nanmean(r["finals"], 0), "o-", ms=3, color=c, label=f"width {w}")
        for o in s["optima"].get(w, []):
            ax.axvline(o.lr, color=c, lw=0.6, ls=":")
    ax.axvline(plan.lr, color="k", lw=1.2, label=f"planned η = {plan.lr:.3g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate",
        ylabel="held-out loss",
        title=f"proxy sweeps ({spec.scheme}, {spec.optimizer})",
    )
    legend(ax)
    ax = axes[1]
    data = fit.data
    law_curves(ax, fit, data.inputs["N"], data.inputs["D"], data.loss, extend_to=plan.tokens)
    lo, hi = plan.predicted_interval
    ax.errorbar(
        [plan.tokens],
        [plan.predicted_loss],
        [[plan.predicted_loss - lo], [hi - plan.predicted_loss]],
        fmt="*",
        color="r",
        ms=10,
        capsize=3,
        label=f"planned: N = {plan.params:,.0f}",
    )
    ax.set(yscale="log", title="Chinchilla law fitted on the proxies")
    legend(ax)
    ax = axes[2]
    steps, b = check["b_simple"]
    for row in b:
        ax.plot(steps, row, "o-", ms=3, color="C0", alpha=0.7)
    ax.axhline(plan.batch_size, color="k", ls="--", lw=1, label=f"batch {plan.batch_size}")
    ax.set(
        yscale="log",
        xlabel="step (widest proxy, planned η)",
        ylabel="B_simple",
        title="gradient noise scale along the run",
    )
    legend(ax)
    png = save_png(fig, out / "plan.png")
    if s["coord"] is not None:
        s["coord"].plot(out / "coord_check.png", title="coord check (proxies)")
    (out / "plan.json").write_text(dumps(plan.as_dict(), indent=2, default=float))
    plan.path = str(out / "plan.json")
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in (
            (
                "learning rate",
                f"{plan.lr:.4g}  (95%: {plan.lr_interval[0]:.4g} – {plan.lr_interval[1]:.4g})",
            ),
            (
                "batch size",
                f"{plan.batch_size} (tuned at); noise scale B_simple "
                f"{plan.batch_size_noise:.0f} ({plan.batch_size_noise_range[0]:.0f}"
                f" – {plan.batch_size_noise_range[1]:.0f})",
            ),
            ("width / parameters", f"{plan.width} / {plan.params:,.0f}"),
            ("tokens / steps", f"{plan.tokens:,.0f} / {plan.steps:,}"),
            ("predicted loss", f"{plan.predicted_loss:.4f} (95%: {lo:.4f} – {hi:.4f})"),
            ("budget", "—" if plan.budget is None else f"{plan.budget:.3g} FLOPs"),
            ("FLOPs per parameter-token (counted)", f"{plan.flops_per_param_token:.2f}"),
            ("proxy compute", f"{plan.proxy_flops:.3g} FLOPs in {plan.proxy_seconds:.1f} s"),
        )
    )
    checks = "".join(
        f"<li>{html.escape(k)}: {html.escape(dumps(v, default=float))}</li>"
        for k, v in plan.checks.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in plan.notes)
    coord = '<img src="coord_check.png" style="max-width:100%">' if s["coord"] else ""
    (out / "plan.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>learnmech plan</title>"
        f"<h1>Plan for {html.escape(plan.spec)}</h1><table>{rows}</table>"
        f"<h2>Evidence</h2><img src='{png.name}' style='max-width:100%'>{coord}"
        f"<h2>Checks</h2><ul>{checks}</ul><h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>"
        f"<p>Runs in the store: {html.escape(', '.join(plan.runs.values()))}</p>"
    )
