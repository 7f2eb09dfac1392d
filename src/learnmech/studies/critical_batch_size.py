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
  at log-spaced losses along a full-batch SGD run (rate ``noise_lr``) from init to the
  target.
* analyze — fit S = S_min + E_min/B (weighted by the seeds' spread, floored at the step
  resolution), B_crit = E_min/S_min with its delta-method SE from the stated errors only
  (not inflated by the fit's χ²: lack of fit is its own claim).

Claims (95% bounds; degrees of freedom: seeds − 1):

* B_crit lies inside the range of B_noise along the run: B_crit − min B_noise > 0 and
  max B_noise − B_crit > 0 (``above``; a noisy run can no longer pass by widening);
* McCandlish et al.'s prediction B_crit ≈ B_noise, with B_noise averaged over the run
  weighted by full-batch steps (≈ ∫B_noise dS_min / S_min): |log(B_crit / B̄_noise)| ≤
  log 2 (``within``, agreement to a factor of two; their Fig. 4 shows the spread across
  tasks);
* the hyperbola fits the measured S(B) within its errors (``lack_of_fit``).

Reported: B_crit, the fit's R², the B_simple/B_noise ratio.

Negative control ``fixed-lr``: one small learning rate (0.05) for every B. The S–E
hyperbola with B_crit ≈ B_noise assumes the best rate per batch (McCandlish et al. §2.2:
ε_opt(B) = ε_max/(1 + B_noise/B)); at a fixed small rate large batches stop saving
steps far below B_noise, so the B_crit ≈ B̄_noise claim must fail. The main run fails
that claim too (a finding: log(B_crit/B̄_noise) = −4.3, 95% margin 1.0), so the quick
test checks that the control's miss (−9.1, margin 1.0) is larger beyond both margins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from learnmech.claims import Claims, Estimate
from learnmech.data.real import digits_subset
from learnmech.laws.batch import fit_batch_tradeoff
from learnmech.measure.gradients import noise_scale
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import legend, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.train.loops import steps_to_target

__all__ = ["CriticalBatchSize", "CriticalBatchSizeConfig"]


class CriticalBatchSizeConfig(StudyConfig):
    batch_sizes: list[int] = Sweep([8, 32, 128, 1000], key="batch", n=3, ge=1)
    lrs: list[float] = Values([0.1, 0.2, 0.4, 0.8, 1.6], gt=0, le=100)
    target_loss: float = Field(0.05, gt=0, lt=3)
    max_steps: int = Field(6000, ge=10, le=10_000_000)
    samples: int = Field(1000, ge=50, le=1797)
    width: int = Field(128, ge=4, le=4096)
    noise_lr: float = Field(0.4, gt=0, le=100, description="SGD rate of the noise-scale run")
    noise_points: int = Field(6, ge=2, le=50)
    hessian_samples: int = Field(40, ge=2, le=10_000)
    data_seed: int = Field(0, ge=0)


def _model(cfg: CriticalBatchSizeConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 10))


