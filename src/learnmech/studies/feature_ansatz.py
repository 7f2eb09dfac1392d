"""Study ``feature-ansatz``: does the first layer learn the average gradient outer product?

Claim under test (neural feature ansatz, Radhakrishnan, Beaglehole, Pandit & Belkin 2024,
Science, eq. 1): after training, W₁ᵀW₁ ∝ AGOP = E_x[∇ₓf ∇ₓfᵀ].

* task — a multi-index target on Gaussian inputs, y = z₁z₂ + z₁²/2 with z = Ux, U a random
  k×d orthonormal projection (k = 2, d = 20): the target's own AGOP has rank k and range
  span(U), so a network that learns the function's relevant directions must put them in
  W₁ᵀW₁ if the ansatz holds.
* predict — (i) the learned part of the first layer's Gram, W₁ᵀW₁ − W₁,₀ᵀW₁,₀, is
  correlated with the network's AGOP far beyond chance (the ansatz); (ii) the top-k
  eigenvectors of W₁ᵀW₁ align with span(U) (overlap 1, against k/d for a random
  subspace); (iii) since the ansatz describes the learned part, the whole W₁ᵀW₁ matches
  the AGOP better when the initial weights are small (the init contributes an
  AGOP-unrelated, nearly isotropic W₁,₀ᵀW₁,₀).
* measure — three-layer ReLU MLPs (width 128) trained by Adam on 500 samples, with the
  standard init and with the first layer's init scaled by 0.1; W₁ᵀW₁ and the AGOP on the
  training inputs at log-spaced steps.
* compare — (i) the smallest, over seeds, of the final learned-part correlation in
  standard deviations above its permutation null (random coordinate permutations of the
  AGOP) must be ≥ 3; (ii) the overlap's rise over training must exceed 3 SE over seeds;
  (iii) the final whole-Gram correlation must be higher at small init by more than 3 SE.
  Reported: the whole-Gram correlation's change (with the standard init it barely rises —
  0.57 → 0.63 — because W₁,₀ᵀW₁,₀ dominates), the correlation with AGOP^½, test error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.measure.features import (
    agop,
    matrix_correlation,
    matrix_correlation_null,
    psd_sqrt,
    subspace_overlap,
)
from learnmech.stats import mean_se
from learnmech.studies.base import Figure, Study, StudyConfig

__all__ = ["FeatureAnsatz", "FeatureAnsatzConfig"]


class FeatureAnsatzConfig(StudyConfig):
    init_scales: list[float] = Field(default_factory=lambda: [1.0, 0.1])
    dim: int = Field(20, ge=3, le=1000)
    rank: int = Field(2, ge=2, le=2, description="index dimension k (the target uses two)")
    width: int = Field(128, ge=4, le=8192)
    samples: int = Field(500, ge=20, le=100_000)
    test_samples: int = Field(2000, ge=20, le=100_000)
    steps: int = Field(500, ge=10, le=1_000_000)
    lr: float = Field(1e-3, gt=0, le=1)
    records: int = Field(8, ge=3, le=100)
    data_seed: int = Field(0, ge=0)

    @field_validator("init_scales")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        if not v or any(not (math.isfinite(s) and 0 < s <= 10) for s in v):
            raise ValueError("init_scales must be in (0, 10]")
        return sorted(set(v), reverse=True)


def _task(cfg: FeatureAnsatzConfig) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(cfg.data_seed)
    U = torch.linalg.qr(torch.randn(cfg.dim, cfg.rank, generator=g, dtype=torch.float64))[0].T
    X = torch.randn(cfg.samples, cfg.dim, generator=g, dtype=torch.float64)
    Xt = torch.randn(cfg.test_samples, cfg.dim, generator=g, dtype=torch.float64)

    def target(x: torch.Tensor) -> torch.Tensor:
        z = x @ U.T
        return (z[:, 0] * z[:, 1] + 0.5 * z[:, 0] ** 2)[:, None]

    return U.float(), X.float(), target(X).float(), Xt.float(), target(Xt).float()


def _steps(cfg: FeatureAnsatzConfig) -> list[int]:
    return sorted({0} | {round(s) for s in np.geomspace(1, cfg.steps, cfg.records - 1)})


class FeatureAnsatz(Study):
    name = "feature-ansatz"
    title = "Neural feature ansatz: W₁ᵀW₁ ∝ AGOP"
    summary = "first-layer Gram vs average gradient outer product on a multi-index task"
    pillar = "universality"
    Config = FeatureAnsatzConfig
    sweep_fields = frozenset({"init_scales"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {"seeds": 8, "steps": 3000, "samples": 2000, "width": 256, "records": 12},
    }

    def grid(self, cfg: FeatureAnsatzConfig) -> list[dict[str, Any]]:
        return [{"init_scale": s} for s in cfg.init_scales]

    def predict(self, cfg: FeatureAnsatzConfig) -> list[Curve]:
        s = np.array(_steps(cfg), dtype=np.float64)
        return [Curve("subspace_overlap_chance", "step", s, np.full_like(s, cfg.rank / cfg.dim))]

    def measure(
        self, cfg: FeatureAnsatzConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        U, X, Y, Xt, Yt = _task(cfg)
        marks = set(_steps(cfg))
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            torch.manual_seed(seed)
            net = torch.nn.Sequential(
                torch.nn.Linear(cfg.dim, cfg.width),
                torch.nn.ReLU(),
                torch.nn.Linear(cfg.width, cfg.width),
                torch.nn.ReLU(),
                torch.nn.Linear(cfg.width, 1),
            )
            with torch.no_grad():
                net[0].weight.mul_(float(point["init_scale"]))
            W0 = net[0].weight.detach().clone()
            M0 = (W0.T @ W0).double()
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            rec: dict[str, list[float]] = {}
            at: list[int] = []
            learned: list[float] = []
            for step in range(cfg.steps + 1):
                if step in marks:
                    W = net[0].weight.detach()
                    M = (W.T @ W).double()
                    A = agop(net, X).double()
                    with torch.no_grad():
                        test = float(((net(Xt) - Yt) ** 2).mean() / Yt.var())
                    vals = {
                        "nfa_correlation": matrix_correlation(M, A),
                        "nfa_cosine": matrix_correlation(M, A, centered=False),
                        "nfa_sqrt_correlation": matrix_correlation(M, psd_sqrt(A)),
                        "subspace_overlap_W": subspace_overlap(M, U),
                        "subspace_overlap_agop": subspace_overlap(A, U),
                        "test_error": test,
                    }
                    at.append(step)
                    for k, v in vals.items():
                        rec.setdefault(k, []).append(v)
                    if step:  # the learned part is zero at step 0
                        learned.append(matrix_correlation(M - M0, A))
                    if step == cfg.steps:
                        mu, sd = matrix_correlation_null(M - M0, A, seed=seed)
                        learned_z = (learned[-1] - mu) / sd
                if step == cfg.steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss = ((net(X) - Y) ** 2).mean()
                loss.backward()
                opt.step()
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError("training diverged")
            out[seed] = [Curve(k, "step", at, v) for k, v in rec.items()] + [
                Curve("learned_part_correlation", "step", at[1:], learned),
                Curve("learned_part_z_above_chance", "step", [cfg.steps], [learned_z]),
            ]
        return out

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _ends(ts: list[TrialResult], key: str) -> tuple[np.ndarray, np.ndarray]:
        c = [t.curve(key) for t in ts]
        c = [x for x in c if x is not None and x.values.size >= 1]
        return np.array([x.values[0] for x in c]), np.array([x.values[-1] for x in c])

    def compare(
        self, cfg: FeatureAnsatzConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        finals: dict[float, np.ndarray] = {}
        for s in cfg.init_scales:
            ts = [t for t in trials if t.status == "ok" and float(t.point["init_scale"]) == s]
            if len(ts) < 2:
                continue
            a, b = self._ends(ts, "subspace_overlap_W")
            m, se = mean_se(b - a)
            metrics.append(
                Metric(
                    f"init{s:g}_subspace_overlap_rise_z",
                    float(m) / float(se) if se > 0 else math.copysign(math.inf, float(m)),
                    3.0,
                    ">=",
                    description="overlap of W₁ᵀW₁'s top-k eigenvectors with span(U): "
                    f"{a.mean():.3f} at init → {b.mean():.3f} after training (rise {m:.3f} ± "
                    f"{se:.3f}); a random subspace: {cfg.rank / cfg.dim:.2f}",
                )
            )
            _, zs = self._ends(ts, "learned_part_z_above_chance")
            if zs.size:
                metrics.append(
                    Metric(
                        f"init{s:g}_learned_part_min_z_above_chance",
                        float(zs.min()),
                        3.0,
                        ">=",
                        description="corr(W₁ᵀW₁ − W₁,₀ᵀW₁,₀, AGOP) at the end, in standard "
                        "deviations above its chance level (200 random coordinate "
                        "permutations of the AGOP); smallest over seeds",
                    )
                )
            a, b = self._ends(ts, "nfa_correlation")
            m, se = mean_se(b - a)
            metrics.append(
                Metric(
                    f"init{s:g}_nfa_correlation_change",
                    float(m),
                    None,
                    stderr=float(se),
                    description=f"corr(W₁ᵀW₁, AGOP): {a.mean():.3f} at init → {b.mean():.3f} "
                    "after training (with the standard init, the init's own W₁,₀ᵀW₁,₀ "
                    "dominates the total)",
                )
            )
            finals[s] = self._ends(ts, "nfa_correlation")[1]
            for key, what in (
                ("learned_part_correlation", "corr(W₁ᵀW₁ − W₁,₀ᵀW₁,₀, AGOP) at the end"),
                ("nfa_sqrt_correlation", "corr(W₁ᵀW₁, AGOP^½) at the end"),
                ("test_error", "test MSE / Var(y) at the end"),
            ):
                _, b = self._ends(ts, key)
                if b.size:
                    m, se = mean_se(b)
                    metrics.append(
                        Metric(
                            f"init{s:g}_{key}", float(m), None, stderr=float(se), description=what
                        )
                    )
        if len(finals) >= 2:
            big, small = max(finals), min(finals)
            d = finals[small].mean() - finals[big].mean()
            se = math.sqrt(
                finals[small].var(ddof=1) / finals[small].size
                + finals[big].var(ddof=1) / finals[big].size
            )
            metrics.append(
                Metric(
                    "small_init_higher_nfa_correlation_z",
                    d / se if se > 0 else math.copysign(math.inf, d),
                    3.0,
                    ">=",
                    description=f"final corr(W₁ᵀW₁, AGOP): init ×{small:g} "
                    f"{finals[small].mean():.3f} vs ×{big:g} {finals[big].mean():.3f} "
                    f"(difference {d:.3f} ± {se:.3f})",
                )
            )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: FeatureAnsatzConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        plt = _plt()
        keys = (
            ("nfa_correlation", "corr(W₁ᵀW₁, AGOP)"),
            ("learned_part_correlation", "corr(ΔW₁ᵀW₁, AGOP)"),
            ("subspace_overlap_W", "top-k overlap with span(U)"),
            ("test_error", "test MSE / Var(y)"),
        )
        fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.2))
        for ax, (key, title) in zip(axes, keys, strict=True):
            for s in cfg.init_scales:
                ts = [
                    t
                    for t in trials
                    if t.status == "ok"
                    and float(t.point["init_scale"]) == s
                    and t.curve(key) is not None
                ]
                if not ts:
                    continue
                st = ts[0].curve(key).coords
                vals = np.array([t.curve(key).values for t in ts])
                m, se = mean_se(vals)
                x = np.maximum(st, 0.5)  # step 0 on a log axis
                line = ax.plot(x, m, marker="o", ms=3, label=f"init ×{s:g}")[0]
                ax.fill_between(x, m - 2 * se, m + 2 * se, alpha=0.2, color=line.get_color())
            if key == "subspace_overlap_W":
                ax.axhline(cfg.rank / cfg.dim, color="k", ls="--", lw=1, label="random")
            ax.set(xscale="log", xlabel="step (0 plotted at 0.5)", title=title)
            ax.title.set_fontsize(9)
        axes[0].legend(fontsize=7)
        axes[2].legend(fontsize=7)
        p = save_png(fig, outdir / "feature-ansatz.png")
        return [
            Figure(
                p,
                "Neural feature ansatz over training (mean ± 2 SE over seeds): correlation "
                "of the first-layer Gram with the AGOP, of its learned part, alignment with "
                "the target's index space, and test error.",
            )
        ]
