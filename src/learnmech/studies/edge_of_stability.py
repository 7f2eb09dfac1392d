"""Study ``edge-of-stability``: sharpness rises to the optimizer's stability threshold and stays.

Claim under test (Cohen, Kaur, Li, Kolter & Talwalkar 2021; Cohen et al. 2022 for Adam;
REFERENCES §3): under full-batch GD with step η the top Hessian eigenvalue (largest
algebraic) rises during training — progressive sharpening — until it reaches 2/η, then
hovers there while the loss keeps falling non-monotonically. For Adam the preconditioned
sharpness λ_max(P⁻¹H) does the same at (2 + 2β₁)/((1 − β₁)η) = 38/η.

* predict — the ratio sharpness/threshold rises to 1 and, averaged over the rest of
  training, stays within the band Cohen et al. report ("at, or just above": we score
  [0.95, 1.15]); the loss goes up on a non-zero fraction of steps once there, never before.
* measure — tanh MLPs (depth 2) and, at full scale, a small tanh CNN (two 3×3
  convolutions) on 300 digits images, MSE on one-hot targets, full-batch GD at several η
  and Adam. Finding: the CNN at η = 0.2 and 0.3 does not self-stabilise — full-batch GD
  diverges within 3,000 steps — so its step sizes stop at 0.1 (``cnn_gd_lrs``);
  :class:`~learnmech.measure.hessian.SharpnessProbe` every ``probe_every`` steps (Lanczos
  to 1e-3, warm-started), its time share recorded.

Finding: the probe costs more than the training it watches here (``probe_time_share``
≈ 2.3 at quick scale, against the issue's goal of 0.3): each reading needs ~14–21
Hessian-vector products for a 1e-3 residual, and a full-batch step of this small network
costs about one product. ``benchmarks/bench_sharpness_probe.py`` measures the whole
accuracy/cost frontier; no setting with a useful accuracy reaches 30%.

Claims, for each optimizer and η (95% bounds over seeds):

* every seed reaches 0.95 of the threshold (``exact``, progressive sharpening);
* the mean ratio after reaching it lies in [0.95, 1.15], i.e. within 0.10 of 1.05
  (``within``: the whole confidence interval inside the band);
* before the threshold the loss falls on (almost) every step — GD with η < 2/λ descends
  (the descent lemma) — at most 1% of steps rise (``below``); after it the loss rises on
  a positive fraction of steps (``above`` 0).

Reported: time to the threshold, the probe's cost.

Negative control ``minibatch``: SGD with batches of 16 of the 300 images at η = 0.4.
Minibatch noise keeps the sharpness well below 2/η (Jastrzębski et al. 2020; Cohen et al.
2021, §5): the threshold claims must fail.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from learnmech.claims import Claims, Estimate
from learnmech.data.real import digits_subset
from learnmech.measure.hessian import SharpnessProbe
from learnmech.records import Curve, Figure, Metric, TrialResult
from learnmech.report.plots import save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials
from learnmech.train.recorder import Recorder

__all__ = ["EdgeOfStability", "EdgeOfStabilityConfig"]

BAND = (0.95, 1.15)  # "at, or just above" the threshold (Cohen et al. 2021, §3)
REACHED = 0.95
MONOTONE = 0.01  # at most 1% of steps may raise the loss before the threshold


def _same(stored: dict[str, Any], point: dict[str, Any]) -> bool:
    return (
        stored["optimizer"] == point["optimizer"]
        and float(stored["lr"]) == point["lr"]
        and stored.get("model", "mlp") == point.get("model", "mlp")
    )


class _Image(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 1, 8, 8)


def _model(kind: str, width: int) -> nn.Module:
    """Depth-2 tanh MLP, or a small tanh CNN on the 8×8 images (two 3×3 convolutions with
    ``width // 4`` channels, then a linear readout)."""
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(64, width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, 10),
        )
    c = max(width // 4, 1)
    return nn.Sequential(
        _Image(),
        nn.Conv2d(1, c, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(c, c, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(c * 64, 10),
    )


class EdgeOfStabilityConfig(StudyConfig):
    models: list[str] = Sweep(["mlp"], key="model", order=None, choices=("mlp", "cnn"))
    cnn_gd_lrs: list[float] = Sweep(
        [0.05, 0.1],
        key="lr",
        n=0,
        gt=0,
        le=100,
        description="GD step sizes for the CNN (its sharpness is higher; at 0.2 and 0.3 "
        "full-batch GD diverged within 3,000 steps instead of self-stabilising)",
    )
    gd_lrs: list[float] = Sweep([0.4, 0.8], key="lr", n=0, gt=0, le=100)
    adam_lrs: list[float] = Sweep([2e-3], key="lr", n=0, gt=0, le=100)
    steps: int = Field(800, ge=20, le=1_000_000)
    batch: int = Field(0, ge=0, le=100_000, description="minibatch size (0: full batch)")
    probe_every: int = Field(10, ge=1, le=10_000)
    samples: int = Field(300, ge=20, le=1797)
    width: int = Field(64, ge=4, le=4096)
    data_seed: int = Field(0, ge=0)


class EdgeOfStability(Study):
    name = "edge-of-stability"
    title = "Edge of stability: sharpness rises to 2/η (38/η for Adam) and hovers there"
    summary = "full-batch GD and Adam on digits: λ_max vs the stability threshold over training"
    pillar = "empirical laws"
    Config = EdgeOfStabilityConfig
    controls = (
        Control(
            "minibatch",
            {"batch": 16, "gd_lrs": [0.4], "adam_lrs": []},
            ("gd_lr0.4_seeds_not_reaching_threshold", "gd_lr0.4_plateau_ratio"),
            "minibatch SGD (16 of 300): noise keeps the sharpness well below 2/η",
        ),
    )
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {
            "models": ["mlp", "cnn"],
            "seeds": 4,
            "steps": 3000,
            "gd_lrs": [0.2, 0.4, 0.8, 1.2],
            "adam_lrs": [5e-4, 1e-3],
        },
    }

    def grid(self, cfg: EdgeOfStabilityConfig) -> list[dict[str, Any]]:
        pts = []
        for m in cfg.models:
            lrs = cfg.gd_lrs if m == "mlp" else cfg.cnn_gd_lrs
            pts += [{"model": m, "optimizer": "gd", "lr": lr} for lr in lrs]
            pts += [{"model": m, "optimizer": "adam", "lr": lr} for lr in cfg.adam_lrs]
        return pts

    def predict(self, cfg: EdgeOfStabilityConfig) -> list[Curve]:
        lrs = np.array(cfg.gd_lrs + cfg.adam_lrs, dtype=np.float64)
        return [Curve("plateau_ratio", "lr", lrs, np.ones_like(lrs))]

    def measure(
        self, cfg: EdgeOfStabilityConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, lab = (t.to(device) for t in digits_subset(cfg.samples, cfg.data_seed))
        T = nn.functional.one_hot(lab, 10).float()

        def loss_fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return 0.5 * ((z - t) ** 2).sum(1).mean()

        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            torch.manual_seed(seed)
            model = _model(point.get("model", "mlp"), cfg.width).to(device)
            gen = torch.Generator().manual_seed(seed)
            lr = float(point["lr"])
            opt = (
                torch.optim.SGD(model.parameters(), lr=lr)
                if point["optimizer"] == "gd"
                else torch.optim.Adam(model.parameters(), lr=lr)
            )
            probe = SharpnessProbe(loss_fn, (X, T), opt, every=cfg.probe_every, tol=1e-3)
            losses: list[float] = []
            t_train = t_probe = 0.0
            with Recorder(model, [probe], every=1) as rec:
                for step in range(1, cfg.steps + 1):
                    t0 = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    if cfg.batch and cfg.batch < X.shape[0]:
                        b = torch.randint(0, X.shape[0], (cfg.batch,), generator=gen)
                        loss_fn(model(X[b.to(device)]), T[b.to(device)]).backward()
                        with torch.no_grad():
                            loss = loss_fn(model(X), T)
                    else:
                        loss = loss_fn(model(X), T)
                        loss.backward()
                    opt.step()
                    t1 = time.perf_counter()
                    losses.append(float(loss.detach()))
                    rec.step(step)
                    t_train += t1 - t0
                    t_probe += time.perf_counter() - t1
            if not all(math.isfinite(v) for v in losses):
                raise FloatingPointError(f"training diverged at lr = {lr}")
            st, ratio = rec.series("sharpness_ratio")
            out[seed] = [
                Curve("sharpness_ratio", "step", st, ratio),
                Curve("loss", "step", np.arange(1, cfg.steps + 1), losses),
                Curve("probe_time_share", "step", [cfg.steps], [t_probe / t_train]),
            ]
        return out

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _summary(t: TrialResult) -> dict[str, float] | None:
        r, lo = t.curve("sharpness_ratio"), t.curve("loss")
        if r is None or lo is None:
            return None
        hit = np.flatnonzero(r.values >= REACHED)
        inc = np.diff(lo.values) > 0
        if hit.size == 0:
            return {"reached": 0.0, "increase_before": float(inc.mean())}
        t_hit = float(r.coords[hit[0]])
        after = r.values[hit[0] :]
        k = int(t_hit)
        return {
            "reached": 1.0,
            "time_to_threshold": t_hit,
            "plateau_ratio": float(after.mean()),
            "plateau_sd": float(after.std()),
            "increase_before": float(inc[: max(k - 1, 0)].mean()) if k > 1 else 0.0,
            "increase_after": float(inc[k - 1 :].mean()) if k - 1 < inc.size else 0.0,
        }

    def analyze(self, cfg: EdgeOfStabilityConfig, theory: list[Curve], trials: Trials) -> dict:
        """Per grid point: each seed's summary, and its first trial's curves."""
        out: dict[str, Any] = {}
        for p in self.grid(cfg):
            ts = [t for t in trials if _same(t.point, p)]
            sums = [s for s in (self._summary(t) for t in ts) if s is not None]
            if not sums:
                continue
            tag = ("" if p["model"] == "mlp" else f"{p['model']}_") + (
                f"{p['optimizer']}_lr{p['lr']:g}"
            )
            out[tag] = {"point": p, "sums": sums, "first": ts[0]}
        out["probe_time_share"] = [
            t.curve("probe_time_share").values[0] for t in trials.has("probe_time_share")
        ]
        return out

    def claims(self, cfg: EdgeOfStabilityConfig, s: dict) -> list[Metric]:
        out = Claims()
        for tag, r in s.items():
            if tag == "probe_time_share":
                continue
            p, sums = r["point"], r["sums"]
            thr = "38/η (preconditioned)" if p["optimizer"] == "adam" else "2/η"
            reached = [x for x in sums if x["reached"]]
            out.exact(
                f"{tag}_seeds_not_reaching_threshold",
                len(sums) - len(reached),
                0,
                description=f"seeds whose sharpness never reached {REACHED}·{thr} "
                f"in {cfg.steps} steps (progressive sharpening)",
            )
            if not reached:
                continue
            lo, hi = BAND
            out.within(
                f"{tag}_plateau_ratio",
                Estimate.of([x["plateau_ratio"] for x in reached]),
                (lo + hi) / 2,
                (hi - lo) / 2,
                description=f"mean sharpness/{thr} after first reaching it; band {BAND}: "
                "'at, or just above' the threshold (Cohen et al. 2021, §3)",
            )
            out.below(
                f"{tag}_loss_increase_fraction_before",
                Estimate.of([x["increase_before"] for x in reached]),
                MONOTONE,
                description="fraction of steps where the loss rises before the threshold "
                "(descent lemma: none while η < 2/λ)",
            )
            out.above(
                f"{tag}_loss_increase_fraction_after",
                Estimate.of([x["increase_after"] for x in reached]),
                0.0,
                strict=True,
                description="fraction of steps where the loss rises after the threshold",
            )
            out.reported(
                f"{tag}_time_to_threshold",
                Estimate.of([x["time_to_threshold"] for x in reached]),
                description="steps until sharpness first reaches 0.95 of the threshold",
            )
        if s.get("probe_time_share"):
            out.reported(
                "probe_time_share",
                Estimate.of(s["probe_time_share"]),
                description=f"sharpness-probe time / training time (probe every "
                f"{cfg.probe_every} steps, Lanczos to 1e-3)",
            )
        return out

    def figures(self, cfg: EdgeOfStabilityConfig, s: dict, outdir: Path) -> list[Figure]:
        fig, (a1, a2) = subplots(1, 2, figsize=(10, 3.8))
        for tag, r in s.items():
            if tag == "probe_time_share":
                continue
            p, t = r["point"], r["first"]
            lr = float(p["lr"])
            label = f"{p['model']} {'GD' if p['optimizer'] == 'gd' else 'Adam'} η={lr:g}"
            thr = 2 / lr if p["optimizer"] == "gd" else 38 / lr
            rr = t.curve("sharpness_ratio")
            line = a2.plot(rr.coords, rr.values * thr, label=label)[0]
            a2.axhline(thr, color=line.get_color(), ls="--", lw=1)
            lo = t.curve("loss")
            a1.plot(lo.coords, lo.values, color=line.get_color(), label=label)
        a1.set(yscale="log", xlabel="step", ylabel="training loss", title="loss (first seed)")
        a2.set(yscale="log", xlabel="step", ylabel="sharpness (dashed: 2/η or 38/η)")
        a2.set_title("sharpness rises to the threshold and hovers")
        if a1.lines:
            a1.legend(fontsize=7)
            a2.legend(fontsize=7)
        caption = (
            "Full-batch GD and Adam on digits: training loss (left) and top Hessian "
            "eigenvalue — preconditioned for Adam — with its stability threshold (right, "
            "dashed), as in Cohen et al. 2021, Fig. 1."
        )
        return [Figure(save_png(fig, outdir / "edge-of-stability.png"), caption)]
