"""Study ``conservation``: symmetry-conserved quantities and how discrete, noisy steps break them.

Claim under test (Kunin, Sagastuy-Brena, Ganguli, Yamins & Tanaka 2021, "Neural mechanics",
§4–5; Du, Hu & Lee 2018): gradient flow conserves C_ℓ = W_ℓW_ℓᵀ − W_{ℓ+1}ᵀW_{ℓ+1} in linear
nets and c_j = ‖w_in,j‖² + b_j² − ‖w_out,j‖² per ReLU neuron. One step of (S)GD with
gradient g changes them by exactly η²(g_in g_inᵀ − g_outᵀ g_out) — the first-order terms
cancel by the symmetry, for the full-batch loss and for every minibatch loss alike.

* predict — the drift at fixed training time t = η·steps is O(η): exponent 1 in η; SGD
  adds η²·tr Cov(g)/B per step, so the drift grows as the batch B shrinks.
* measure — real training (torch.optim.SGD) of a depth-3 linear net and a one-hidden-layer
  ReLU MLP; the invariants before and after, and the accumulated η²Σ(g gᵀ − …) from the
  gradients actually applied.

Claims (95% bounds over seeds):

* (i) measured drift = accumulated η²-terms: an identity, checked against its float64
  rounding bound (``exact``);
* (ii) the drift exponent in η under GD, fitted per seed with the next order as a free
  term (log D = c + p log η + q η), is 1 within η_max (``within``): D = c·η(1 + aη + bη²
  + …), and after q absorbs the O(η) term the remaining bias of p is O(η_max²) ≤ η_max.
  The change in p when an η² term is added is reported (truncation), not added to the
  tolerance;
* (iii) under SGD the drift grows with the noise: the weighted slope of D in 1/B is
  positive (``above`` 0).

Negative control ``weight-decay``: weight decay λ breaks the symmetry itself (gradient
flow then shrinks C as e^{−2λt}), so the drift at fixed time no longer vanishes with η
and the exponent claim must fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from learnmech.claims import Claims, Estimate
from learnmech.measure.invariants import balancedness, neuron_balance
from learnmech.nets.deep_linear import DeepLinear
from learnmech.nets.mlp import MLP
from learnmech.records import Curve, Figure, Metric, scalars
from learnmech.report.plots import errorbars, legend, save_png, subplots
from learnmech.stats import corrected_slope, mean_se, weighted_line
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials

__all__ = ["Conservation", "ConservationConfig"]


class ConservationConfig(StudyConfig):
    nets: list[Literal["linear", "relu"]] = Sweep(["linear", "relu"], key="net", order=None)
    lrs: list[float] = Sweep([0.08, 0.04, 0.02, 0.01], key="lr", n=2, gt=0, le=1)
    batch_sizes: list[int] = Sweep([4, 8, 16, 32], key="batch", ge=1)
    sgd_lr: float = Field(0.02, gt=0, le=1)
    time: float = Field(2.0, gt=0, le=1000, description="training time t = η·steps")
    samples: int = Field(64, ge=2, le=100_000)
    in_dim: int = Field(5, ge=1, le=1024)
    width: int = Field(16, ge=1, le=4096)
    weight_decay: float = Field(0.0, ge=0, le=1, description="breaks the symmetry (control)")
    data_seed: int = Field(0, ge=0)


def _data(cfg: ConservationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(cfg.data_seed)
    X = torch.randn(cfg.samples, cfg.in_dim, generator=gen, dtype=torch.float64)
    Y = torch.cat([torch.sin(2 * X[:, :1]), X[:, 1:2] * X[:, 2 % cfg.in_dim :][:, :1]], 1)
    return X, Y


def _model(kind: str, cfg: ConservationConfig, seed: int) -> torch.nn.Module:
    if kind == "linear":
        return DeepLinear([cfg.in_dim, cfg.width, cfg.width, 2], init_scale=0.8, seed=seed)
    return MLP(cfg.in_dim, cfg.width, 1, out_dim=2, b_std=0.5, seed=seed, dtype=torch.float64)


def _invariants(kind: str, net: torch.nn.Module, grad: bool = False) -> torch.Tensor:
    """The conserved quantities (Kunin et al. 2021), or with ``grad`` the same form in the
    gradients: one GD step changes C by η² times it."""

    def get(p: torch.Tensor) -> torch.Tensor:
        return p.grad if grad else p  # type: ignore[return-value]

    if kind == "linear":
        ws = [get(w) for w in net.weights]  # type: ignore[attr-defined]
        return torch.cat([c.reshape(-1) for c in balancedness(ws)])
    first, last = net.layers[0], net.layers[1]  # type: ignore[attr-defined]
    return neuron_balance(get(first.weight), get(last.weight), get(first.bias))


def _in_weights(kind: str, net: torch.nn.Module) -> list[torch.Tensor]:
    """The incoming weights of each invariant-carrying junction."""
    if kind == "linear":
        return list(net.weights)[:-1]  # type: ignore[attr-defined]
    return [net.layers[0].weight]  # type: ignore[attr-defined]


class Conservation(Study):
    name = "conservation"
    title = "Conservation laws of gradient flow, and how (S)GD breaks them"
    summary = "balancedness and per-neuron invariants: drift ∝ η at fixed time, more at small batch"
    pillar = "solvable settings"
    Config = ConservationConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 4},
        "full": {"seeds": 16, "lrs": [0.16, 0.08, 0.04, 0.02, 0.01, 0.005]},
    }
    controls = (
        Control(
            "weight-decay",
            {"weight_decay": 0.05, "batch_sizes": [8, 32]},
            ("*_gd_drift_exponent",),
            "weight decay breaks the rescaling symmetry: C decays as e^{−2λt} at any η",
        ),
    )

    def grid(self, cfg: ConservationConfig) -> list[dict[str, Any]]:
        pts: list[dict[str, Any]] = []
        for net in cfg.nets:
            pts += [{"net": net, "optimizer": "gd", "lr": lr, "batch": 0} for lr in cfg.lrs]
            pts += [
                {"net": net, "optimizer": "sgd", "lr": cfg.sgd_lr, "batch": b}
                for b in cfg.batch_sizes
                if b < cfg.samples
            ]
        return pts

    def predict(self, cfg: ConservationConfig) -> list[Curve]:
        lr = np.array(cfg.lrs)
        return [Curve("drift_exponent", "lr", lr, np.ones_like(lr))]

    def measure(
        self, cfg: ConservationConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, Y = (t.to(device) for t in _data(cfg))
        kind, lr, batch = point["net"], float(point["lr"]), int(point["batch"])
        steps = round(cfg.time / lr)
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            torch.manual_seed(10_000 + seed)
            net = _model(kind, cfg, seed).to(device)
            c0 = _invariants(kind, net).clone()
            acc = torch.zeros_like(c0)
            opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                if batch:
                    idx = torch.randint(0, cfg.samples, (batch,), generator=gen).to(device)
                    xb, yb = X[idx], Y[idx]
                else:
                    xb, yb = X, Y
                opt.zero_grad(set_to_none=True)
                (0.5 * ((net(xb) - yb) ** 2).sum(1).mean()).backward()
                acc += lr * lr * _invariants(kind, net, grad=True)
                opt.step()
            c1 = _invariants(kind, net)
            scale = float(torch.linalg.norm(c0)) + sum(
                float(torch.linalg.norm(w.detach()) ** 2) for w in _in_weights(kind, net)
            )
            drift = float(torch.linalg.norm(c1 - c0)) / scale
            gap = float(torch.linalg.norm((c1 - c0) - acc))
            # rounding bound: each update W ← W − ηg rounds every weight by ≤ eps·|w|, which
            # moves each invariant by ≤ 2·eps·‖W‖² per layer pair and step; evaluating C
            # itself costs as much once more: 16·steps·eps·scale covers both
            bound = 16 * (steps + 1) * float(np.finfo(np.float64).eps) * scale
            out[seed] = scalars(
                "lr",
                lr,
                drift=drift,
                identity_gap_over_rounding_bound=gap / bound,
                identity_rel_error=gap / max(float(torch.linalg.norm(c1 - c0)), 1e-300),
            )
        return out

    def analyze(self, cfg: ConservationConfig, theory: list[Curve], trials: Trials) -> dict:
        """Per net: GD drift per seed × η, SGD drift per seed × B, identity checks."""
        out: dict[str, Any] = {"nets": {}}
        gaps = [t.curve("identity_gap_over_rounding_bound") for t in trials]
        rels = [t.curve("identity_rel_error") for t in trials]
        out["gap"] = max((c.values[0] for c in gaps if c is not None), default=math.nan)
        out["rel"] = max((c.values[0] for c in rels if c is not None), default=math.nan)
        for net, ts in trials.by("net").items():
            r: dict[str, Any] = {}
            for opt, key in (("gd", "lr"), ("sgd", "batch")):
                to = ts.where(optimizer=opt)
                xs = to.values(key)
                cols = [to.where(**{key: x}).stack("drift")[1][:, 0] for x in xs]
                n = min((c.size for c in cols), default=0)
                r[opt] = (np.array(xs, float), np.stack([c[:n] for c in cols], 1) if n else None)
            out["nets"][net] = r
        return out

    def claims(self, cfg: ConservationConfig, s: dict) -> list[Metric]:
        out = Claims()
        out.exact(
            "drift_identity_gap_over_rounding_bound",
            s["gap"],
            1.0,
            description="max over runs of ‖ΔC − η²Σ_steps(g_in g_inᵀ − g_outᵀg_out)‖ over "
            "its float64 rounding bound 16·steps·eps·(‖C₀‖ + Σ‖W‖²); the largest "
            f"relative gap is {s['rel']:.1e}",
        )
        for net, r in s["nets"].items():
            lrs, d = r["gd"]
            if d is not None and lrs.size >= 3 and d.shape[0] >= 2:
                ps = [corrected_slope(lrs, row, lrs) for row in d]
                p3 = np.array([a for a, _ in ps])
                out.within(
                    f"{net}_gd_drift_exponent",
                    Estimate.of(p3),
                    1.0,
                    float(lrs.max()),
                    description="per seed, fit log D = c + p·log η + q·η; mean p vs "
                    "theory 1, tolerance η_max (the O(η²) remainder)",
                )
                out.reported(
                    f"{net}_gd_drift_exponent_truncation",
                    float(np.mean([abs(a - b) for a, b in ps])),
                    description="mean change in p when an η² term is added to the fit",
                )
            bs, d = r["sgd"]
            if d is not None and bs.size >= 2:
                m, se = mean_se(d)
                coef, cov = weighted_line(1 / bs, m, np.maximum(se, 1e-300))
                slope = Estimate(float(coef[1]), math.sqrt(cov[1, 1]), d.shape[0] - 1)
                out.above(
                    f"{net}_sgd_drift_slope_in_1_over_B",
                    slope,
                    0.0,
                    strict=True,
                    description="weighted fit drift = a + b/B at fixed η: noise makes b > 0",
                )
        return out

    def figures(self, cfg: ConservationConfig, s: dict, outdir: Path) -> list[Figure]:
        fig, (a1, a2) = subplots(1, 2, figsize=(9, 3.6))
        for net, r in s["nets"].items():
            x, d = r["gd"]
            if d is not None:
                errorbars(a1, x, d, marker="o", label=net)
                a1.plot(x, d.mean(0)[-1] * x / x[-1], "k--", lw=1)
            b, d = r["sgd"]
            if d is not None:
                errorbars(a2, 1 / b, d, marker="o", label=net)
        a1.set(xscale="log", yscale="log", xlabel="learning rate η (GD, fixed t = η·steps)")
        a1.set(ylabel="relative drift of the invariants", title="dashed: slope 1 (theory)")
        a2.set(xlabel="1 / batch size (SGD)", ylabel="relative drift")
        a2.set_title(f"SGD at η = {cfg.sgd_lr:g}")
        legend(a1, a2, fontsize=10)
        caption = (
            "Drift of the conserved quantities: linear in η at fixed training time under GD "
            "(left), growing with SGD noise 1/B (right); ±2 SE."
        )
        return [Figure(save_png(fig, outdir / "conservation.png"), caption)]
