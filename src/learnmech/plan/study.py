"""The planner's measurements as a (hidden) study, so the lab's store, resume, executors
and reports carry them: stage ``sweep`` (coord check + learning-rate sweeps at the proxy
widths, with a loss curve along every run), stage ``check`` (gradient noise scale along a
run at the planned rate, and its sharpness against the stability threshold), and stage
``verify`` (the planned run itself)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from learnmech.claims import Claims, Estimate
from learnmech.hparams import coord_check, optimal_lr, parametrize
from learnmech.hparams.coord_check import CoordCheck
from learnmech.hparams.transfer import transfer_claims
from learnmech.measure.gradients import noise_scale
from learnmech.measure.hessian import SharpnessProbe
from learnmech.measure.model_io import forward, in_mode, take, to_device
from learnmech.plan.spec import PlanSpec, load_spec
from learnmech.records import Curve, Metric, scalars
from learnmech.studies.base import Study, StudyConfig, Trials
from learnmech.train.loops import StepRun, train_steps
from learnmech.train.stacked import stack_reason, stacking_pays, train_steps_stacked

__all__ = [
    "LOSS_CAP",
    "PlanConfig",
    "PlanStudy",
    "build",
    "coord_runs",
    "count_params",
    "eval_loss",
    "law_points",
    "run_values",
    "step_flops",
    "sweep_runs",
    "sweep_summary",
    "train_grid",
]


#: stored in place of a diverged run's losses (curves must be finite to count as measured)
LOSS_CAP = 1e30


class PlanConfig(StudyConfig):
    spec: str = Field(..., description="module:function returning a PlanSpec")
    spec_hash: str = Field("", description="hash of the spec's settings and module source")
    stage: Literal["sweep", "check", "verify"] = "sweep"
    lr: float = Field(0.0, ge=0, description="the planned rate (check, verify)")
    width: int = Field(0, ge=0, description="check: the widest proxy; verify: the target")
    steps: int = Field(0, ge=0, le=100_000_000, description="verify: steps of the planned run")
    coord_steps: int = Field(4, ge=1, le=100)
    noise_points: int = Field(4, ge=2, le=50)
    noise_examples: int = Field(256, ge=8, le=1_000_000)


def count_params(spec: PlanSpec, width: int) -> int:
    """Parameters of ``spec.model(width)``, built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            m = spec.model(width)
    except Exception:
        m = spec.model(width)
    return int(sum(p.numel() for p in m.parameters()))


