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
* compare — (i) measured drift = accumulated η²-terms (an identity; float64 rounding);
  (ii) drift exponent in η under GD: fitted per seed with the next order as a free term,
  it must be 1 within 3 standard errors plus the fit's truncation estimate; (iii) the SGD
  drift's slope in 1/B is positive.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.measure.invariants import balancedness, neuron_balance
from learnmech.nets.deep_linear import DeepLinear
from learnmech.nets.mlp import MLP
from learnmech.stats import fit_power_law, mean_se
from learnmech.studies.base import Figure, Study, StudyConfig, subset_of

__all__ = ["Conservation", "ConservationConfig"]


class ConservationConfig(StudyConfig):
    nets: list[str] = Field(default_factory=lambda: ["linear", "relu"])
    lrs: list[float] = Field(default_factory=lambda: [0.08, 0.04, 0.02, 0.01])
    batch_sizes: list[int] = Field(default_factory=lambda: [4, 8, 16, 32])
    sgd_lr: float = Field(0.02, gt=0, le=1)
    time: float = Field(2.0, gt=0, le=1000, description="training time t = η·steps")
    samples: int = Field(64, ge=2, le=100_000)
    in_dim: int = Field(5, ge=1, le=1024)
    width: int = Field(16, ge=1, le=4096)
    data_seed: int = Field(0, ge=0)

    @field_validator("nets")
    @classmethod
    def _nets(cls, v: list[str]) -> list[str]:
        return subset_of(v, ("linear", "relu"), "nets")

    @field_validator("lrs")
    @classmethod
    def _lrs(cls, v: list[float]) -> list[float]:
        if len(v) < 2 or any(not (math.isfinite(x) and 0 < x <= 1) for x in v):
            raise ValueError("need at least two learning rates in (0, 1]")
        return sorted(v)

    @field_validator("batch_sizes")
    @classmethod
    def _bs(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("batch sizes must be positive")
        return sorted(v)


def _data(cfg: ConservationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(cfg.data_seed)
    X = torch.randn(cfg.samples, cfg.in_dim, generator=gen, dtype=torch.float64)
    Y = torch.cat([torch.sin(2 * X[:, :1]), X[:, 1:2] * X[:, 2 % cfg.in_dim :][:, :1]], 1)
    return X, Y


def _model(kind: str, cfg: ConservationConfig, seed: int) -> torch.nn.Module:
    if kind == "linear":
        return DeepLinear([cfg.in_dim, cfg.width, cfg.width, 2], init_scale=0.8, seed=seed)
    return MLP(cfg.in_dim, cfg.width, 1, out_dim=2, b_std=0.5, seed=seed, dtype=torch.float64)


def _pairs(kind: str, net: torch.nn.Module) -> list[tuple[torch.Tensor, ...]]:
    """(W_in, W_out[, b_in]) per invariant-carrying junction, as live parameters."""
    if kind == "linear":
        w = list(net.weights)  # type: ignore[attr-defined]
        return [(w[i], w[i + 1]) for i in range(len(w) - 1)]
    first, last = net.layers[0], net.layers[1]  # type: ignore[attr-defined]
    return [(first.weight, last.weight, first.bias)]


def _invariants(kind: str, net: torch.nn.Module) -> torch.Tensor:
    if kind == "linear":
        return torch.cat([c.reshape(-1) for c in balancedness(net)])
    first, last = net.layers[0], net.layers[1]  # type: ignore[attr-defined]
    return neuron_balance(first.weight, last.weight, first.bias)


def _step_terms(kind: str, net: torch.nn.Module) -> torch.Tensor:
    """g_in g_inᵀ − g_outᵀ g_out (linear) or ‖g_in,j‖² + g_b,j² − ‖g_out,j‖² (ReLU)."""
    if kind == "linear":
        ws = list(net.weights)  # type: ignore[attr-defined]
        return torch.cat(
            [
                (ws[i].grad @ ws[i].grad.T - ws[i + 1].grad.T @ ws[i + 1].grad).reshape(-1)
                for i in range(len(ws) - 1)
            ]
        )
    first, last = net.layers[0], net.layers[1]  # type: ignore[attr-defined]
    return neuron_balance(first.weight.grad, last.weight.grad, first.bias.grad)


def _exponents(lrs: np.ndarray, drift: np.ndarray) -> tuple[float, float]:
    """Slope p of log D = c + p log η + q η (+ r η²) for one seed's drift curve.

    Returns (p with the first correction q, p with q and r): their difference estimates the
    truncation error of the first (Richardson-style).
    """
    y = np.log(drift)
    A = np.stack([np.ones_like(lrs), np.log(lrs), lrs, lrs**2], 1)
    p3 = float(np.linalg.lstsq(A[:, :3], y, rcond=None)[0][1])
    p4 = float(np.linalg.lstsq(A, y, rcond=None)[0][1]) if lrs.size >= 4 else p3
    return p3, p4


class Conservation(Study):
    name = "conservation"
    title = "Conservation laws of gradient flow, and how (S)GD breaks them"
    summary = "balancedness and per-neuron invariants: drift ∝ η at fixed time, more at small batch"
    pillar = "solvable settings"
    Config = ConservationConfig
    sweep_fields = frozenset({"nets", "lrs", "batch_sizes"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 4},
        "full": {"seeds": 16, "lrs": [0.16, 0.08, 0.04, 0.02, 0.01, 0.005]},
    }

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
        X, Y = _data(cfg)
        kind, lr, batch = point["net"], float(point["lr"]), int(point["batch"])
        steps = round(cfg.time / lr)
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            torch.manual_seed(10_000 + seed)
            net = _model(kind, cfg, seed)
            c0 = _invariants(kind, net).clone()
            acc = torch.zeros_like(c0)
            opt = torch.optim.SGD(net.parameters(), lr=lr)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                if batch:
                    idx = torch.randint(0, cfg.samples, (batch,), generator=gen)
                    xb, yb = X[idx], Y[idx]
                else:
                    xb, yb = X, Y
                opt.zero_grad(set_to_none=True)
                (0.5 * ((net(xb) - yb) ** 2).sum(1).mean()).backward()
                acc += lr * lr * _step_terms(kind, net)
                opt.step()
            c1 = _invariants(kind, net)
            scale = float(torch.linalg.norm(c0)) + sum(
                float(torch.linalg.norm(p[0].detach()) ** 2) for p in _pairs(kind, net)
            )
            drift = float(torch.linalg.norm(c1 - c0)) / scale
            gap = float(torch.linalg.norm((c1 - c0) - acc))
            # rounding bound: each update W ← W − ηg rounds every weight by ≤ eps·|w|, which
            # moves each invariant by ≤ 2·eps·‖W‖² per layer pair and step; evaluating C
            # itself costs as much once more: 16·steps·eps·scale covers both
            bound = 16 * (steps + 1) * float(np.finfo(np.float64).eps) * scale
            out[seed] = [
                Curve("drift", "lr", [lr], [drift]),
                Curve("identity_gap_over_rounding_bound", "lr", [lr], [gap / bound]),
                Curve(
                    "identity_rel_error",
                    "lr",
                    [lr],
                    [gap / max(float(torch.linalg.norm(c1 - c0)), 1e-300)],
                ),
            ]
        return out

    def _table(self, cfg: ConservationConfig, trials: list[TrialResult]) -> dict[str, Any]:
        tab: dict[str, Any] = {}
        for net in cfg.nets:
            for opt in ("gd", "sgd"):
                pts: dict[float, list[float]] = {}
                for t in trials:
                    if t.status != "ok" or t.point["net"] != net or t.point["optimizer"] != opt:
                        continue
                    key = float(t.point["lr"]) if opt == "gd" else float(t.point["batch"])
                    pts.setdefault(key, []).append(t.curve("drift").values[0])
                tab[f"{net}/{opt}"] = {
                    k: mean_se(np.array(v)) for k, v in sorted(pts.items()) if len(v) >= 2
                }
        return tab

    def compare(
        self, cfg: ConservationConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        ok = [t for t in trials if t.status == "ok"]
        if ok:
            have = [t for t in ok if t.curve("identity_gap_over_rounding_bound") is not None]
            if have:
                worst = max(t.curve("identity_gap_over_rounding_bound").values[0] for t in have)
                rel = max(t.curve("identity_rel_error").values[0] for t in have)
                metrics.append(
                    Metric(
                        "drift_identity_gap_over_rounding_bound",
                        worst,
                        1.0,
                        "<=",
                        description="max over runs of ‖ΔC − η²Σ_steps(g_in g_inᵀ − g_outᵀg_out)‖ "
                        "over its float64 rounding bound 16·steps·eps·(‖C₀‖ + Σ‖W‖²); the "
                        f"largest relative gap is {rel:.1e}",
                    )
                )
        tab = self._table(cfg, trials)
        for net in cfg.nets:
            gd = tab.get(f"{net}/gd", {})
            if len(gd) >= 2:
                lrs = np.array(sorted(gd))
                fit = fit_power_law(lrs, [gd[x][0] for x in lrs], [gd[x][1] for x in lrs])
                metrics.append(
                    Metric(
                        f"{net}_gd_drift_exponent",
                        fit.exponent,
                        None,
                        stderr=fit.exponent_se,
                        description="plain log–log slope of drift vs η at fixed time "
                        f"t = {cfg.time:g} (theory → 1 as η → 0)",
                    )
                )
                per_seed: dict[int, dict[float, float]] = {}
                for t in ok:
                    if t.point["net"] == net and t.point["optimizer"] == "gd":
                        per_seed.setdefault(t.seed, {})[float(t.point["lr"])] = t.curve(
                            "drift"
                        ).values[0]
                ps = [
                    _exponents(lrs, np.array([d[x] for x in lrs]))
                    for d in per_seed.values()
                    if len(d) == lrs.size
                ]
                if len(ps) >= 2 and lrs.size >= 3:
                    p3 = np.array([a for a, _ in ps])
                    trunc = float(np.mean([abs(a - b) for a, b in ps]))
                    se = float(p3.std(ddof=1) / math.sqrt(p3.size))
                    metrics.append(
                        Metric(
                            f"{net}_gd_drift_exponent_error",
                            abs(float(p3.mean()) - 1),
                            3 * se + trunc,
                            "<=",
                            stderr=se,
                            description="per seed, fit log D = c + p·log η + q·η (q: the next "
                            f"order); |mean p − 1| (p = {p3.mean():.4f}; theory 1); tolerance "
                            "3 SE over seeds + the change in p when an η² term is added "
                            "(truncation estimate)",
                        )
                    )
            sgd = tab.get(f"{net}/sgd", {})
            if len(sgd) >= 2:
                inv_b = np.array([1 / b for b in sorted(sgd)])
                y = np.array([sgd[b][0] for b in sorted(sgd)])
                se = np.array([sgd[b][1] for b in sorted(sgd)])
                w = 1 / np.maximum(se, 1e-300) ** 2
                A = np.stack([np.ones_like(inv_b), inv_b], 1)
                cov = np.linalg.inv(A.T @ (A * w[:, None]))
                coef = cov @ (A.T @ (w * y))
                slope, slope_se = float(coef[1]), float(math.sqrt(cov[1, 1]))
                metrics.append(
                    Metric(
                        f"{net}_sgd_drift_slope_in_1_over_B_z",
                        slope / slope_se,
                        2.0,
                        ">=",
                        description="weighted fit drift = a + b/B at fixed η: b in standard "
                        f"errors (b = {slope:.3g} ± {slope_se:.2g}); noise makes it positive",
                    )
                )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: ConservationConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        tab = self._table(cfg, trials)
        plt = _plt()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
        for net in cfg.nets:
            gd = tab.get(f"{net}/gd", {})
            if gd:
                x = np.array(sorted(gd))
                m = np.array([gd[k][0] for k in x])
                se = np.array([gd[k][1] for k in x])
                a1.errorbar(x, m, 2 * se, marker="o", capsize=3, label=net)
                a1.plot(x, m[-1] * x / x[-1], "k--", lw=1)
            sgd = tab.get(f"{net}/sgd", {})
            if sgd:
                b = np.array(sorted(sgd))
                a2.errorbar(
                    1 / b,
                    [sgd[k][0] for k in b],
                    [2 * sgd[k][1] for k in b],
                    marker="o",
                    capsize=3,
                    label=net,
                )
        a1.set(
            xscale="log",
            yscale="log",
            xlabel="learning rate η (GD, fixed t = η·steps)",
            ylabel="relative drift of the invariants",
            title="dashed: slope 1 (theory)",
        )
        a2.set(
            xlabel="1 / batch size (SGD)",
            ylabel="relative drift",
            title=f"SGD at η = {cfg.sgd_lr:g}",
        )
        a1.legend()
        a2.legend()
        p = save_png(fig, outdir / "conservation.png")
        return [
            Figure(
                p,
                "Drift of the conserved quantities: linear in η at fixed training "
                "time under GD (left), growing with SGD noise 1/B (right); ±2 SE.",
            )
        ]
