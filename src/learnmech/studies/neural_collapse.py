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
  on scikit-learn's digits (10 classes), with the MSE loss (one-hot targets) and with
  cross-entropy; NC1–NC4 (:func:`learnmech.measure.collapse.neural_collapse`) at
  log-spaced epochs on the training set. ``lr_decay`` divides the rate by 10 at 1/3 and
  2/3 of training, as Papyan et al. did.
* claims, per loss — every seed reaches zero training error (``exact``); for NC1, both
  NC2 metrics and NC3, log(end / TPT onset) has a 95% upper bound below 0 (``below``);
  NC4's change is at most one training example, 1/n (``below``, a non-inferiority
  margin fixed by the data size); the final mean cosine is −1/(C − 1) to within
  0.2/(C − 1), a fifth of the way from the simplex angle to orthogonality (``within``).
* negative control ``frozen-features`` — only the classifier trains, on fixed random
  features: the head still reaches zero training error, but features cannot collapse, so
  the NC1 and equinorm decreases must fail. Fixed features make those decreases exactly 0
  (a ``below`` 0 claim fails at any seed count), so the control runs 2 seeds.

Finding: with the MSE loss every metric collapses (full scale: NC1 by 24×, NC3 by 5×).
With cross-entropy, NC1, equinorm, NC3 and NC4 collapse but the spread of the pairwise
cosines does not move (factor 0.99 over 600 epochs) although their mean is already −0.109
(simplex: −0.111): that claim fails at full scale. The quick scale runs the MSE loss only.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from learnmech.claims import Claims, Estimate
from learnmech.data.real import digits_subset
from learnmech.measure.collapse import neural_collapse
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import band, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials

__all__ = ["NeuralCollapse", "NeuralCollapseConfig"]

C = 10  # digits classes
SCORED = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc3")
LABELS = {
    "nc1": "NC1  tr(Σ_W Σ_B⁺)/C",
    "nc2_equinorm": "NC2  std/mean of ‖μ_c − μ_G‖",
    "nc2_equiangular": "NC2  std of cos(μ_c, μ_c')",
    "nc3": "NC3  ‖W/‖W‖ − M/‖M‖‖²",
    "nc4": "NC4  mismatch with nearest centre",
    "train_error": "training error",
}
ETF_COSINE = -1 / (C - 1)
ETF_TOL = 0.2 / (C - 1)  # a fifth of the way from the simplex angle to orthogonality


