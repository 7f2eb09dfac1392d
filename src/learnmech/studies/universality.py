"""Study ``universality``: do networks of growing width learn the same representation?

Claim under test (REFERENCES §5; Kornblith et al. 2019; Huh et al. 2024): networks trained
from different seeds learn similar representations, more so as they grow, approaching the
infinite-width limit. Here the limit is known exactly: the NNGP kernel of #2
(:func:`learnmech.theory.kernels.mlp_kernels`).

* predict — a width-w network's last-hidden-layer kernel K_w = (σ_w²/w)·φφᵀ + σ_b² is a
  Monte-Carlo average over w i.i.d. neurons at init, so K_w − K_∞ = O(w^−½) entrywise and,
  since CKA is flat at its maximum, 1 − CKA(K_w, K_∞) = c/w + O(w^−2): exponent −1. The
  same holds for two independent seeds, 1 − CKA(φ_A, φ_B) ∝ 1/w. Training in the NTK
  parameterization moves features by O(w^−½), so trained networks also approach K_∞ and
  each other as width grows.
* measure — MLPs (depth 2, ReLU, NTK parameterization) on scikit-learn's digits: pairs of
  seeds at each width, their hidden representations on held-out probe images at init and
  after full-batch GD; the analytic NNGP on the same probes. Init-only widths reach
  further (no training needed).
* compare — (i) the init exponents of 1 − CKA vs width, fitted per seed with the next
  order (b/w) as a free term, must be −1 within 3 SE + the truncation estimate; (ii)
  trained networks: 1 − CKA to the NNGP and across seeds must fall with width (slope more
  than 3 SE below 0), mutual-kNN agreement must rise; (iii) every trained cross-seed CKA
  must exceed its permutation chance level by ≥ 3 null standard deviations. Exponents of
  trained networks are reported, not scored: no theory fixes them at these widths.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.data.real import digits
from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.measure.similarity import (
    gram_cka,
    linear_cka,
    mutual_knn,
    procrustes_distance,
    similarity,
)
from learnmech.nets.mlp import MLP
from learnmech.stats import fit_power_law, mean_se
from learnmech.studies.base import Figure, Study, StudyConfig
from learnmech.theory.kernels import mlp_kernels

__all__ = ["Universality", "UniversalityConfig"]

_PARTNER = 100_003  # partner seed offset: each trial is a pair of independent networks


class UniversalityConfig(StudyConfig):
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128, 256])
    init_widths: list[int] = Field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    depth: int = Field(2, ge=1, le=6)
    steps: int = Field(200, ge=1, le=100_000)
    lr: float = Field(1.0, gt=0, le=100)
    train_size: int = Field(1000, ge=10, le=1497)
    probe_size: int = Field(300, ge=20, le=797)
    k: int = Field(10, ge=1, le=100, description="neighbours for mutual kNN")
    permutations: int = Field(20, ge=2, le=10_000, description="size of the chance null")
    w_std: float = Field(math.sqrt(2), gt=0, le=10)
    b_std: float = Field(0.1, ge=0, le=10)
    data_seed: int = Field(0, ge=0)

    @field_validator("widths", "init_widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if len(v) < 3 or any(w < 4 or w > 16384 for w in v):
            raise ValueError("need at least three widths, each in [4, 16384]")
        return sorted(set(v))


def _split(cfg: UniversalityConfig) -> tuple[torch.Tensor, ...]:
    x, lab = digits("unit")
    perm = np.random.default_rng(cfg.data_seed).permutation(len(x))
    tr, pr = perm[: cfg.train_size], perm[-cfg.probe_size :]
    y = np.eye(10)[lab] - 0.1
    t = [torch.from_numpy(a) for a in (x[tr], y[tr], x[pr], lab[pr])]
    return tuple(t)


def _kernel(cfg: UniversalityConfig, phi: torch.Tensor) -> torch.Tensor:
    """The readout's input kernel: (σ_w²/w)·φφᵀ + σ_b² (the NNGP's finite-width estimate)."""
    return cfg.w_std**2 / phi.shape[1] * (phi @ phi.T) + cfg.b_std**2


def _fit_exponent(widths: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope p of log y = a + p log w + b/w (+ c/w²): (p with b, p with b and c)."""
    ly = np.log(y)
    A = np.stack([np.ones_like(widths), np.log(widths), 1 / widths, 1 / widths**2], 1)
    p3 = float(np.linalg.lstsq(A[:, :3], ly, rcond=None)[0][1])
    p4 = float(np.linalg.lstsq(A, ly, rcond=None)[0][1]) if widths.size >= 5 else p3
    return p3, p4