def build(
    spec: PlanSpec, width: int, lr: float, seed: int, device: Any
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The seeded model at ``width``, parameterized (μP against the base width — the first
    proxy width unless the spec sets ``base_width`` — or SP for the control), and its
    optimizer at ``lr``."""
    torch.manual_seed(seed)
    model = spec.model(width)
    b = spec.base_width or spec.widths[0]
    try:
        with torch.device("meta"):
            base = spec.model(b)
    except Exception:
        base = spec.model(b)
    p = parametrize(
        model,
        spec.scheme,
        base=base,
        optimizer=spec.optimizer,  # type: ignore[arg-type]
        lr=lr,
        init=spec.init,  # type: ignore[arg-type]
        roles=spec.roles,
    )
    model.to(device)
    return model, p.optimizer(**fused_kwargs(model, spec.optimizer))


#: the dtypes and devices on which the planner asks for torch's fused Adam kernel
_FUSED_DTYPES = (torch.float32, torch.float64)
_FUSED_DEVICES = ("cpu", "cuda")


def fused_kwargs(model: torch.nn.Module, optimizer: str) -> dict[str, Any]:
    """``{"fused": True}`` for Adam/AdamW when every trainable parameter is float32/64 on
    one CPU or CUDA device, else ``{}``. The fused kernel makes one pass over each tensor
    where torch's CPU default runs one op at a time; the same update up to float rounding
    (proxy-plan's quick runs: 546 of 551 stored losses bitwise equal, the rest within
    rounding or at the edge of stability). A step of proxy-plan's width-256 GPT target
    spends 7.6 ms of 22 ms in the default update, 2.2 ms fused: 1.39× a step
    (``benchmarks/bench_fused_adam.py``)."""
    if optimizer not in ("adam", "adamw"):
        return {}
    ps = [p for p in model.parameters() if p.requires_grad]
    devices = {p.device for p in ps}
    if not ps or len(devices) != 1 or next(iter(devices)).type not in _FUSED_DEVICES:
        return {}
    if any(p.dtype not in _FUSED_DTYPES for p in ps):
        return {}
    return {"fused": True}


def eval_loss(spec: PlanSpec, model: torch.nn.Module, device: Any) -> float:
    """The held-out loss (eval mode, no gradients)."""
    x, y = spec.eval_data
    with torch.no_grad(), in_mode(model, "eval"):
        return float(spec.loss_fn(forward(model, to_device(x, device)), y.to(device)))


def step_flops(spec: PlanSpec, width: int, device: Any) -> tuple[float, float]:
    """(FLOPs of one training step's forward and backward, FLOPs of one held-out
    evaluation), counted by ``torch.utils.flop_counter`` on a real batch (the optimizer's
    own element-wise update is not counted: O(parameters), not O(parameters × tokens))."""
    from torch.utils.flop_counter import FlopCounterMode

    model, _ = build(spec, width, float(spec.lrs[0]), 0, device)
    x, y = spec.batch(0, 0, device)
    with FlopCounterMode(display=False) as fc:
        spec.loss_fn(forward(model, x), y).backward()
    train = fc.get_total_flops()
    ex, ey = spec.eval_data
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        spec.loss_fn(forward(model, to_device(ex, device)), ey.to(device))
    return float(train), float(fc.get_total_flops())


def _run(
    spec: PlanSpec, width: int, lr: float, seed: int, steps: int, at: list[int], device: Any
) -> StepRun:
    """One run at ``lr`` (held-out loss at the steps ``at``), one model at a time."""
    model, opt = build(spec, width, lr, seed, device)
    run = train_steps(
        model,
        opt,
        lambda step: spec.batch(step - 1, seed, device),
        spec.loss_fn,
        steps,
        evaluate=lambda m: eval_loss(spec, m, device),
        at=at,
    )
    return run


def run_values(run: StepRun, at: list[int]) -> tuple[list[float], bool]:
    """A run's losses at ``at`` and whether it diverged. A diverged run is data, not a
    failed trial: its losses are stored as LOSS_CAP and flagged, and the analysis reads
    them as +inf (the worst point of a sweep)."""
    bad = run.diverged or not all(math.isfinite(v) for v in run.values)
    vals = [v if math.isfinite(v) else LOSS_CAP for v in run.values]
    vals += [LOSS_CAP] * (len(at) - len(vals))
    return vals, bad


def coord_runs(spec: PlanSpec, steps: int, seed: int, device: str) -> list[Curve]:
    """The coord check across the proxy widths (seeds ``seed`` and ``seed + 1``) at the
    grid's geometric-middle rate, its tidy rows stored as curves (see
    :func:`sweep_summary`)."""
    lr = float(np.exp(np.mean(np.log(spec.lrs))))
    cc = coord_check(
        lambda w, s: build(spec, w, lr, s, device),
        spec.widths,
        lambda t: spec.batch(t, seed, device),
        steps=steps,
        seeds=[seed, seed + 1],
        loss_fn=spec.loss_fn,
    )
    series: dict[tuple[str, str, int, int], list[tuple[int, float]]] = {}
    for r in cc.rows:
        key = (r["layer"], r["quantity"], r["width"], r["seed"])
        series.setdefault(key, []).append((r["step"], r["value"]))
    return [
        Curve("coord", "step", [t for t, _ in v], [x for _, x in v], "|".join(map(str, k)))
        for k, v in series.items()
    ]


def train_grid(
    spec: PlanSpec,
    width: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    at: list[int],
    device: str,
) -> tuple[dict[tuple[int, int], StepRun], bool]:
    """Train one run per (seed, rate index) at ``width`` for ``steps`` steps, evaluated
    at ``at``: as one stacked ensemble when ``spec.vectorize``, the model and optimizer
    stack (:func:`stack_reason`) and stacking pays (:func:`stacking_pays`); else one run
    at a time. Returns the runs and
    whether they were stacked."""
    pairs = [(seed, i) for seed in seeds for i in range(len(lrs))]
    small = stacking_pays(count_params(spec, width), device)
    if spec.vectorize and len(pairs) > 1 and small:
        built = [build(spec, width, float(lrs[i]), seed, device) for seed, i in pairs]
        models, opts = [b[0] for b in built], [b[1] for b in built]
        if not stack_reason(models, opts):
            ev = (to_device(spec.eval_data[0], device), spec.eval_data[1].to(device))
            got = train_steps_stacked(
                models,
                opts,
                lambda step, seed: spec.batch(step - 1, seed, device),
                spec.loss_fn,
                steps,
                streams=[seed for seed, _ in pairs],
                eval_data=ev,
                at=at,
                write_back=False,
            )
            return dict(zip(pairs, got, strict=True)), True
    runs = {}
    for seed, i in pairs:
        runs[seed, i] = _run(spec, width, float(lrs[i]), seed, steps, at, device)
    return runs, False


def sweep_runs(
    spec: PlanSpec, width: int, seeds: Sequence[int], device: str
) -> dict[int, list[Curve]]:
    """One run per rate of ``spec.lrs`` and seed at ``width``: the held-out loss at the
    checkpoints (``eval_loss``, series ``lr{i}``), the final loss per rate, which runs
    diverged, the parameter count, whether the runs were trained stacked (``stacked``) and,
    for the first seed, the counted FLOPs per step and per evaluation.

    All rates and seeds train as one ensemble where :func:`train_grid` can stack them
    (:func:`train_steps_stacked`, equal to the loop to float tolerance)."""
    at = spec.checkpoint_steps()
    runs, stacked = train_grid(spec, width, spec.lrs, seeds, spec.steps, at, device)
    params = count_params(spec, width)
    out: dict[int, list[Curve]] = {}
    for seed in seeds:
        curves, finals, diverged = [], [], []
        for i in range(len(spec.lrs)):
            vals, bad = run_values(runs[seed, i], at)
            finals.append(vals[-1])
            diverged.append(float(bad))
            curves.append(Curve("eval_loss", "step", at, vals, f"lr{i}"))
        curves.append(Curve("diverged", "lr", list(spec.lrs), diverged))
        curves.append(Curve("final_loss", "lr", list(spec.lrs), finals))
        curves += scalars("run", 0, params=params, stacked=float(stacked))
        if seed == min(seeds):  # FLOPs per step do not depend on the seed
            train, ev_flops = step_flops(spec, width, device)
            curves += scalars("run", 0, step_flops=train, eval_flops=ev_flops)
        out[seed] = curves
    return out


class PlanStudy(Study):
    name = "plan"
    title = "Plan a training run from small proxies"
    summary = "μP coord check, proxy learning-rate sweeps, noise scale, stability, loss law"
    pillar = "hyperparameter theories"
    Config = PlanConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}

    def spec(self, cfg: PlanConfig) -> PlanSpec:
        return load_spec(cfg.spec)[0]

    def grid(self, cfg: PlanConfig) -> list[dict[str, Any]]:
        spec = self.spec(cfg)
        if cfg.stage == "sweep":
            return [{"part": "coord"}] + [{"part": "sweep", "width": w} for w in spec.widths]
        if cfg.stage == "check":
            return [{"part": "check", "width": cfg.width}]
        return [{"part": "target", "width": cfg.width}]

    def seeds_for(self, cfg: StudyConfig, point: dict[str, Any]) -> list[int]:
        return [0] if point["part"] == "coord" else self.seed_list(cfg)

    # -- measure -------------------------------------------------------------------------
    def measure(
        self, cfg: PlanConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        spec = self.spec(cfg)
        part = point["part"]
        if part == "sweep":
            return sweep_runs(spec, int(point["width"]), seeds, device)
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            if part == "coord":
                out[seed] = coord_runs(spec, cfg.coord_steps, seed, device)
            elif part == "check":
                out[seed] = self._check(spec, cfg, seed, device)
            else:
                at = sorted({max(1, cfg.steps // 2**k) for k in range(spec.checkpoints)})
                run = _run(spec, cfg.width, cfg.lr, seed, cfg.steps, at, device)
                vals, diverged = run_values(run, at)
                if diverged:
                    raise FloatingPointError("the planned run's loss became non-finite")
                out[seed] = [Curve("eval_loss", "step", at, vals)]
        return out

    def _check(self, spec: PlanSpec, cfg: PlanConfig, seed: int, device: str) -> list[Curve]:
        """B_simple = tr Σ/|G|² (McCandlish et al. 2018, eq. 2.9) along a run at the planned
        rate, on ``noise_examples`` fresh training examples; then λ_max of the
        (preconditioned) loss Hessian over its stability threshold (2/η for GD, 38/η for
        Adam's preconditioned sharpness: Cohen et al. 2021, 2022)."""
        at = sorted(
            {max(1, spec.steps * (k + 1) // cfg.noise_points) for k in range(cfg.noise_points)}
        )
        model, opt = build(spec, cfg.width, cfg.lr, seed, device)
        k = math.ceil(cfg.noise_examples / spec.batch_size)
        parts = [spec.batch(10_000_000 + j, seed, device) for j in range(k)]
        x = _cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])

        def probe(m: torch.nn.Module) -> float:
            # near a minimum |G|² falls below its own noise and B_simple is inf (stored
            # as LOSS_CAP): a measurement, not a failure — recorded without the warning
            with in_mode(m, "eval"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                b = noise_scale(m, spec.loss_fn, x, y).b_simple
            return b if math.isfinite(b) else LOSS_CAP

        run = train_steps(
            model,
            opt,
            lambda step: spec.batch(step - 1, seed, device),
            spec.loss_fn,
            spec.steps,
            evaluate=probe,
            at=at,
        )
        if run.diverged:
            raise FloatingPointError(f"training at the planned rate {cfg.lr:g} diverged")
        hb = (take(x, slice(0, spec.batch_size)), y[: spec.batch_size])
        read = SharpnessProbe(spec.loss_fn, hb, opt, every=1, tol=1e-3, seed=seed).read(model, 0)
        return [
            Curve("b_simple", "step", run.steps, run.values),
            *scalars(
                "run",
                0,
                sharpness=read["sharpness"],
                stability_threshold=read["stability_threshold"],
                sharpness_ratio=read["sharpness_ratio"],
                final_loss=eval_loss(spec, model, device),
            ),
        ]

    # -- analyze -------------------------------------------------------------------------
    def analyze(self, cfg: PlanConfig, theory: list[Curve], trials: Trials) -> dict[str, Any]:
        spec = self.spec(cfg)
        if cfg.stage == "sweep":
            return sweep_summary(spec, trials)
        if cfg.stage == "check":
            t = trials.where(part="check")
            steps, b = t.stack("b_simple")
            return {
                "b_simple": (steps, np.where(b >= LOSS_CAP, np.inf, b)),
                "sharpness_ratio": t.last("sharpness_ratio"),
                "final_loss": t.last("final_loss"),
            }
        return {"eval_loss": trials.stack("eval_loss")}

    def claims(self, cfg: PlanConfig, s: dict[str, Any]) -> list[Metric]:
        out = Claims()
        if cfg.stage == "sweep":
            cc = s.get("coord")
            if cc is not None:
                out.exact(
                    "coord_check_breaks",
                    len({(b["layer"], b["quantity"]) for b in cc.breaks()}),
                    0,
                    description="layers whose activations or updates change with width "
                    f"(|fitted exponent| > {cc.tolerance:g}): "
                    + ("; ".join(cc.diagnose()) or "none"),
                )
            if len(s["optima"]) >= 2:
                out += transfer_claims("proxy_lr", s["optima"], transfers=True)
            return out
        if cfg.stage == "check":
            r = s["sharpness_ratio"]
            if r.size:
                out.below(
                    "sharpness_over_threshold",
                    Estimate.of(r) if r.size > 1 else Estimate(float(r[0]), math.nan),
                    1.0,
                    description="λ_max (preconditioned for Adam) over its stability threshold "
                    "at the end of a proxy run at the planned rate: below 1 the rate is "
                    "stable (Cohen et al. 2021)",
                )
            _steps, b = s["b_simple"]
            if b.size:
                out.reported(
                    "b_simple_final",
                    Estimate.of(b[:, -1]),
                    description="B_simple = tr Σ/|G|² at the end of the run (McCandlish et "
                    "al. 2018): the batch size beyond which steps stop paying",
                )
        return out


def _cat(xs: list[Any]) -> Any:
    if isinstance(xs[0], dict):
        return {k: torch.cat([x[k] for x in xs]) for k in xs[0]}
    return torch.cat(xs)


def sweep_summary(spec: PlanSpec, trials: Trials) -> dict[str, Any]:
    """Per width: the loss-vs-rate curves per seed, each seed's optimum, the loss curves
    along the runs, the counted FLOPs; and the coord check rebuilt from its rows."""
    out: dict[str, Any] = {"widths": {}, "optima": {}, "coord": None}
    rows = []
    for t in trials.where(part="coord"):
        for c in t.curves:
            layer, q, w, sd = c.series.split("|")
            rows += [
                {
                    "layer": layer,
                    "quantity": q,
                    "width": int(w),
                    "seed": int(sd),
                    "step": int(s),
                    "value": float(v),
                }
                for s, v in zip(c.coords, c.values, strict=True)
            ]
    if rows:
        out["coord"] = CoordCheck.from_rows(rows)
    for w, tw in trials.where(part="sweep").by("width").items():
        lrs, finals = tw.stack("final_loss")
        if not finals.size:
            continue
        bad = tw.stack("diverged")[1] > 0
        finals = np.where(bad | (finals >= LOSS_CAP), np.inf, finals)
        opts = [optimal_lr(lrs, row) for row in finals if np.isfinite(row).any()]
        curves = {}
        for i in range(lrs.size):
            steps, v = tw.stack("eval_loss", f"lr{i}")
            curves[i] = (steps, np.where(bad[:, i : i + 1] | (v >= LOSS_CAP), np.nan, v))
        out["widths"][int(w)] = {
            "lrs": lrs,
            "finals": finals,
            "curves": curves,
            "params": float(tw.last("params")[0]),
            "step_flops": float(tw.has("step_flops").last("step_flops")[0]),
            "eval_flops": float(tw.has("eval_flops").last("eval_flops")[0]),
            "seeds": tw.seeds,
        }
        if opts:
            out["optima"][int(w)] = opts
    return out


def law_points(
    spec: PlanSpec, summary: dict[str, Any], lr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N parameters, D tokens, seed-mean held-out loss) at every proxy checkpoint, from the
    runs at the sweep grid's rate nearest ``lr``: the points the loss law is fitted on."""
    N: list[float] = []
    D: list[float] = []
    L: list[float] = []
    tokens_per_step = spec.batch_size * spec.tokens_per_example
    for w in sorted(summary["widths"]):
        r = summary["widths"][w]
        i = int(np.argmin(np.abs(np.log(r["lrs"]) - math.log(lr))))
        steps, vals = r["curves"][i]
        if not vals.size:
            continue
        m = np.nanmean(vals, 0)
        ok = np.isfinite(m)
        N += [r["params"]] * int(ok.sum())
        D += list(steps[ok] * tokens_per_step)
        L += list(m[ok])
    return np.array(N), np.array(D), np.array(L)