class NeuralCollapseConfig(StudyConfig):
    losses: list[Literal["mse", "ce"]] = Sweep(["mse", "ce"], key="loss")
    epochs: int = Field(150, ge=2, le=100_000)
    width: int = Field(256, ge=8, le=8192)
    depth: int = Field(3, ge=1, le=12)
    lr: float = Field(0.05, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    lr_decay: bool = Field(False, description="divide the lr by 10 at 1/3 and 2/3 of training")
    train_body: bool = Field(True, description="train the features (False: the head only)")
    batch_size: int = Field(100, ge=1, le=100_000)
    train_size: int = Field(1000, ge=100, le=1797)
    records: int = Field(12, ge=3, le=200, description="log-spaced epochs at which NC is measured")
    data_seed: int = Field(0, ge=0)


def _epochs(cfg: NeuralCollapseConfig) -> list[int]:
    return sorted({round(e) for e in np.geomspace(1, cfg.epochs, cfg.records)})


class NeuralCollapse(Study):
    name = "neural-collapse"
    title = "Neural collapse in the terminal phase of training"
    summary = "NC1–NC4 shrink after zero training error (digits MLP, MSE and cross-entropy)"
    pillar = "universality"
    Config = NeuralCollapseConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3, "losses": ["mse"]},
        "full": {"seeds": 8, "epochs": 600, "records": 20, "losses": ["mse", "ce"]},
    }
    controls = (
        Control(
            "frozen-features",
            {
                "train_body": False,
                "width": 2048,
                "depth": 1,
                "lr": 0.003,
                "epochs": 400,
                "seeds": 2,
            },
            ("mse_nc1_decrease", "mse_nc2_equinorm_decrease"),
            "only the classifier trains, on 2048 fixed random ReLU features: it still fits the "
            "training set, but the features cannot collapse",
        ),
    )

    def predict(self, cfg: NeuralCollapseConfig) -> list[Curve]:
        e = np.array(_epochs(cfg), dtype=np.float64)
        return [Curve("mean_cosine", "epoch", e, np.full_like(e, ETF_COSINE))] + [
            Curve(k, "epoch", e, np.zeros_like(e)) for k in (*SCORED, "nc4")
        ]

    def measure(
        self, cfg: NeuralCollapseConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, Y = (t.to(device) for t in digits_subset(cfg.train_size, cfg.data_seed))
        T = torch.nn.functional.one_hot(Y, C).float()
        marks, out = set(_epochs(cfg)), {}
        cuts = {cfg.epochs // 3 + 1, 2 * cfg.epochs // 3 + 1} if cfg.lr_decay else set()
        for seed in seeds:
            torch.manual_seed(seed)
            sizes = [64] + [cfg.width] * cfg.depth
            body = torch.nn.Sequential(
                *[m for a, b in itertools.pairwise(sizes) for m in (nn.Linear(a, b), nn.ReLU())]
            ).to(device)
            head = nn.Linear(cfg.width, C).to(device)
            params = [*head.parameters()] + ([*body.parameters()] if cfg.train_body else [])
            opt = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
            gen = torch.Generator().manual_seed(seed)
            rec: dict[str, list[float]] = {}
            # a frozen body is a fixed map: its features once, not once per batch (the
            # same numbers up to float association)
            feats = None if cfg.train_body else body(X).detach()
            for ep in range(1, cfg.epochs + 1):
                for group in opt.param_groups:
                    group["lr"] *= 0.1 if ep in cuts else 1.0
                for b in torch.randperm(X.shape[0], generator=gen).split(cfg.batch_size):
                    b = b.to(device)
                    z = head(body(X[b]) if feats is None else feats[b])
                    if point["loss"] == "mse":
                        loss = 0.5 * ((z - T[b]) ** 2).sum(1).mean()
                    else:
                        loss = torch.nn.functional.cross_entropy(z, Y[b])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if not math.isfinite(float(loss.detach())):
                    raise FloatingPointError(f"training diverged at epoch {ep}")
                if ep in marks:
                    with torch.no_grad():
                        h = body(X)
                        for k, v in neural_collapse(h, Y, head.weight, head(h)).items():
                            rec.setdefault(k, []).append(v)
            out[seed] = [Curve(k, "epoch", sorted(marks), v) for k, v in rec.items()]
        return out

    def analyze(self, cfg: NeuralCollapseConfig, theory: list[Curve], trials: Trials) -> Any:
        """Per loss: each seed's TPT onset (first recorded epoch with zero training error,
        None when that is only the last one: no terminal phase observed) and every
        metric's value there and at the end."""
        s: dict[str, Any] = {}
        for loss, ts in trials.by("loss").items():
            ep, err = ts.stack("train_error")
            onset = [int(np.argmax(e == 0)) if (e[:-1] == 0).any() else None for e in err]
            row: dict[str, Any] = {"seeds": len(ts), "onset": onset, "epochs": ep, "curves": {}}
            for key in (*SCORED, "nc4", "mean_cosine", "train_error"):
                _, v = ts.stack(key)
                row["curves"][key] = v
                pairs = [(v[i, o], v[i, -1]) for i, o in enumerate(onset) if o is not None]
                row[key] = np.array(pairs).reshape(-1, 2)
            s[loss] = row
        return s

    def claims(self, cfg: NeuralCollapseConfig, s: dict[str, Any]) -> list[Metric]:
        out = Claims()
        for loss, r in s.items():
            missing = sum(o is None for o in r["onset"])
            out.exact(
                f"{loss}_seeds_without_tpt",
                missing,
                0,
                description="seeds with no terminal phase (no zero training error "
                "before the last record)",
            )
            for key in SCORED:
                start, end = r[key].T
                logs = np.log(end / start) if r[key].size else np.zeros(0)
                est = Estimate.of(logs)
                out.below(
                    f"{loss}_{key}_decrease",
                    est,
                    0.0,
                    strict=True,
                    description=f"{LABELS[key]}: log(end / TPT onset), factor "
                    f"{math.exp(est.value) if est.finite else math.nan:.3g}",
                )
            d = Estimate.paired(r["nc4"][:, 1], r["nc4"][:, 0])
            out.below(
                f"{loss}_nc4_change",
                d,
                1 / cfg.train_size,
                description=f"{LABELS['nc4']}: end − TPT onset; may rise by at "
                "most one training example",
            )
            out.within(
                f"{loss}_final_mean_cosine",
                Estimate.of(r["mean_cosine"][:, 1]),
                ETF_COSINE,
                ETF_TOL,
                description="mean pairwise cosine of centred class means at the "
                "end; simplex ETF: −1/(C − 1)",
            )
            out.reported(
                f"{loss}_tpt_onset_epoch",
                Estimate.of([r["epochs"][o] for o in r["onset"] if o is not None]),
                description="first recorded epoch with zero training error",
            )
        return out

    def figures(self, cfg: NeuralCollapseConfig, s: dict[str, Any], outdir: Path) -> list[Figure]:
        keys = ("nc1", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4", "train_error")
        fig, axes = subplots(1, len(keys), figsize=(3.1 * len(keys), 3.2))
        for ax, key in zip(axes, keys, strict=True):
            for loss, r in s.items():
                v = r["curves"][key]
                if not v.size:
                    continue
                se = v.std(0, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else None
                line = band(ax, r["epochs"], v.mean(0), se, marker="o", ms=3, label=loss)
                on = [r["epochs"][o] for o in r["onset"] if o is not None]
                if on:
                    ax.axvline(min(on), color=line.get_color(), ls=":", lw=1)
            lin = key in ("nc4", "train_error")
            ax.set(xscale="log", yscale="linear" if lin else "log", xlabel="epoch")
            ax.set_title(LABELS[key], fontsize=8)
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend()
        caption = (
            "NC1–NC4 on the training set over epochs (mean ± 2 SE over seeds); dotted: "
            "first zero training error (start of the terminal phase)."
        )
        return [Figure(save_png(fig, outdir / "neural-collapse.png"), caption)]
