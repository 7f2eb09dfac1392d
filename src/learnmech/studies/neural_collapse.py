"""Study ``neural-collapse``: last-layer geometry in the terminal phase of training.

Claim under test (Papyan, Han & Donoho 2020; Han, Papyan & Donoho 2022 for the MSE loss):
once a classifier reaches zero training error and training continues (the terminal phase,
TPT), (NC1) within-class variability collapses to the class means, (NC2) the centred class
means approach a simplex equiangular tight frame — equal norms, pairwise cosines
−1/(C − 1), (NC3) the classifier aligns with the means, (NC4) the network's decisions
become nearest-class-centre decisions.

* predict — each NC metric decreases through the TPT, towards 0; the mean cosine between
  centred class means tends to −1/(C − 1).
* measure — MLPs (depth 3, width 256, ReLU) trained by SGD with momentum and weight decay
  (constant learning rate; ``lr_decay`` divides it by 10 at 1/3 and 2/3 of training as
  Papyan et al. did, which here slows the collapse) on scikit-learn's digits (10
  classes), with the MSE loss (one-hot targets) and with cross-entropy; NC1–NC4
  (:func:`learnmech.measure.collapse.neural_collapse`) at log-spaced epochs on the
  training set.
* compare — for each loss and metric, log(end / TPT onset) per seed: the decrease must be
  more than 3 standard errors over seeds; every seed must reach zero training error (else
  there is no TPT); NC4 must not increase.

Finding: with the MSE loss every metric collapses (full scale: NC1 by 24×, NC3 by 5×).
With cross-entropy, NC1, equinorm, NC3 and NC4 collapse but the spread of the pairwise
cosines does not move (factor 0.99 over 600 epochs, z ≈ 1.3) although their mean is
already −0.109 (simplex: −0.111): that metric fails at full scale. The quick scale runs
the MSE loss only.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.data.real import digits_subset
from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.measure.collapse import neural_collapse
from learnmech.stats import mean_se
from learnmech.studies.base import Figure, Study, StudyConfig, subset_of

__all__ = ["NeuralCollapse", "NeuralCollapseConfig"]

SCORED = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc3")
LABELS = {
    "nc1": "NC1  tr(Σ_W Σ_B⁺)/C",
    "nc2_equinorm": "NC2  std/mean of ‖μ_c − μ_G‖",
    "nc2_equiangular": "NC2  std of cos(μ_c, μ_c')",
    "nc2_maxangle": "NC2  mean |cos + 1/(C−1)|",
    "nc3": "NC3  ‖W/‖W‖ − M/‖M‖‖²",
    "nc4": "NC4  mismatch with nearest centre",
}


class NeuralCollapseConfig(StudyConfig):
    losses: list[str] = Field(default_factory=lambda: ["mse", "ce"])
    epochs: int = Field(150, ge=2, le=100_000)
    width: int = Field(256, ge=8, le=8192)
    depth: int = Field(3, ge=1, le=12)
    lr: float = Field(0.05, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    lr_decay: bool = Field(
        False,
        description="divide the learning rate by 10 at 1/3 and 2/3 of the epochs "
        "(Papyan et al.'s protocol)",
    )
    batch_size: int = Field(100, ge=1, le=100_000)
    train_size: int = Field(1000, ge=100, le=1797)
    records: int = Field(12, ge=3, le=200, description="log-spaced epochs at which NC is measured")
    data_seed: int = Field(0, ge=0)

    @field_validator("losses")
    @classmethod
    def _losses(cls, v: list[str]) -> list[str]:
        return subset_of(v, ("mse", "ce"), "losses")


def _epochs(cfg: NeuralCollapseConfig) -> list[int]:
    return sorted({round(e) for e in np.geomspace(1, cfg.epochs, cfg.records)})


class NeuralCollapse(Study):
    name = "neural-collapse"
    title = "Neural collapse in the terminal phase of training"
    summary = "NC1–NC4 shrink after zero training error (digits MLP, MSE and cross-entropy)"
    pillar = "universality"
    Config = NeuralCollapseConfig
    sweep_fields = frozenset({"losses"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3, "losses": ["mse"]},
        "full": {"seeds": 8, "epochs": 600, "records": 20, "losses": ["mse", "ce"]},
    }

    def grid(self, cfg: NeuralCollapseConfig) -> list[dict[str, Any]]:
        return [{"loss": loss} for loss in cfg.losses]

    def predict(self, cfg: NeuralCollapseConfig) -> list[Curve]:
        e = np.array(_epochs(cfg), dtype=np.float64)
        return [Curve("mean_cosine", "epoch", e, np.full_like(e, -1 / 9))] + [
            Curve(k, "epoch", e, np.zeros_like(e)) for k in (*SCORED, "nc4")
        ]

    def measure(
        self, cfg: NeuralCollapseConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, Y = digits_subset(cfg.train_size, cfg.data_seed)
        T = torch.nn.functional.one_hot(Y, 10).float()
        marks = set(_epochs(cfg))
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            torch.manual_seed(seed)
            sizes = [64] + [cfg.width] * cfg.depth
            layers: list[torch.nn.Module] = []
            for a, b in itertools.pairwise(sizes):
                layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            body = torch.nn.Sequential(*layers)
            head = torch.nn.Linear(cfg.width, 10)
            params = [*body.parameters(), *head.parameters()]
            opt = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
            gen = torch.Generator().manual_seed(seed)
            rec: dict[str, list[float]] = {}
            ep_rec: list[int] = []
            cuts = {cfg.epochs // 3 + 1, 2 * cfg.epochs // 3 + 1} if cfg.lr_decay else set()
            for ep in range(1, cfg.epochs + 1):
                if ep in cuts:
                    for group in opt.param_groups:
                        group["lr"] *= 0.1
                order = torch.randperm(X.shape[0], generator=gen)
                for i in range(0, X.shape[0], cfg.batch_size):
                    b = order[i : i + cfg.batch_size]
                    opt.zero_grad(set_to_none=True)
                    z = head(body(X[b]))
                    if point["loss"] == "mse":
                        loss = 0.5 * ((z - T[b]) ** 2).sum(1).mean()
                    else:
                        loss = torch.nn.functional.cross_entropy(z, Y[b])
                    loss.backward()
                    opt.step()
                if not math.isfinite(float(loss.detach())):
                    raise FloatingPointError(f"training diverged at epoch {ep}")
                if ep in marks:
                    with torch.no_grad():
                        h = body(X)
                        m = neural_collapse(h, Y, head.weight, head(h))
                    ep_rec.append(ep)
                    for k, v in m.items():
                        rec.setdefault(k, []).append(v)
            out[seed] = [Curve(k, "epoch", ep_rec, v) for k, v in rec.items()]
        return out

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _onset(t: TrialResult) -> int | None:
        """Index of the first recorded epoch with zero training error (TPT onset)."""
        err = t.curve("train_error")
        if err is None:
            return None
        hits = np.flatnonzero(err.values == 0)
        return int(hits[0]) if hits.size else None

    def compare(
        self, cfg: NeuralCollapseConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        for loss in cfg.losses:
            ts = [t for t in trials if t.status == "ok" and t.point["loss"] == loss]
            if not ts:
                continue
            onsets = [self._onset(t) for t in ts]
            reached = [t for t, o in zip(ts, onsets, strict=True) if o is not None]
            metrics.append(
                Metric(
                    f"{loss}_seeds_without_tpt",
                    len(ts) - len(reached),
                    0,
                    "<=",
                    description="seeds that never reached zero training error (no terminal "
                    "phase to test)",
                )
            )
            for key in SCORED:
                logs = []
                for t in reached:
                    c = t.curve(key)
                    o = self._onset(t)
                    if c is None or o is None or o >= c.values.size - 1:
                        continue
                    a, b = c.values[o], c.values[-1]
                    if a > 0 and b > 0:
                        logs.append(math.log(b / a))
                if len(logs) < 2:
                    continue
                m, se = mean_se(np.array(logs))
                z = -float(m) / float(se) if se > 0 else (math.inf if m < 0 else -math.inf)
                metrics.append(
                    Metric(
                        f"{loss}_{key}_decrease_z",
                        z,
                        3.0,
                        ">=",
                        stderr=None,
                        description=f"{LABELS[key]}: log(end/TPT onset) = {m:.3f} ± {se:.3f} "
                        f"over seeds (factor {math.exp(m):.3g}); must fall by more than 3 SE",
                    )
                )
            nc4 = [
                (t.curve("nc4").values[self._onset(t)], t.curve("nc4").values[-1])
                for t in reached
                if t.curve("nc4") is not None
            ]
            if nc4:
                a = float(np.mean([p for p, _ in nc4]))
                b = float(np.mean([q for _, q in nc4]))
                metrics.append(
                    Metric(
                        f"{loss}_nc4_change",
                        b - a,
                        0.0,
                        "<=",
                        description=f"{LABELS['nc4']}: {a:.4f} at TPT onset → {b:.4f} at the "
                        "end (mean over seeds); must not increase",
                    )
                )
            cos = [
                t.curve("mean_cosine").values[-1]
                for t in reached
                if t.curve("mean_cosine") is not None
            ]
            if cos:
                metrics.append(
                    Metric(
                        f"{loss}_final_mean_cosine",
                        float(np.mean(cos)),
                        None,
                        description="mean pairwise cosine of centred class means at the end "
                        "(simplex ETF: −1/9 = −0.111)",
                    )
                )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: NeuralCollapseConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        plt = _plt()
        keys = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4", "train_error")
        fig, axes = plt.subplots(1, len(keys), figsize=(3.1 * len(keys), 3.2))
        for ax, key in zip(axes, keys, strict=True):
            for loss in cfg.losses:
                ts = [
                    t
                    for t in trials
                    if t.status == "ok" and t.point["loss"] == loss and t.curve(key) is not None
                ]
                if not ts:
                    continue
                n = min(t.curve(key).values.size for t in ts)
                ep = ts[0].curve(key).coords[:n]
                vals = np.array([t.curve(key).values[:n] for t in ts])
                m, se = mean_se(vals)
                line = ax.plot(ep, m, marker="o", ms=3, label=loss)[0]
                ax.fill_between(ep, m - 2 * se, m + 2 * se, alpha=0.2, color=line.get_color())
                on = [self._onset(t) for t in ts]
                on = [ep[o] for o in on if o is not None and o < n]
                if on:
                    ax.axvline(min(on), color=line.get_color(), ls=":", lw=1)
            ax.set(
                xscale="log",
                yscale="linear" if key in ("nc4", "train_error") else "log",
                xlabel="epoch",
                title=LABELS.get(key, "training error"),
            )
            ax.title.set_fontsize(8)
        axes[0].legend()
        p = save_png(fig, outdir / "neural-collapse.png")
        return [
            Figure(
                p,
                "NC1–NC4 on the training set over epochs (mean ± 2 SE over seeds); dotted: "
                "first zero training error (start of the terminal phase).",
            )
        ]
