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

Claims (one-sided 95% bounds over seeds, Student t):

* (i) the learned-part correlation is at least 0.5 (``above``): the weak form of the
  ansatz, the learned Gram explains at least a quarter of the AGOP's variance
  (Radhakrishnan et al. report r > 0.9 on real tasks, Fig. 2; the value is shown);
  and in every seed it lies ≥ 3 standard deviations above its permutation null (random
  coordinate permutations of the AGOP; ``exact``, the smallest z over seeds);
* (ii) the top-k overlap with span(U) rises during training (paired over seeds,
  ``above`` 0);
* (iii) the final whole-Gram correlation is higher at small init (Welch, ``above`` 0).

Reported: the whole-Gram correlation's change (with the standard init it barely rises —
0.57 → 0.63 — because W₁,₀ᵀW₁,₀ dominates), the correlation with AGOP^½, test error.

Negative control ``shuffled-labels``: the training targets are permuted across samples,
so they carry no information about span(U); the overlap rise must fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from learnmech.claims import Claims, Estimate
from learnmech.measure.features import (
    agop,
    matrix_correlation,
    matrix_correlation_null,
    psd_sqrt,
    subspace_overlap,
)
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import band, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials

__all__ = ["FeatureAnsatz", "FeatureAnsatzConfig"]

ANSATZ_MIN_CORRELATION = 0.5  # r² ≥ 1/4: the learned Gram explains a quarter of the AGOP


class FeatureAnsatzConfig(StudyConfig):
    init_scales: list[float] = Sweep(
        [1.0, 0.1], key="init_scale", order="desc", gt=0, le=10, description="W₁ init ×"
    )
    dim: int = Field(20, ge=3, le=1000)
    rank: int = Field(2, ge=2, le=2, description="index dimension k (the target uses two)")
    width: int = Field(128, ge=4, le=8192)
    samples: int = Field(500, ge=20, le=100_000)
    test_samples: int = Field(2000, ge=20, le=100_000)
    steps: int = Field(500, ge=10, le=1_000_000)
    lr: float = Field(1e-3, gt=0, le=1)
    records: int = Field(8, ge=3, le=100)
    data_seed: int = Field(0, ge=0)
    shuffle_labels: bool = Field(False, description="permute the training targets (control)")


def _task(cfg: FeatureAnsatzConfig) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(cfg.data_seed)
    U = torch.linalg.qr(torch.randn(cfg.dim, cfg.rank, generator=g, dtype=torch.float64))[0].T
    X = torch.randn(cfg.samples, cfg.dim, generator=g, dtype=torch.float64)
    Xt = torch.randn(cfg.test_samples, cfg.dim, generator=g, dtype=torch.float64)

    def target(x: torch.Tensor) -> torch.Tensor:
        z = x @ U.T
        return (z[:, 0] * z[:, 1] + 0.5 * z[:, 0] ** 2)[:, None]

    Y = target(X)
    if cfg.shuffle_labels:
        Y = Y[torch.randperm(cfg.samples, generator=g)]
    return U.float(), X.float(), Y.float(), Xt.float(), target(Xt).float()


def _steps(cfg: FeatureAnsatzConfig) -> list[int]:
    return sorted({0} | {round(s) for s in np.geomspace(1, cfg.steps, cfg.records - 1)})