class Universality(Study):
    name = "universality"
    title = "Universality: representations converge across seeds and to the infinite-width kernel"
    summary = "1 − CKA ∝ 1/width at init; trained MLPs on digits agree more as width grows"
    pillar = "universality"
    Config = UniversalityConfig
    sweep_fields = frozenset({"widths", "init_widths"})
    analysis_fields = frozenset({"permutations"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 4, "steps": 150, "train_size": 800},
        "full": {
            "seeds": 6,
            "widths": [32, 64, 128, 256, 512],
            "init_widths": [64, 128, 256, 512, 1024, 2048, 4096],
            "steps": 300,
        },
    }

    def grid(self, cfg: UniversalityConfig) -> list[dict[str, Any]]:
        return [{"phase": "init", "width": w} for w in cfg.init_widths] + [
            {"phase": "train", "width": w} for w in cfg.widths
        ]

    def predict(self, cfg: UniversalityConfig) -> list[Curve]:
        w = np.array(cfg.init_widths, dtype=np.float64)
        return [
            Curve("init_nngp_exponent", "width", w, -np.ones_like(w)),
            Curve("init_cross_seed_exponent", "width", w, -np.ones_like(w)),
        ]

    def measure(
        self, cfg: UniversalityConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, Y, P, plab = _split(cfg)
        k_inf = torch.as_tensor(
            mlp_kernels(P, depth=cfg.depth, w_std=cfg.w_std, b_std=cfg.b_std, get=("nngp",)).nngp
        )
        w = int(point["width"])
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            nets = [
                MLP(
                    64,
                    w,
                    cfg.depth,
                    10,
                    w_std=cfg.w_std,
                    b_std=cfg.b_std,
                    seed=seed + off,
                    dtype=torch.float64,
                )
                for off in (0, _PARTNER)
            ]
            with torch.no_grad():
                phi0 = [n.features(P)[-1] for n in nets]
            curves = [
                Curve("nngp_gap", "width", [w], [1 - gram_cka(_kernel(cfg, phi0[0]), k_inf)]),
                Curve("cross_seed_gap", "width", [w], [1 - linear_cka(phi0[0], phi0[1])]),
            ]
            if point["phase"] == "train":
                losses = []
                for n in nets:
                    opt = torch.optim.SGD(n.parameters(), lr=cfg.lr)
                    for _ in range(cfg.steps):
                        opt.zero_grad(set_to_none=True)
                        loss = 0.5 * ((n(X) - Y) ** 2).sum(1).mean()
                        loss.backward()
                        opt.step()
                    losses.append(float(loss.detach()))
                with torch.no_grad():
                    phi = [n.features(P)[-1] for n in nets]
                    probe_err = [float((n(P).argmax(1) != plab).double().mean()) for n in nets]
                if not all(math.isfinite(v) for v in losses):
                    raise FloatingPointError(f"training diverged at width {w}")
                sc = similarity(
                    phi[0], phi[1], "linear_cka", permutations=cfg.permutations, seed=seed
                )
                curves += [
                    Curve(
                        "trained_nngp_gap",
                        "width",
                        [w],
                        [1 - gram_cka(_kernel(cfg, phi[0]), k_inf)],
                    ),
                    Curve("trained_cross_seed_gap", "width", [w], [1 - sc.value]),
                    Curve("trained_cross_seed_chance_z", "width", [w], [sc.above_chance]),
                    Curve("trained_cross_seed_chance", "width", [w], [sc.chance]),
                    Curve(
                        "trained_cross_seed_cka_debiased",
                        "width",
                        [w],
                        [linear_cka(phi[0], phi[1], debiased=True)],
                    ),
                    Curve(
                        "trained_mutual_knn", "width", [w], [mutual_knn(phi[0], phi[1], k=cfg.k)]
                    ),
                    Curve(
                        "trained_procrustes", "width", [w], [procrustes_distance(phi[0], phi[1])]
                    ),
                    Curve("train_loss", "width", [w], [float(np.mean(losses))]),
                    Curve("probe_error", "width", [w], [float(np.mean(probe_err))]),
                ]
            out[seed] = curves
        return out

    # ----------------------------------------------------------------------------------
    def _table(self, trials: list[TrialResult], phase: str, obs: str) -> dict[int, np.ndarray]:
        tab: dict[int, list[float]] = {}
        for t in trials:
            if t.status == "ok" and t.point["phase"] == phase and t.curve(obs) is not None:
                tab.setdefault(int(t.point["width"]), []).append(t.curve(obs).values[0])
        return {w: np.array(v) for w, v in sorted(tab.items())}

    def _per_seed(
        self, trials: list[TrialResult], phase: str, obs: str
    ) -> dict[int, dict[int, float]]:
        per: dict[int, dict[int, float]] = {}
        for t in trials:
            if t.status == "ok" and t.point["phase"] == phase and t.curve(obs) is not None:
                per.setdefault(t.seed, {})[int(t.point["width"])] = t.curve(obs).values[0]
        return per

    def compare(
        self, cfg: UniversalityConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        # (i) init exponents: −1 per seed within 3 SE + truncation
        for obs, label in (("nngp_gap", "nngp"), ("cross_seed_gap", "cross_seed")):
            per = self._per_seed(trials, "init", obs)
            ws = np.array(cfg.init_widths, dtype=np.float64)
            fits = [
                _fit_exponent(ws, np.array([d[int(w)] for w in ws]))
                for d in per.values()
                if len(d) == ws.size and all(d[int(w)] > 0 for w in ws)
            ]
            if len(fits) >= 2:
                p3 = np.array([a for a, _ in fits])
                trunc = float(np.mean([abs(a - b) for a, b in fits]))
                se = float(p3.std(ddof=1) / math.sqrt(p3.size))
                metrics.append(
                    Metric(
                        f"init_{label}_exponent_error",
                        abs(float(p3.mean()) + 1),
                        3 * se + trunc,
                        "<=",
                        stderr=se,
                        description=f"1 − CKA at init vs width, per seed log y = a + p log w "
                        f"+ b/w: |mean p + 1| (p = {p3.mean():.3f} ± {se:.3f}; theory −1); "
                        "tolerance 3 SE + the change in p when c/w² is added",
                    )
                )
        # (ii) trained networks: gaps fall with width, mutual kNN rises
        for obs, sign, what in (
            ("trained_nngp_gap", -1, "1 − CKA(trained kernel, NNGP)"),
            ("trained_cross_seed_gap", -1, "1 − CKA across seeds (trained)"),
            ("trained_mutual_knn", +1, "mutual kNN across seeds (trained)"),
        ):
            tab = self._table(trials, "train", obs)
            tab = {w: v for w, v in tab.items() if v.size >= 2}
            if len(tab) < 2:
                continue
            ws = np.array(list(tab), dtype=np.float64)
            m = np.array([mean_se(v)[0] for v in tab.values()])
            s = np.array([mean_se(v)[1] for v in tab.values()])
            fit = fit_power_law(ws, m, s)
            z = (
                fit.exponent / fit.exponent_se
                if fit.exponent_se > 0
                else math.copysign(math.inf, fit.exponent)
            )
            metrics.append(
                Metric(
                    f"{obs}_width_trend_z",
                    sign * z,
                    3.0,
                    ">=",
                    stderr=None,
                    description=f"{what} vs width: fitted exponent {fit.exponent:.3f} ± "
                    f"{fit.exponent_se:.3f} (z = {z:.1f}); must "
                    f"{'fall' if sign < 0 else 'rise'} by more than 3 SE",
                )
            )
        # (iii) far above chance
        zs = [
            t.curve("trained_cross_seed_chance_z").values[0]
            for t in trials
            if t.status == "ok" and t.curve("trained_cross_seed_chance_z") is not None
        ]
        if zs:
            metrics.append(
                Metric(
                    "trained_cross_seed_cka_min_z_above_chance",
                    float(np.min(zs)),
                    3.0,
                    ">=",
                    description="smallest (CKA − chance)/null SD over trained pairs; chance: "
                    f"{cfg.permutations} permutations of the probe images of one network",
                )
            )
        for obs, desc in (
            ("trained_cross_seed_cka_debiased", "debiased linear CKA across seeds"),
            ("trained_procrustes", "Procrustes distance across seeds"),
            ("train_loss", "training loss (mean of the pair)"),
            ("probe_error", "probe-set classification error"),
        ):
            tab = self._table(trials, "train", obs)
            if tab:
                w_hi = max(tab)
                w_lo = min(tab)
                metrics.append(
                    Metric(
                        f"{obs}_smallest_vs_widest",
                        float(mean_se(tab[w_hi])[0] - mean_se(tab[w_lo])[0]),
                        None,
                        description=f"{desc}: width {w_hi} minus width {w_lo} "
                        f"({mean_se(tab[w_lo])[0]:.4f} → {mean_se(tab[w_hi])[0]:.4f})",
                    )
                )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: UniversalityConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        plt = _plt()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for phase, obs, label, mk in (
            ("init", "nngp_gap", "init: 1 − CKA(K_w, K_∞)", "o"),
            ("init", "cross_seed_gap", "init: 1 − CKA(seed A, seed B)", "s"),
            ("train", "trained_nngp_gap", "trained: 1 − CKA(K_w, K_∞)", "o"),
            ("train", "trained_cross_seed_gap", "trained: 1 − CKA(seed A, seed B)", "s"),
        ):
            tab = self._table(trials, phase, obs)
            if not tab:
                continue
            ws = np.array(list(tab))
            m = np.array([mean_se(v)[0] for v in tab.values()])
            se = np.array([mean_se(v)[1] for v in tab.values()])
            a1.errorbar(
                ws,
                m,
                2 * se,
                marker=mk,
                capsize=3,
                label=label,
                ls="-" if phase == "train" else ":",
            )
        tab = self._table(trials, "init", "nngp_gap")
        if tab:
            ws = np.array(list(tab), dtype=np.float64)
            m0 = mean_se(tab[int(ws[-1])])[0]
            a1.plot(ws, m0 * ws[-1] / ws, "k--", lw=1, label="slope −1 (theory)")
        a1.set(
            xscale="log",
            yscale="log",
            xlabel="width",
            ylabel="1 − CKA",
            title="approach to the infinite-width kernel",
        )
        a1.legend(fontsize=7)
        for obs, label in (
            ("trained_cross_seed_gap", "linear CKA"),
            ("trained_cross_seed_cka_debiased", "linear CKA (debiased)"),
            ("trained_mutual_knn", f"mutual {cfg.k}-NN"),
        ):
            tab = self._table(trials, "train", obs)
            if not tab:
                continue
            ws = np.array(list(tab))
            vals = [1 - v if obs == "trained_cross_seed_gap" else v for v in tab.values()]
            m = np.array([mean_se(v)[0] for v in vals])
            se = np.array([mean_se(v)[1] for v in vals])
            line = a2.errorbar(ws, m, 2 * se, marker="o", capsize=3, label=label)
            if obs == "trained_cross_seed_gap":
                ch = self._table(trials, "train", "trained_cross_seed_chance")
                a2.plot(
                    ws,
                    [mean_se(v)[0] for v in ch.values()],
                    ls="--",
                    color=line[0].get_color(),
                    lw=1,
                    label="linear CKA chance",
                )
            if obs == "trained_mutual_knn":
                a2.axhline(
                    cfg.k / (cfg.probe_size - 1),
                    ls="--",
                    color=line[0].get_color(),
                    lw=1,
                    label="mutual kNN chance",
                )
        a2.set(
            xscale="log",
            xlabel="width",
            ylabel="similarity across seeds",
            title="trained networks, probe images",
            ylim=(-0.05, 1.05),
        )
        a2.legend(fontsize=7)
        p = save_png(fig, outdir / "universality.png")
        return [
            Figure(
                p,
                "Left: distance to the infinite-width NNGP kernel and between seeds, 1 − CKA, "
                "vs width (±2 SE); at init it falls as 1/width. Right: similarity of "
                "trained networks across seeds under three metrics, with chance levels.",
            )
        ]
