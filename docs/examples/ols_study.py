"""Study ``ols-risk``: the test risk of least squares, predicted exactly.

Claim under test: for ordinary least squares on n samples of d-dimensional Gaussian inputs
with a linear target and label noise σ², the expected excess test risk is exactly
σ²·d/(n − d − 1) for n > d + 1 (the mean of an inverse-Wishart matrix; e.g. Hastie,
Montanari, Rosset & Tibshirani 2022, Prop. 2).

* predict — E(n) = σ²·d/(n − d − 1) at every n of the sweep.
* measure — OLS on fresh Gaussian data per seed; the excess risk is computed exactly as
  ‖ŵ − w‖² (identity input covariance).
* claims — at every n the seed mean equals the prediction within 10% relative
  (``within_every``: one claim over all n, 95% bounds; the report names the worst n).

Negative control ``nonlinear``: the target gains a quadratic term the linear model cannot
represent, so the excess risk no longer vanishes as n grows and the claim must fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from learnmech.claims import Estimate, within_every
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import band, save_png, subplots
from learnmech.studies.base import Analysis, Control, Study, StudyConfig, Sweep, Trials

TOL = 0.10  # relative: a prediction good to 10% at every n


class OLSConfig(StudyConfig):
    ns: list[int] = Sweep([20, 40, 80, 160], key="n", n=2, gt=2, description="sizes (> dim + 1)")
    dim: int = Field(10, ge=1, le=1000)
    noise: float = Field(0.5, gt=0, le=10, description="label noise SD σ")
    nonlinear: float = Field(0.0, ge=0, le=10, description="weight of x₁² in the target")
    draws: int = Field(16, ge=1, le=10_000, description="datasets averaged per seed")
    tolerance: float = Analysis(TOL, gt=0, le=1, description="relative tolerance")


class OLSRisk(Study):
    name = "ols-risk"
    title = "Least-squares test risk: σ²d/(n − d − 1)"
    summary = "OLS excess risk vs n against its exact expectation"
    pillar = "solvable settings"
    Config = OLSConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"seeds": 64}, "full": {"seeds": 512}}
    controls = (
        Control("nonlinear", {"nonlinear": 1.0}, ("risk_curve",), "a quadratic target term"),
    )

    def predict(self, cfg: OLSConfig) -> list[Curve]:
        n = np.array(cfg.ns, float)
        return [Curve("excess_risk", "n", n, cfg.noise**2 * cfg.dim / (n - cfg.dim - 1))]

    def measure(
        self, cfg: OLSConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        n, out = int(point["n"]), {}
        for seed in seeds:
            rng = np.random.default_rng([seed, n])
            risks = []
            for _ in range(cfg.draws):
                w = rng.standard_normal(cfg.dim) / np.sqrt(cfg.dim)
                X = rng.standard_normal((n, cfg.dim))
                y = X @ w + cfg.nonlinear * (X[:, 0] ** 2 - 1)
                y += cfg.noise * rng.standard_normal(n)
                w_hat = np.linalg.lstsq(X, y, rcond=None)[0]
                # excess risk over Bayes: ‖ŵ − w‖² plus what no linear model captures,
                # Var(x₁²) = 2 (x₁² − 1 is uncorrelated with x)
                risks.append(float(np.sum((w_hat - w) ** 2)) + 2 * cfg.nonlinear**2)
            out[seed] = [Curve("excess_risk", "n", [n], [np.mean(risks)])]
        return out

    def analyze(self, cfg: OLSConfig, theory: list[Curve], trials: Trials) -> dict:
        pred = dict(zip(theory[0].coords, theory[0].values, strict=True))
        return {n: (pred[n], ts.last("excess_risk")) for n, ts in trials.by("n").items()}

    def claims(self, cfg: OLSConfig, s: dict) -> list[Metric]:
        cells = [(f"n={n:g}", Estimate.of(v), p, cfg.tolerance * p) for n, (p, v) in s.items()]
        return [within_every("risk_curve", cells, description="excess risk vs σ²d/(n − d − 1)")]

    def figures(self, cfg: OLSConfig, s: dict, outdir: Path) -> list[Figure]:
        fig, ax = subplots(figsize=(5, 3.5))
        n = np.array(sorted(s), float)
        est = [Estimate.of(s[k][1]) for k in n]
        band(
            ax,
            n,
            np.array([e.value for e in est]),
            np.array([e.se for e in est]),
            marker="o",
            label="measured ± 2 SE",
        )
        ax.plot(n, [s[k][0] for k in n], "k--", label="σ²d/(n − d − 1)")
        ax.set(xscale="log", yscale="log", xlabel="n", ylabel="excess test risk")
        ax.legend()
        return [Figure(save_png(fig, outdir / "ols.png"), "OLS excess risk against n.")]
