"""Study ``critical-batch-size``: the steps–examples trade-off and the gradient noise scale.

Claim under test (McCandlish, Kaplan, Amodei et al. 2018, §2): training to a fixed loss
with batch size B takes S steps and E = S·B examples with (S/S_min − 1)(E/E_min − 1) = 1,
i.e. S(B) = S_min + E_min/B, and the critical batch B_crit = E_min/S_min is predicted by
the gradient noise scale B_noise = tr(HΣ)/(GᵀHG) (eq. 2.8).

* predict — along a run the noise scale changes (it grows as the gradient shrinks). In
  the paper's model each stretch of training costs dS_min·(1 + B_noise(t)/B) steps, so
  S(B) = S_min + (∫B_noise dS_min)/B: the measured B_crit is a weighted average of
  B_noise(t) over the run, bracketed by its smallest and largest value along the way.
  That bracket (with each end's standard error) is the agreement criterion.
* measure — a ReLU MLP on 1,000 digits with cross-entropy and plain SGD; for each B, the
  fewest steps to the target training loss over a learning-rate grid (the model assumes
  the best rate per B; the loss is checked every ≈ n/(8B) steps); B_noise and B_simple
  at log-spaced losses along a full-batch run from init to the target.
* compare — fit S = S_min + E_min/B (weighted by the seeds' spread), B_crit with its
  delta-method SE; B_crit must lie in [min B_noise − 2 SE, max B_noise + 2 SE]; the fit's
  R² and the B_simple/B_noise ratio are reported.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from learnmech.data.real import digits_subset
from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.measure.gradients import noise_scale
from learnmech.studies.base import Figure, Study, StudyConfig

__all__ = ["CriticalBatchSize", "CriticalBatchSizeConfig"]


class CriticalBatchSizeConfig(StudyConfig):
    batch_sizes: list[int] = Field(default_factory=lambda: [8, 32, 128, 1000])
    lrs: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.4, 0.8, 1.6])
    target_loss: float = Field(0.05, gt=0, lt=3)
    max_steps: int = Field(6000, ge=10, le=10_000_000)
    samples: int = Field(1000, ge=50, le=1797)
    width: int = Field(128, ge=4, le=4096)
    noise_points: int = Field(6, ge=2, le=50)
    hessian_samples: int = Field(40, ge=2, le=10_000)
    data_seed: int = Field(0, ge=0)

    @field_validator("batch_sizes")
    @classmethod
    def _bs(cls, v: list[int]) -> list[int]:
        if len(v) < 3 or any(b < 1 for b in v):
            raise ValueError("need at least three positive batch sizes")
        return sorted(set(v))

    @field_validator("lrs")
    @classmethod
    def _lrs(cls, v: list[float]) -> list[float]:
        if not v or any(not (math.isfinite(x) and 0 < x <= 100) for x in v):
            raise ValueError("learning rates must be in (0, 100]")
        return sorted(set(v))


def _data(cfg: CriticalBatchSizeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return digits_subset(cfg.samples, cfg.data_seed)


def _model(cfg: CriticalBatchSizeConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 10))


def _eval_every(batch: int, n: int) -> int:
    """Check the full training loss every k steps, k ≈ n/(8B): the check then costs about
    as much as the steps between checks; S is known to within k steps."""
    return max(1, n // (8 * batch))


def _steps_to_target(
    cfg: CriticalBatchSizeConfig, X: torch.Tensor, Y: torch.Tensor, batch: int, lr: float, seed: int
) -> float:
    model = _model(cfg, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    every = _eval_every(batch, n)
    for step in range(1, cfg.max_steps + 1):
        b = torch.randint(0, n, (batch,), generator=gen) if batch < n else slice(None)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(X[b]), Y[b]).backward()
        opt.step()
        if step % every:
            continue
        with torch.no_grad():
            full = float(nn.functional.cross_entropy(model(X), Y))
        if not math.isfinite(full):
            return math.inf
        if full <= cfg.target_loss:
            return float(step)
    return math.inf


class CriticalBatchSize(Study):
    name = "critical-batch-size"
    title = "Critical batch size: S–E trade-off vs the gradient noise scale"
    summary = "steps and examples to a target loss over batch sizes; B_crit vs B_noise"
    pillar = "empirical laws"
    Config = CriticalBatchSizeConfig
    sweep_fields = frozenset({"batch_sizes"})
    analysis_fields = frozenset()
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 2},
        "full": {
            "seeds": 5,
            "batch_sizes": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
            "lrs": [0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0],
            "target_loss": 0.02,
            "noise_points": 10,
            "hessian_samples": 100,
        },
    }

    def grid(self, cfg: CriticalBatchSizeConfig) -> list[dict[str, Any]]:
        return [{"kind": "noise"}] + [{"kind": "sweep", "batch": b} for b in cfg.batch_sizes]

    def predict(self, cfg: CriticalBatchSizeConfig) -> list[Curve]:
        return []

    def measure(
        self, cfg: CriticalBatchSizeConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, Y = _data(cfg)
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            if point["kind"] == "sweep":
                b = int(point["batch"])
                steps = [_steps_to_target(cfg, X, Y, b, lr, seed) for lr in cfg.lrs]
                best = min(steps)
                if not math.isfinite(best):
                    raise FloatingPointError(f"no learning rate reached the target at B = {b}")
                out[seed] = [
                    Curve("steps_to_target", "batch", [b], [best]),
                    Curve("best_lr", "batch", [b], [cfg.lrs[int(np.argmin(steps))]]),
                ]
                continue
            # reference full-batch run: noise scales at log-spaced losses down to the target
            model = _model(cfg, seed)
            opt = torch.optim.SGD(model.parameters(), lr=max(cfg.lrs[len(cfg.lrs) // 2], 0.1))
            with torch.no_grad():
                l0 = float(nn.functional.cross_entropy(model(X), Y))
            levels = list(np.geomspace(l0, cfg.target_loss, cfg.noise_points))
            losses, bn, bn_se, bs, at = [], [], [], [], []
            for step in range(cfg.max_steps):
                with torch.no_grad():
                    cur = float(nn.functional.cross_entropy(model(X), Y))
                if levels and cur <= levels[0]:
                    ns = noise_scale(
                        model,
                        nn.functional.cross_entropy,
                        X,
                        Y,
                        hessian_samples=cfg.hessian_samples,
                        seed=seed,
                        population=True,
                    )
                    losses.append(cur)
                    at.append(step)
                    bn.append(ns.b_noise)
                    bn_se.append(ns.b_noise_se)
                    bs.append(ns.b_simple)
                    while levels and cur <= levels[0]:
                        levels.pop(0)
                    if not levels:
                        break
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(X), Y).backward()
                opt.step()
            out[seed] = [
                Curve("b_noise", "loss", losses, bn),
                Curve("b_noise_se", "loss", losses, bn_se),
                Curve("b_simple", "loss", losses, bs),
                Curve("step_at_level", "loss", losses, at),
            ]
        return out

    # ----------------------------------------------------------------------------------
    def _fit(self, trials: list[TrialResult]) -> dict[str, Any] | None:
        tab: dict[int, list[float]] = {}
        for t in trials:
            if t.status == "ok" and t.point.get("kind") == "sweep":
                tab.setdefault(int(t.point["batch"]), []).append(
                    t.curve("steps_to_target").values[0]
                )
        tab = {b: v for b, v in tab.items() if len(v) >= 1}
        if len(tab) < 3:
            return None
        B = np.array(sorted(tab), dtype=np.float64)
        S = np.array([np.mean(tab[int(b)]) for b in B])
        se = np.array(
            [
                np.std(tab[int(b)], ddof=1) / math.sqrt(len(tab[int(b)]))
                if len(tab[int(b)]) > 1
                else 0.0
                for b in B
            ]
        )
        # weights: 1/variance of the mean, floored at the step resolution k/√12
        n = int(trials[0].point.get("samples", 1000)) if trials else 1000
        res = np.array([_eval_every(int(b), n) / math.sqrt(12) for b in B])
        w = 1 / np.maximum(se, np.maximum(res, 1.0)) ** 2
        A = np.stack([np.ones_like(B), 1 / B], 1)
        cov = np.linalg.inv(A.T @ (A * w[:, None]))
        coef = cov @ (A.T @ (w * S))
        resid = S - A @ coef
        chi2 = float(np.sum(w * resid**2)) / max(B.size - 2, 1)
        cov = cov * max(chi2, 1.0)
        s_min, e_min = float(coef[0]), float(coef[1])
        bc = e_min / s_min
        grad = np.array([-e_min / s_min**2, 1 / s_min])
        bc_se = float(math.sqrt(grad @ cov @ grad))
        ss = float(np.sum(w * (S - np.average(S, weights=w)) ** 2))
        r2 = 1 - float(np.sum(w * resid**2)) / ss if ss > 0 else 1.0
        return {
            "B": B,
            "S": S,
            "se": se,
            "s_min": s_min,
            "e_min": e_min,
            "b_crit": bc,
            "b_crit_se": bc_se,
            "r2": r2,
        }

    def compare(
        self, cfg: CriticalBatchSizeConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        fit = self._fit(trials)
        noise = [
            t
            for t in trials
            if t.status == "ok"
            and t.point.get("kind") == "noise"
            and t.curve("b_noise") is not None
            and t.curve("b_noise").values.size
        ]
        if fit is not None:
            metrics.append(
                Metric(
                    "b_crit",
                    fit["b_crit"],
                    None,
                    stderr=fit["b_crit_se"],
                    description=f"E_min/S_min from S = S_min + E_min/B: S_min "
                    f"= {fit['s_min']:.1f}, E_min = {fit['e_min']:.0f}",
                )
            )
            metrics.append(
                Metric(
                    "hyperbola_fit_r2",
                    fit["r2"],
                    None,
                    description="weighted R² of S = S_min + E_min/B",
                )
            )
        if fit is not None and noise:
            bn = np.array([t.curve("b_noise").values for t in noise], dtype=object)
            bse = [t.curve("b_noise_se").values for t in noise]
            n_pts = min(len(v) for v in bn)
            m = np.array([[v[i] for v in bn] for i in range(n_pts)], dtype=np.float64)
            mse = np.array([[v[i] for v in bse] for i in range(n_pts)], dtype=np.float64)
            mean_bn = m.mean(1)
            # SE of each level's mean: spread over seeds and the Hessian-sampling SE
            level_se = (
                np.sqrt(m.var(1, ddof=1) / m.shape[1] + (mse**2).mean(1) / m.shape[1])
                if m.shape[1] > 1
                else np.nanmean(mse, 1)
            )
            lo_i, hi_i = int(np.argmin(mean_bn)), int(np.argmax(mean_bn))
            lo = float(mean_bn[lo_i] - 2 * level_se[lo_i])
            hi = float(mean_bn[hi_i] + 2 * level_se[hi_i])
            bc, bse_c = fit["b_crit"], fit["b_crit_se"]
            dist = max(lo - (bc + 2 * bse_c), (bc - 2 * bse_c) - hi, 0.0)
            metrics.append(
                Metric(
                    "b_crit_outside_noise_scale_range",
                    dist,
                    0.0,
                    "<=",
                    description=f"B_crit = {bc:.0f} ± {bse_c:.0f} vs B_noise along the run "
                    f"{mean_bn[0]:.0f} (init) … {mean_bn[-1]:.0f} (target), range [{lo:.0f}, "
                    f"{hi:.0f}] with 2 SE: distance from the range, 2 SE of B_crit allowed",
                )
            )
            # the model's own estimate: B_noise averaged over the run, weighted by the
            # full-batch steps spent at each level (a proxy for dS_min: fixed-rate GD steps)
            steps = np.array(
                [[t.curve("step_at_level").values[i] for t in noise] for i in range(n_pts)]
            ).mean(1)
            seg = np.diff(steps)
            pred = (
                float(np.sum(seg * 0.5 * (mean_bn[1:] + mean_bn[:-1])) / seg.sum())
                if seg.sum() > 0
                else math.nan
            )
            metrics.append(
                Metric(
                    "b_noise_step_weighted",
                    pred,
                    None,
                    description="B_noise averaged over the full-batch run, weighted by steps "
                    f"(≈ ∫B_noise dS_min / S_min): {pred:.0f} vs measured B_crit {bc:.0f}",
                )
            )
            bs = np.array([[t.curve("b_simple").values[i] for t in noise] for i in range(n_pts)])
            metrics.append(
                Metric(
                    "b_simple_over_b_noise",
                    float(np.median(bs.mean(1) / mean_bn)),
                    None,
                    description="median over the run of B_simple/B_noise "
                    "(1 if the Hessian were ∝ I)",
                )
            )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: CriticalBatchSizeConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        fit = self._fit(trials)
        plt = _plt()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        if fit is not None:
            S, B = fit["S"], fit["B"]
            a1.errorbar(
                S * B,
                S,
                yerr=2 * fit["se"],
                marker="o",
                ls="none",
                capsize=3,
                label="measured (best lr per B)",
            )
            bb = np.geomspace(B.min() / 2, B.max() * 2, 200)
            ss = fit["s_min"] + fit["e_min"] / bb
            a1.plot(
                ss * bb,
                ss,
                "k--",
                lw=1,
                label=f"(S/S_min−1)(E/E_min−1)=1, B_crit={fit['b_crit']:.0f}",
            )
            a1.set(
                xscale="log",
                yscale="log",
                xlabel="examples E",
                ylabel="steps S",
                title=f"to training loss {cfg.target_loss:g}",
            )
            a1.legend(fontsize=7)
        for t in trials:
            if t.status == "ok" and t.point.get("kind") == "noise" and t.curve("b_noise"):
                c = t.curve("b_noise")
                a2.plot(c.coords, c.values, "o-", color="C0", alpha=0.6)
                cs = t.curve("b_simple")
                a2.plot(cs.coords, cs.values, "s:", color="C1", alpha=0.6)
        if fit is not None:
            a2.axhline(fit["b_crit"], color="k", ls="--", lw=1)
        a2.plot([], [], "o-", color="C0", label="B_noise = tr(HΣ)/GᵀHG")
        a2.plot([], [], "s:", color="C1", label="B_simple = tr Σ/|G|²")
        a2.plot([], [], "k--", label="measured B_crit")
        a2.set(
            xscale="log",
            yscale="log",
            xlabel="training loss (full-batch run)",
            ylabel="batch size",
            title="noise scale along the run",
        )
        a2.invert_xaxis()
        a2.legend(fontsize=7)
        p = save_png(fig, outdir / "critical-batch-size.png")
        return [
            Figure(
                p,
                "Left: steps vs examples to the target loss over batch sizes, with "
                "the fitted hyperbola (McCandlish et al. 2018, Fig. 1). Right: the "
                "gradient noise scale along a full-batch run, and the measured B_crit.",
            )
        ]
