"""Study ``scaling-laws``: fit scaling laws to trained models, extrapolate, and predict exponents.

Models: linear random-feature regression f(z) = wᵀ(FΛ^{1/2}z)/√P on Gaussian data whose
covariance spectrum is a power law λ_k = k^{−a}, teacher y = vᵀz (+ noise) with v_k² ∝ k^{−b}
(M modes). Model size N = P features, data D = n samples; each model is trained by ridge
regression (the exact minimiser, what gradient descent converges to) and its test error is
computed exactly, E = ‖Λ^{1/2}(FᵀW/√P) − v‖² + ε².

Three measurements, each compared with an a-priori prediction from the spectrum
(:mod:`learnmech.theory.exponents`, :mod:`learnmech.theory.eigenlearning`):

* data sweep in the kernel limit (P → ∞: kernel regression with the linear kernel on the
  features): E(n), predicted by eigenlearning; asymptotic exponent min(b − 1, 2a).
* model sweep with unlimited data (n → ∞: the best fit on P random features): E(P),
  predicted by the random-projection deterministic equivalent Σ(1 − 𝓛_i)v_i²; asymptotic
  exponent min(b − 1, a) — so data and model size have *different* exponents when b − 1 > a.
* a (P, n) grid: a Chinchilla law E + A/P^α + B/n^β is fitted to the smaller runs and
  scored on the held-out largest ones (leave-largest-out), the number to check before
  trusting an extrapolation.

Exponent tolerance: 3 standard errors of the fitted slope (over seeds) plus the slope bias a
1/x relative error of the deterministic equivalent can cause over the sweep,
2/(x_min·ln(x_max/x_min)) (Cheng & Montanari 2022).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.stats import fit_power_law, mean_se
from learnmech.studies.base import Figure, Study, StudyConfig
from learnmech.theory import eigenlearning
from learnmech.theory.exponents import (
    asymptotic_exponent,
    asymptotic_model_exponent,
    projection_error,
)
from learnmech.theory.spectra import power_law_spectrum

__all__ = ["ScalingLaws", "ScalingLawsConfig"]


class ScalingLawsConfig(StudyConfig):
    modes: int = Field(3000, ge=16, le=200_000, description="data dimension M")
    a: float = Field(1.5, gt=1, le=10, description="λ_k = k^−a")
    b: float = Field(3.5, gt=1, le=20, description="v_k² ∝ k^−b")
    noise_var: float = Field(0.0, ge=0, le=10)
    n_sweep: list[int] = Field(default_factory=lambda: [16, 32, 64, 128, 256, 512, 1024])
    p_sweep: list[int] = Field(default_factory=lambda: [16, 32, 64, 128, 256, 512, 1024])
    grid_p: list[int] = Field(default_factory=lambda: [16, 32, 64, 128, 256])
    grid_n: list[int] = Field(default_factory=lambda: [32, 64, 128, 256, 512, 1024])
    ridge: float = Field(1e-3, gt=0, le=10, description="normalised ridge of the grid runs")
    holdout: int = Field(1, ge=1, le=4, description="largest P values held out of the fit")

    @field_validator("n_sweep", "p_sweep", "grid_p", "grid_n")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if len(v) < 3 or any(x < 2 for x in v):
            raise ValueError("need at least three sizes, each ≥ 2")
        return sorted(set(v))


def _spectrum(cfg: ScalingLawsConfig) -> tuple[np.ndarray, np.ndarray]:
    s = power_law_spectrum(cfg.modes, cfg.a, cfg.b)
    return s.eigenvalues, s.target_coeffs


def _rng(kind: str, x: int, y: int, seed: int) -> np.random.Generator:
    code = {"n": 1, "p": 2, "grid": 3}[kind]
    return np.random.default_rng([seed, code, x, y])


def _exp_tol(xs: list[int]) -> float:
    return 2 / (min(xs) * math.log(max(xs) / min(xs)))


class ScalingLaws(Study):
    name = "scaling-laws"
    title = "Scaling laws of random-feature models: fits, extrapolation, a-priori exponents"
    summary = "data and model-size exponents from the spectrum; leave-largest-out extrapolation"
    pillar = "empirical laws"
    Config = ScalingLawsConfig
    sweep_fields = frozenset({"n_sweep", "p_sweep", "grid_p", "grid_n"})
    analysis_fields = frozenset({"holdout"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 6},
        "full": {
            "seeds": 20,
            "modes": 8000,
            "n_sweep": [16, 32, 64, 128, 256, 512, 1024, 2048],
            "p_sweep": [16, 32, 64, 128, 256, 512, 1024, 2048],
            "grid_p": [16, 32, 64, 128, 256, 512],
            "grid_n": [32, 64, 128, 256, 512, 1024, 2048],
        },
    }

    def grid(self, cfg: ScalingLawsConfig) -> list[dict[str, Any]]:
        pts = [{"kind": "n", "n": n, "p": 0} for n in cfg.n_sweep]
        pts += [{"kind": "p", "n": 0, "p": p} for p in cfg.p_sweep]
        pts += [{"kind": "grid", "n": n, "p": p} for p in cfg.grid_p for n in cfg.grid_n]
        return pts

    def predict(self, cfg: ScalingLawsConfig) -> list[Curve]:
        lam, v = _spectrum(cfg)
        ns = np.array(cfg.n_sweep, float)
        ps = np.array(cfg.p_sweep, float)
        e_n = eigenlearning.predict(lam, v, ns, 0.0, cfg.noise_var).test_mse
        e_p = projection_error(lam, v, ps) + cfg.noise_var
        return [
            Curve("test_error", "n", ns, e_n, "data"),
            Curve("test_error", "P", ps, e_p, "model"),
        ]

    def measure(
        self, cfg: ScalingLawsConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        lam, v = _spectrum(cfg)
        M = lam.size
        sq = np.sqrt(lam)
        kind, n, P = point["kind"], int(point["n"]), int(point["p"])
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            rng = _rng(kind, n, P, seed)
            if kind == "n":  # kernel limit: ridgeless regression with the linear kernel
                Z = rng.standard_normal((n, M))
                y = Z @ v + math.sqrt(cfg.noise_var) * rng.standard_normal(n)
                K = (Z * lam) @ Z.T
                alpha = np.linalg.lstsq(K, y, rcond=None)[0]
                w = lam * (Z.T @ alpha)
                err = float(np.sum((w - v) ** 2) + cfg.noise_var)
            elif kind == "p":  # unlimited data: best fit on P random features
                G = rng.standard_normal((P, M)) * sq
                w = np.linalg.lstsq(G @ G.T, G @ v, rcond=None)[0]
                err = float(np.sum((G.T @ w - v) ** 2) + cfg.noise_var)
            else:  # P features, n samples, ridge regression
                # the same features for every n at this (P, seed): curves in n are paired
                G = _rng("p", 0, P, seed).standard_normal((P, M)) * sq / math.sqrt(P)
                Z = rng.standard_normal((n, M))
                y = Z @ v + math.sqrt(cfg.noise_var) * rng.standard_normal(n)
                Phi = Z @ G.T
                A = Phi.T @ Phi + cfg.ridge * n * np.eye(P)
                w = np.linalg.solve(A, Phi.T @ y)
                err = float(np.sum((G.T @ w - v) ** 2) + cfg.noise_var)
            out[seed] = [Curve("test_error", "run", [0], [err])]
        return out

    # -- compare ------------------------------------------------------------------------
    def _sweep(
        self, trials: list[TrialResult], kind: str, key: str, xs: list[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
        ms, ses, per = [], [], []
        keep = []
        for x in xs:
            vals = np.array(
                [
                    t.curve("test_error").values[0]
                    for t in trials
                    if t.status == "ok" and t.point.get("kind") == kind and t.point.get(key) == x
                ]
            )
            if vals.size >= 2:
                m, se = mean_se(vals)
                ms.append(float(m))
                ses.append(float(se))
                per.append(vals)
                keep.append(x)
        return np.array(keep, float), np.array(ms), np.array(ses), per

    def compare(
        self, cfg: ScalingLawsConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        metrics: list[Metric] = []
        pred = {c.series: c for c in theory}
        for kind, key, series, asym, label in (
            ("n", "n", "data", asymptotic_exponent(cfg.a, cfg.b), "data n (kernel limit)"),
            ("p", "p", "model", asymptotic_model_exponent(cfg.a, cfg.b), "model size P (∞ data)"),
        ):
            xs = cfg.n_sweep if kind == "n" else cfg.p_sweep
            x, m, se, _ = self._sweep(trials, kind, key, xs)
            if x.size < 3:
                continue
            excess_m = m - cfg.noise_var
            fit = fit_power_law(x, excess_m, se)
            th = pred[series]
            th_vals = np.interp(x, th.coords, th.values) - cfg.noise_var
            # the prediction is fitted with the measurement's weights (its relative SEs), so
            # both slopes average the local exponent over the sweep in the same way
            th_fit = fit_power_law(x, th_vals, th_vals * se / excess_m)
            tol = 3 * fit.exponent_se + _exp_tol(xs)
            metrics.append(
                Metric(
                    f"{series}_exponent_error",
                    abs(fit.exponent - th_fit.exponent),
                    tol,
                    "<=",
                    stderr=fit.exponent_se,
                    description=f"{label}: |fitted slope {fit.exponent:.3f} − a-priori slope "
                    f"{th_fit.exponent:.3f}| (same power-law fit to the prediction over the "
                    f"same range and weights; asymptotic −{asym:g}); tolerance 3 SE + "
                    "2/(x_min ln range)",
                )
            )
            rel = np.abs(m / np.interp(x, th.coords, th.values) - 1)
            metrics.append(
                Metric(
                    f"{series}_curve_max_rel_error",
                    float(rel.max()),
                    None,
                    description=f"{label}: max over sizes of |measured/predicted − 1|",
                )
            )
        # 2-D grid: Chinchilla law, leave-largest-P-out
        grid = [t for t in trials if t.status == "ok" and t.point.get("kind") == "grid"]
        if grid:
            from learnmech.laws import extrapolation_score

            P = np.array([t.point["p"] for t in grid], float)
            n = np.array([t.point["n"] for t in grid], float)
            E = np.array([t.curve("test_error").values[0] for t in grid])
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                s = extrapolation_score("chinchilla", E, N=P, D=n, holdout=cfg.holdout)
            f = s["fit"].params
            metrics.append(
                Metric(
                    "grid_extrapolation_mean_abs_rel_error",
                    s["mean_abs_rel_error"],
                    None,
                    description=f"Chinchilla law fitted on P < {s['threshold']:g} "
                    f"({s['train_points']} runs), scored on the {s['test_points']} held-out "
                    f"runs with the largest P (max {s['max_abs_rel_error']:.3f})",
                )
            )
            for name, asym in (
                ("alpha", asymptotic_model_exponent(cfg.a, cfg.b)),
                ("beta", asymptotic_exponent(cfg.a, cfg.b)),
            ):
                metrics.append(
                    Metric(
                        f"grid_fitted_{name}",
                        f[name],
                        None,
                        description=f"Chinchilla-law exponent fitted on the grid (asymptotic "
                        f"a-priori {asym:g}; finite grids bias it)",
                    )
                )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: ScalingLawsConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        plt = _plt()
        pred = {c.series: c for c in theory}
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for ax, kind, key, series, xl in (
            (axes[0], "n", "n", "data", "samples n (kernel limit P → ∞)"),
            (axes[1], "p", "p", "model", "features P (unlimited data)"),
        ):
            xs = cfg.n_sweep if kind == "n" else cfg.p_sweep
            x, m, se, _ = self._sweep(trials, kind, key, xs)
            ax.errorbar(x, m, 2 * se, fmt="o", capsize=2, label="trained models (±2 SE)")
            th = pred[series]
            ax.plot(th.coords, th.values, "k-", lw=1.2, label="a-priori prediction")
            ax.set(xscale="log", yscale="log", xlabel=xl, ylabel="test error")
            ax.legend(fontsize=8)
        ax = axes[2]
        grid = [t for t in trials if t.status == "ok" and t.point.get("kind") == "grid"]
        cmap = plt.get_cmap("viridis")
        for i, P in enumerate(cfg.grid_p):
            pts = sorted(
                (t.point["n"], t.curve("test_error").values[0]) for t in grid if t.point["p"] == P
            )
            if not pts:
                continue
            xs_ = sorted({p[0] for p in pts})
            ms_ = [np.mean([e for nn, e in pts if nn == x]) for x in xs_]
            held = P in cfg.grid_p[-cfg.holdout :]
            ax.plot(
                xs_,
                ms_,
                "x--" if held else "o-",
                color=cmap(i / max(len(cfg.grid_p) - 1, 1)),
                label=f"P = {P}" + (" (held out)" if held else ""),
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="samples n",
            ylabel="test error",
            title=f"grid (ridge λ = {cfg.ridge:g})",
        )
        ax.legend(fontsize=7)
        return [
            Figure(
                save_png(fig, outdir / "scaling_laws.png"),
                "Test error of trained random-feature models against data and model size, "
                "with the a-priori predictions from the spectrum; right: the (P, n) grid used "
                "for the leave-largest-out extrapolation score.",
            )
        ]