def _eval_every(batch: int, n: int) -> int:
    """Check the full training loss every k steps, k ≈ n/(8B): the check then costs about
    as much as the steps between checks; S is known to within k steps."""
    return max(1, n // (8 * batch))


class CriticalBatchSize(Study):
    name = "critical-batch-size"
    title = "Critical batch size: S–E trade-off vs the gradient noise scale"
    summary = "steps and examples to a target loss over batch sizes; B_crit vs B_noise"
    pillar = "empirical laws"
    Config = CriticalBatchSizeConfig
    controls = (
        Control(
            "fixed-lr",
            {"lrs": [0.05]},
            ("b_crit_vs_b_noise",),
            "one small rate for every B: the best rate per batch is what makes B_crit ≈ B_noise",
        ),
    )
    #: the noise-scale run reads no sweep rate, a sweep no noise setting
    hashed_for: ClassVar[dict[str, dict[str, Any]]] = {
        "lrs": {"kind": "sweep"},
        **{f: {"kind": "noise"} for f in ("noise_lr", "noise_points", "hessian_samples")},
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {
            "seeds": 5,
            "batch_sizes": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
            "lrs": [0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0],
            "target_loss": 0.02,
            "noise_lr": 0.3,
            "noise_points": 10,
            "hessian_samples": 100,
        },
    }

    def memory_bytes(self, cfg: CriticalBatchSizeConfig) -> int:
        """One step at the largest batch: its inputs, hidden activations and logits,
        B·(64 + width + 10) float32 numbers (a lower bound: autograd keeps more)."""
        return int(max(cfg.batch_sizes) * (64 + cfg.width + 10) * 4)

    def grid(self, cfg: CriticalBatchSizeConfig) -> list[dict[str, Any]]:
        return [{"kind": "noise"}] + [{"kind": "sweep", "batch": b} for b in cfg.batch_sizes]

    def measure(
        self, cfg: CriticalBatchSizeConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, Y = (t.to(device) for t in digits_subset(cfg.samples, cfg.data_seed))
        ce = nn.functional.cross_entropy
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            if point["kind"] == "sweep":
                b = int(point["batch"])
                steps = []
                for lr in cfg.lrs:
                    model = _model(cfg, seed).to(device)
                    steps.append(
                        steps_to_target(
                            model,
                            torch.optim.SGD(model.parameters(), lr=lr),
                            X,
                            Y,
                            ce,
                            cfg.target_loss,
                            batch_size=b,
                            max_steps=cfg.max_steps,
                            generator=torch.Generator().manual_seed(seed),
                            every=_eval_every(b, X.shape[0]),
                        )
                    )
                best = min(steps)
                if not math.isfinite(best):
                    raise FloatingPointError(f"no learning rate reached the target at B = {b}")
                out[seed] = [
                    Curve("steps_to_target", "batch", [b], [best]),
                    Curve("best_lr", "batch", [b], [cfg.lrs[int(np.argmin(steps))]]),
                ]
                continue
            # reference full-batch run: noise scales at log-spaced losses down to the target
            model = _model(cfg, seed).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=cfg.noise_lr)
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

    def analyze(self, cfg: CriticalBatchSizeConfig, theory: list[Curve], trials: Trials) -> dict:
        """The S(B) hyperbola fit and the noise scale along the full-batch runs."""
        out: dict[str, Any] = {"fit": None, "noise": None}
        sweep = trials.where(kind="sweep")
        tab = {int(b): ts.last("steps_to_target") for b, ts in sweep.by("batch").items()}
        if len(tab) >= 3:
            res = [_eval_every(b, cfg.samples) / math.sqrt(12) for b in tab]
            out["fit"] = fit_batch_tradeoff(list(tab), list(tab.values()), res)
        noise = trials.where(kind="noise").has("b_noise")
        if noise:
            curves = {k: noise.stack(k)[1] for k in ("b_noise", "b_noise_se", "b_simple")}
            curves["steps"] = noise.stack("step_at_level")[1]
            curves["loss"] = noise.stack("b_noise")[0]
            out["noise"] = curves
        return out

    def claims(self, cfg: CriticalBatchSizeConfig, s: dict) -> list[Metric]:
        out = Claims()
        fit, nz = s["fit"], s["noise"]
        if fit is None:
            return out
        bc = Estimate(fit.b_crit, fit.b_crit_se, fit.df)
        out.reported(
            "b_crit",
            bc,
            description=f"E_min/S_min from S = S_min + E_min/B: S_min = {fit.s_min:.1f}, "
            f"E_min = {fit.e_min:.0f}",
        )
        out.reported("hyperbola_fit_r2", fit.r2, description="weighted R²")
        out.lack_of_fit(
            "hyperbola_fit",
            fit.chi2,
            fit.dof,
            description="S = S_min + E_min/B fits the measured steps within their errors",
        )
        if nz is None:
            return out
        bn, bn_se = nz["b_noise"], nz["b_noise_se"]
        n_seeds = bn.shape[0]
        mean_bn = bn.mean(0)
        # SE of each level's mean: the spread over seeds and the Hessian-sampling SE
        level_se = np.sqrt(bn.var(0, ddof=1) / n_seeds + (bn_se**2).mean(0) / n_seeds)
        lo, hi = int(np.argmin(mean_bn)), int(np.argmax(mean_bn))
        df = n_seeds - 1
        b_lo = Estimate(mean_bn[lo], level_se[lo], df)
        b_hi = Estimate(mean_bn[hi], level_se[hi], df)
        out.above(
            "b_crit_above_min_b_noise",
            bc - b_lo,
            0.0,
            description=f"B_crit − the smallest B_noise along the run ({mean_bn[lo]:.0f})",
        )
        out.above(
            "b_crit_below_max_b_noise",
            b_hi - bc,
            0.0,
            description=f"the largest B_noise along the run ({mean_bn[hi]:.0f}) − B_crit",
        )
        # the model's own estimate: B_noise averaged over the run, weighted by the
        # full-batch steps spent at each level (a proxy for dS_min: fixed-rate GD steps)
        seg = np.diff(nz["steps"], axis=1)
        mid = 0.5 * (bn[:, 1:] + bn[:, :-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed = (seg * mid).sum(1) / seg.sum(1)
        weighted = Estimate.of(per_seed)
        out.within(
            "b_crit_vs_b_noise",
            bc.log() - weighted.log(),
            0.0,
            math.log(2),
            description=f"log(B_crit / B̄_noise), B̄_noise = {weighted.value:.0f} (step-"
            "weighted over the run): agreement to a factor of 2",
        )
        out.reported(
            "b_simple_over_b_noise",
            float(np.median(nz["b_simple"].mean(0) / mean_bn)),
            description="median over the run of B_simple/B_noise (1 if the Hessian ∝ I)",
        )
        return out

    def figures(self, cfg: CriticalBatchSizeConfig, s: dict, outdir: Path) -> list[Figure]:
        fit, nz = s["fit"], s["noise"]
        fig, (a1, a2) = subplots(1, 2, figsize=(10, 3.8))
        if fit is not None:
            S, B = fit.steps, fit.batch
            lab = "measured (best lr per B)"
            a1.errorbar(S * B, S, 2 * fit.steps_se, marker="o", ls="none", capsize=3, label=lab)
            bb = np.geomspace(B.min() / 2, B.max() * 2, 200)
            ss = fit.steps_at(bb)
            lab = f"(S/S_min−1)(E/E_min−1)=1, B_crit={fit.b_crit:.0f}"
            a1.plot(ss * bb, ss, "k--", lw=1, label=lab)
            a1.set(xscale="log", yscale="log", xlabel="examples E", ylabel="steps S")
            a1.set_title(f"to training loss {cfg.target_loss:g}")
            a2.axhline(fit.b_crit, color="k", ls="--", lw=1, label="measured B_crit")
        if nz is not None:
            for i in range(nz["b_noise"].shape[0]):
                lab = ("B_noise = tr(HΣ)/GᵀHG", "B_simple = tr Σ/|G|²") if i == 0 else ("", "")
                a2.plot(nz["loss"], nz["b_noise"][i], "o-", color="C0", alpha=0.6, label=lab[0])
                a2.plot(nz["loss"], nz["b_simple"][i], "s:", color="C1", alpha=0.6, label=lab[1])
        a2.set(xscale="log", yscale="log", xlabel="training loss (full-batch run)")
        a2.set(ylabel="batch size", title="noise scale along the run")
        a2.invert_xaxis()
        legend(a1, a2)
        caption = (
            "Left: steps vs examples to the target loss over batch sizes, with the fitted "
            "hyperbola (McCandlish et al. 2018, Fig. 1). Right: the gradient noise scale "
            "along a full-batch run, and the measured B_crit."
        )
        return [Figure(save_png(fig, outdir / "critical-batch-size.png"), caption)]