class FeatureAnsatz(Study):
    name = "feature-ansatz"
    title = "Neural feature ansatz: W₁ᵀW₁ ∝ AGOP"
    summary = "first-layer Gram vs average gradient outer product on a multi-index task"
    pillar = "universality"
    Config = FeatureAnsatzConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {"seeds": 8, "steps": 3000, "samples": 2000, "width": 256, "records": 12},
    }
    controls = (
        Control(
            "shuffled-labels",
            {"shuffle_labels": True},
            ("init*_subspace_overlap_rise",),
            "the targets are permuted across samples: they carry nothing about span(U)",
        ),
    )

    def predict(self, cfg: FeatureAnsatzConfig) -> list[Curve]:
        s = np.array(_steps(cfg), dtype=np.float64)
        return [Curve("subspace_overlap_chance", "step", s, np.full_like(s, cfg.rank / cfg.dim))]

    def measure(
        self, cfg: FeatureAnsatzConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        U, X, Y, Xt, Yt = (t.to(device) for t in _task(cfg))
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
            ).to(device)
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

    def analyze(self, cfg: FeatureAnsatzConfig, theory: list[Curve], trials: Trials) -> dict:
        """Per init scale: each recorded curve stacked over seeds (seed × step)."""
        keys = (
            "subspace_overlap_W",
            "nfa_correlation",
            "learned_part_correlation",
            "learned_part_z_above_chance",
            "nfa_sqrt_correlation",
            "test_error",
        )
        return {s: {k: ts.stack(k) for k in keys} for s, ts in trials.by("init_scale").items()}

    def claims(self, cfg: FeatureAnsatzConfig, s: dict) -> list[Metric]:
        out = Claims()
        finals: dict[float, Estimate] = {}
        for scale, r in s.items():
            p = f"init{scale:g}"
            _, ov = r["subspace_overlap_W"]
            rise = Estimate.paired(ov[:, -1], ov[:, 0]) if ov.size else Estimate.of([])
            out.above(
                f"{p}_subspace_overlap_rise",
                rise,
                0.0,
                strict=True,
                description="rise of the overlap of W₁ᵀW₁'s top-k eigenvectors with "
                f"span(U) over training; a random subspace: {cfg.rank / cfg.dim:.2f}",
            )
            _, lp = r["learned_part_correlation"]
            out.above(
                f"{p}_learned_part_correlation",
                Estimate.of(lp[:, -1] if lp.size else []),
                ANSATZ_MIN_CORRELATION,
                description="corr(W₁ᵀW₁ − W₁,₀ᵀW₁,₀, AGOP) at the end (the ansatz; "
                "r > 0.9 in Radhakrishnan et al. 2024, Fig. 2)",
            )
            _, z = r["learned_part_z_above_chance"]
            out.exact(
                f"{p}_learned_part_min_z_above_chance",
                float(z.min()) if z.size else math.nan,
                3.0,
                ">=",
                description="the same correlation in standard deviations above its "
                "permutation null (200 coordinate permutations of the AGOP), smallest "
                "over seeds: every seed must clear it",
            )
            _, nc = r["nfa_correlation"]
            if nc.size:
                finals[scale] = Estimate.of(nc[:, -1])
                out.reported(
                    f"{p}_nfa_correlation_change",
                    Estimate.paired(nc[:, -1], nc[:, 0]),
                    description=f"corr(W₁ᵀW₁, AGOP): {nc[:, 0].mean():.3f} at init → "
                    f"{nc[:, -1].mean():.3f} (the init's W₁,₀ᵀW₁,₀ can dominate)",
                )
            for key, what in (
                ("nfa_sqrt_correlation", "corr(W₁ᵀW₁, AGOP^½) at the end"),
                ("test_error", "test MSE / Var(y) at the end"),
            ):
                _, v = r[key]
                if v.size:
                    out.reported(f"{p}_{key}", Estimate.of(v[:, -1]), description=what)
        if len(finals) >= 2:
            big, small = max(finals), min(finals)
            out.above(
                "small_init_higher_nfa_correlation",
                finals[small] - finals[big],
                0.0,
                strict=True,
                description=f"final corr(W₁ᵀW₁, AGOP) at init ×{small:g} minus at ×{big:g} (Welch)",
            )
        return out

    def figures(self, cfg: FeatureAnsatzConfig, s: dict, outdir: Path) -> list[Figure]:
        keys = (
            ("nfa_correlation", "corr(W₁ᵀW₁, AGOP)"),
            ("learned_part_correlation", "corr(ΔW₁ᵀW₁, AGOP)"),
            ("subspace_overlap_W", "top-k overlap with span(U)"),
            ("test_error", "test MSE / Var(y)"),
        )
        fig, axes = subplots(1, len(keys), figsize=(3.3 * len(keys), 3.2))
        for ax, (key, title) in zip(axes, keys, strict=True):
            for scale, r in s.items():
                x, v = r[key]
                if not v.size:
                    continue
                se = v.std(0, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else None
                band(
                    ax,
                    np.maximum(x, 0.5),
                    v.mean(0),
                    se,
                    marker="o",
                    ms=3,
                    label=f"init ×{scale:g}",
                )
            if key == "subspace_overlap_W":
                ax.axhline(cfg.rank / cfg.dim, color="k", ls="--", lw=1, label="random")
            ax.set(xscale="log", xlabel="step (0 plotted at 0.5)")
            ax.set_title(title, fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        caption = (
            "Neural feature ansatz over training (mean ± 2 SE over seeds): correlation of "
            "the first-layer Gram with the AGOP, of its learned part, alignment with the "
            "target's index space, and test error."
        )
        return [Figure(save_png(fig, outdir / "feature-ansatz.png"), caption)]
