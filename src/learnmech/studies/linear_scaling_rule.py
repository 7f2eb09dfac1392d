"""Study ``linear-scaling-rule``: scaling the learning rate with the batch size.

Claims under test (Goyal et al. 2017; McCandlish et al. 2018 §2; Malladi, Lyu, Panigrahi &
Arora 2022): for SGD, (η, B) → (kη, kB) traces the same loss-vs-examples curve while kB is
below the critical batch size — the SDE limit of SGD depends on η/B only — and stops doing
so above it. For Adam the SDE is kept by the square-root rule (η ∝ √k with 1 − β₁,₂ ∝ k
and ε ∝ 1/√k, Malladi et al. 2022, Def. 4.3), not by η ∝ k.

* predict — the distance between the scaled run's loss-vs-examples curve and the base
  run's, D(k) = mean over examples of |log L_k − log L_1|, stays at the seed-to-seed level
  for small k and grows past it at large k; for Adam, at the same k, the square-root rule
  stays closer to the base curve than the linear rule.
* measure — a ReLU MLP on 1,000 digits, cross-entropy; base B₀ = 8 with η₀ (SGD 0.05, Adam
  1e-3); B = kB₀ for k up to 125 (full batch), the same number of examples; training loss
  at log-spaced example counts; the base run twice (seeds s and s + 1000) for the noise
  floor.
* compare — SGD: D at the smallest k > 1 within 3 SE of the seed floor D₀, and D at the
  largest k above D₀ by more than 3 SE; Adam: the square-root rule closer to the base
  curve than the linear rule at the middle k (paired over seeds, > 3 SE).

Finding: the square-root rule is far closer than the linear one (quick scale, k = 4:
D = 0.27 vs 0.70) but does not reach the seed floor even at k = 2 (0.11 vs 0.04 at
η = 1e-3; 0.09 vs 0.04 at η = 2e-4). Malladi et al.'s rule is an SDE (small-η)
approximation; here it is reported, not scored, at small k.
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
from learnmech.stats import mean_se
from learnmech.studies.base import Figure, Study, StudyConfig, subset_of

__all__ = ["LinearScalingRule", "LinearScalingRuleConfig"]

RULES = ("sgd_linear", "adam_sqrt", "adam_linear")


class LinearScalingRuleConfig(StudyConfig):
    ks: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 125])
    rules: list[str] = Field(default_factory=lambda: list(RULES))
    base_batch: int = Field(8, ge=1, le=1000)
    sgd_lr: float = Field(0.05, gt=0, le=10)
    adam_lr: float = Field(1e-3, gt=0, le=1)
    epochs: float = Field(8.0, gt=0, le=10_000, description="examples seen / samples")
    samples: int = Field(1000, ge=50, le=1797)
    width: int = Field(128, ge=4, le=4096)
    points: int = Field(12, ge=3, le=200)
    data_seed: int = Field(0, ge=0)

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if 1 not in v or len(v) < 3 or any(k < 1 for k in v):
            raise ValueError("ks must include 1 (the base run) and at least two k > 1")
        return sorted(set(v))

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: list[str]) -> list[str]:
        return subset_of(v, RULES, "rules")


def _curve(
    cfg: LinearScalingRuleConfig, rule: str, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    X, Y = digits_subset(cfg.samples, cfg.data_seed)
    n = X.shape[0]
    B = min(cfg.base_batch * k, n)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 10))
    if rule == "sgd_linear":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=cfg.sgd_lr * k)
    elif rule == "adam_sqrt":
        # Malladi et al. 2022, Def. 4.3: η·√k, 1 − β → k(1 − β), ε/√k
        opt = torch.optim.Adam(
            model.parameters(),
            lr=cfg.adam_lr * math.sqrt(k),
            betas=(1 - k * (1 - 0.9), 1 - k * (1 - 0.999)),
            eps=1e-8 / math.sqrt(k),
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.adam_lr * k)
    total = int(cfg.epochs * n)
    marks = np.unique(np.geomspace(cfg.base_batch * 125, total, cfg.points).astype(int))
    gen = torch.Generator().manual_seed(seed)
    seen, out = 0, []
    mi = 0
    while mi < marks.size:
        b = torch.randint(0, n, (B,), generator=gen) if B < n else slice(None)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(X[b]), Y[b]).backward()
        opt.step()
        seen += B
        while mi < marks.size and seen >= marks[mi]:
            with torch.no_grad():
                out.append(float(nn.functional.cross_entropy(model(X), Y)))
            mi += 1
    return marks.astype(np.float64), np.array(out)


class LinearScalingRule(Study):
    name = "linear-scaling-rule"
    title = "Linear scaling rule for SGD, square-root rule for Adam"
    summary = "(η, B) → (kη, kB) keeps the loss-vs-examples curve below B_crit; Adam needs √k"
    pillar = "hyperparameter theories"
    Config = LinearScalingRuleConfig
    sweep_fields = frozenset({"ks", "rules"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {"seeds": 6, "ks": [1, 2, 4, 8, 16, 32, 64, 125], "epochs": 30.0},
    }

    def grid(self, cfg: LinearScalingRuleConfig) -> list[dict[str, Any]]:
        # the square-root rule needs 1 − k(1 − β₁) > 0: k < 10 at β₁ = 0.9; Adam's linear
        # arm uses the same ks for a like-for-like comparison
        return [
            {"rule": r, "k": k} for r in cfg.rules for k in cfg.ks if r == "sgd_linear" or k < 10
        ]

    def predict(self, cfg: LinearScalingRuleConfig) -> list[Curve]:
        return []

    def measure(
        self, cfg: LinearScalingRuleConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        out: dict[int, list[Curve]] = {}
        rule, k = point["rule"], int(point["k"])
        for seed in seeds:
            e, loss = _curve(cfg, rule, k, seed)
            curves = [Curve("loss", "examples", e, loss)]
            if k == 1:  # a second base run: the seed-to-seed floor
                _, l2 = _curve(cfg, rule, 1, seed + 1000)
                curves.append(Curve("loss_other_seed", "examples", e, l2))
            if not np.all(np.isfinite(loss)):
                raise FloatingPointError(f"{rule} diverged at k = {k}")
            out[seed] = curves
        return out

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.abs(np.log(a) - np.log(b))))

    def _table(self, trials: list[TrialResult], rule: str) -> dict[int, dict[int, float]]:
        """k → seed → D(k) (k = 1: the seed floor D₀)."""
        base = {
            t.seed: t
            for t in trials
            if t.status == "ok" and t.point["rule"] == rule and int(t.point["k"]) == 1
        }
        tab: dict[int, dict[int, float]] = {}
        for t in trials:
            if t.status != "ok" or t.point["rule"] != rule or t.seed not in base:
                continue
            b = base[t.seed]
            k = int(t.point["k"])
            other = b.curve("loss_other_seed") if k == 1 else t.curve("loss")
            tab.setdefault(k, {})[t.seed] = self._dist(other.values, b.curve("loss").values)
        return tab

    def compare(
        self, cfg: LinearScalingRuleConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        tabs = {r: self._table(trials, r) for r in cfg.rules}
        for rule, tab in tabs.items():
            if 1 not in tab or len(tab) < 3:
                continue
            ks = sorted(k for k in tab if k > 1)
            d0 = np.array(list(tab[1].values()))
            for k in ks:
                d = np.array([tab[k][s] for s in tab[k]])
                m, se = mean_se(d)
                metrics.append(
                    Metric(
                        f"{rule}_D_k{k}",
                        float(m),
                        None,
                        stderr=float(se),
                        description=f"mean |log L_k − log L_1| over examples "
                        f"(B = {min(cfg.base_batch * k, cfg.samples)})",
                    )
                )
            m0, se0 = mean_se(d0)
            metrics.append(
                Metric(
                    f"{rule}_D_seed_floor",
                    float(m0),
                    None,
                    stderr=float(se0),
                    description="the same distance between two base seeds",
                )
            )
            if rule in ("sgd_linear", "adam_sqrt"):
                k1 = ks[0]
                d1 = np.array(list(tab[k1].values()))
                m1, se1 = mean_se(d1)
                z = (m1 - m0) / math.hypot(se1, se0) if (se1 or se0) else 0.0
                scored = rule == "sgd_linear"
                metrics.append(
                    Metric(
                        f"{rule}_small_k_excess_z",
                        float(z),
                        3.0 if scored else None,
                        "<=",
                        description=f"D at k = {k1} minus the seed floor, in SE ({m1:.4f} vs "
                        f"{m0:.4f})"
                        + (
                            ": the rule holds at small k"
                            if scored
                            else f"; reported — at η = {cfg.adam_lr:g} the square-root "
                            "rule does not reach the seed floor (finding; see the module "
                            "docstring)"
                        ),
                    )
                )
            if rule == "sgd_linear":
                kl = ks[-1]
                dl = np.array(list(tab[kl].values()))
                ml, sel = mean_se(dl)
                z = (ml - m0) / math.hypot(sel, se0) if (sel or se0) else math.inf
                metrics.append(
                    Metric(
                        f"{rule}_large_k_break_z",
                        float(z),
                        3.0,
                        ">=",
                        description=f"D at k = {kl} (B = {min(cfg.base_batch * kl, cfg.samples)}) "
                        f"minus the seed floor, in SE ({ml:.4f} vs {m0:.4f}): the rule breaks "
                        "above the critical batch",
                    )
                )
        if "adam_sqrt" in tabs and "adam_linear" in tabs:
            common = sorted(set(tabs["adam_sqrt"]) & set(tabs["adam_linear"]) - {1})
            if common:
                k = common[-1] if len(common) < 2 else common[len(common) // 2]
                seeds = sorted(set(tabs["adam_sqrt"][k]) & set(tabs["adam_linear"][k]))
                diff = np.array(
                    [tabs["adam_linear"][k][s] - tabs["adam_sqrt"][k][s] for s in seeds]
                )
                if diff.size >= 2:
                    m, se = mean_se(diff)
                    metrics.append(
                        Metric(
                            "adam_sqrt_closer_than_linear_z",
                            float(m / se) if se > 0 else math.inf,
                            3.0,
                            ">=",
                            description=f"at k = {k}: D(linear) − D(√) = {m:.4f} ± {se:.4f} "
                            "(paired over seeds)",
                        )
                    )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: LinearScalingRuleConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        plt = _plt()
        fig, axes = plt.subplots(
            1, len(cfg.rules), figsize=(3.6 * len(cfg.rules), 3.4), squeeze=False
        )
        for ax, rule in zip(axes[0], cfg.rules, strict=True):
            cmap = plt.get_cmap("viridis")
            for i, k in enumerate(cfg.ks):
                t = next(
                    (
                        t
                        for t in trials
                        if t.status == "ok"
                        and t.point["rule"] == rule
                        and int(t.point["k"]) == k
                        and t.seed == 0
                    ),
                    None,
                )
                if t is None:
                    continue
                c = t.curve("loss")
                ax.plot(
                    c.coords,
                    c.values,
                    color=cmap(i / max(len(cfg.ks) - 1, 1)),
                    label=f"k={k}, B={min(cfg.base_batch * k, cfg.samples)}",
                )
            ax.set(xscale="log", yscale="log", xlabel="examples seen", title=rule)
            ax.title.set_fontsize(9)
        axes[0][0].set_ylabel("training loss")
        axes[0][0].legend(fontsize=6)
        p = save_png(fig, outdir / "linear-scaling-rule.png")
        return [
            Figure(
                p,
                "Training loss against examples seen for (η, B) scaled by k (SGD: "
                "η ∝ k; Adam: η ∝ √k and η ∝ k), seed 0: the curves coincide at small "
                "k and part at large k.",
            )
        ]
