"""Study ``learning-curves``: kernel regression test error vs n, predicted from the spectrum.

Claim under test (eigenlearning: Simon, Dickens, Karkada & DeWeese 2023; Bordelon, Canatar &
Pehlevan 2020): the average test MSE of kernel ridge regression at every sample size n and
ridge δ follows from the kernel's eigenvalues and the target's eigencoefficients alone
(:func:`learnmech.theory.eigenlearning.predict`).

Tasks:

* ``synthetic`` — Gaussian design with a power-law spectrum λ_k = k^{−a} and target power
  v_k² ∝ k^{−b} over M modes, label noise ε²; the linear kernel on these features is exactly
  this spectrum. Test MSE is computed exactly from the learned coefficients.
* ``digits`` — scikit-learn's 8×8 handwritten digits (1,797 real images that ship with the
  package), unit-normalised, 10-class one-hot targets (centred), and the analytic NTK of a
  one-hidden-layer ReLU MLP (:mod:`learnmech.theory.kernels`). The 1,797 images are the
  population: the spectrum is that of K/N on all of them (exact for this population), the n
  training images are distinct draws, and the test MSE is over all 1,797 (the theory's test
  distribution, training images included). The theory assumes samples from a continuum, so
  n stops at N/4 = 449: beyond that, sampling a large fraction of a finite population is a
  different problem (with replacement, duplicates carry no information; without, the
  sample is better than i.i.d.).

Each seed is one draw of the training set; measured curves carry error bars over draws.
Wide networks (NTK parameterization, centred: f − f₀) trained by full-batch GD on
``digits`` at several widths are compared with the kernel's own prediction at the same
training time on the same draw (Lee et al. 2019); scored: the deviation shrinks with width.
Measured (not assumed): it shrinks more slowly than a network's own kernel fluctuation
(width^−½), because training along the Gram matrix's small-eigenvalue directions amplifies
finite-width corrections; at width 4,096 and 2,000 steps the ensemble-mean deviation is
still ~5%.

Tolerance of the learning-curve comparison at each (n, δ): 3 standard errors of the mean
over draws, plus a finite-n deterministic-equivalent bound of 1/n relative for Gaussian
design (Cheng & Montanari 2022) — and, for real data whose eigenfunctions are not Gaussian,
1/√n relative (the concentration rate of the empirical kernel operator, e.g. Rosasco,
Belkin & De Vito 2010). The per-n relative errors are reported for every ridge.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.errors import UserError
from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.stats import fit_power_law, jackknife, mean_se
from learnmech.studies.base import Figure, Study, StudyConfig
from learnmech.theory import eigenlearning
from learnmech.theory.spectra import gram_matrix, power_law_spectrum, spectrum_from_gram

__all__ = ["LearningCurves", "LearningCurvesConfig"]

Task = Literal["synthetic", "digits"]


class LearningCurvesConfig(StudyConfig):
    tasks: list[Task] = Field(default_factory=lambda: ["synthetic", "digits"])
    n_values: list[int] = Field(default_factory=lambda: [8, 16, 32, 64, 128, 256, 512, 1024])
    ridges: list[float] = Field(
        default_factory=lambda: [0.0, 1e-4, 1e-3],
        description="normalised ridges λ (δ = n·λ in f̂ = K(K + δI)⁻¹y)",
    )
    modes: int = Field(2000, ge=2, le=1_000_000, description="synthetic: number of modes M")
    alpha: float = Field(1.5, gt=1, le=10, description="synthetic: λ_k = k^−alpha")
    beta: float = Field(1.2, gt=0, le=10, description="synthetic: v_k² ∝ k^−beta")
    noise_var: float = Field(0.05, ge=0, le=100, description="synthetic: label noise ε²")
    kernel_depth: int = Field(1, ge=1, le=6, description="digits: hidden layers of the NTK")
    w_std: float = Field(1.4, gt=0, le=10)
    b_std: float = Field(0.1, ge=0, le=10)
    net_n: list[int] = Field(default_factory=lambda: [64], description="digits net: sample sizes")
    net_widths: list[int] = Field(
        default_factory=lambda: [512, 2048], description="digits net: hidden widths (≥ 2)"
    )
    net_steps: int = Field(500, ge=1, le=1_000_000)
    data_seed: int = Field(0, ge=0)

    @field_validator("n_values", "net_n")
    @classmethod
    def _ns(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("sample sizes must be positive")
        return sorted(set(v))

    @field_validator("net_widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if len(set(v)) < 2 or any(w < 8 for w in v):
            raise ValueError("need at least two distinct widths ≥ 8 to see the trend")
        return sorted(set(v))

    @field_validator("ridges")
    @classmethod
    def _ridges(cls, v: list[float]) -> list[float]:
        if not v or any(not (math.isfinite(r) and r >= 0) for r in v):
            raise ValueError("ridges must be non-negative and finite")
        return sorted(set(v))


@functools.lru_cache(maxsize=2)
def _digits(depth: int, w_std: float, b_std: float) -> dict[str, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise UserError("the digits task needs scikit-learn (pip install scikit-learn)") from err
    d = load_digits()
    x = d.data.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.eye(10)[d.target] - 0.1
    K = gram_matrix(x, "ntk", depth=depth, w_std=w_std, b_std=b_std)
    spec = spectrum_from_gram(K, y)
    return {"x": x, "y": y, "K": K, "lam": spec.eigenvalues, "v": spec.target_coeffs}


def _synthetic(cfg: LearningCurvesConfig) -> tuple[np.ndarray, np.ndarray]:
    s = power_law_spectrum(cfg.modes, cfg.alpha, cfg.beta)
    return s.eigenvalues, s.target_coeffs


DIGITS_N = 1797


def _ns(cfg: LearningCurvesConfig, task: str) -> list[int]:
    """Sample sizes used for a task: digits stops at N/4 of its 1,797-image population (the
    theory assumes samples from a continuum; a large fraction of a finite population is
    not that — see the module docstring)."""
    if task == "digits":
        return [n for n in cfg.n_values if n <= DIGITS_N // 4]
    return list(cfg.n_values)


def _draw_seed(task: str, n: int, seed: int) -> int:
    return (seed + 1) * 7919 + n * 31 + (0 if task == "synthetic" else 17)


class LearningCurves(Study):
    name = "learning-curves"
    title = "Kernel regression learning curves predicted from the spectrum (eigenlearning)"
    summary = "KRR test MSE vs n and ridge, synthetic power law and real digits with the NTK"
    pillar = "solvable settings"
    Config = LearningCurvesConfig
    sweep_fields = frozenset({"tasks", "n_values", "net_n", "net_widths"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 12, "n_values": [8, 16, 32, 64, 128, 256, 512, 1024], "net_n": [64]},
        "full": {"seeds": 40, "net_n": [64], "net_widths": [512, 1024, 2048, 4096]},
    }

    def grid(self, cfg: LearningCurvesConfig) -> list[dict[str, Any]]:
        pts = [{"task": t, "n": n} for t in cfg.tasks for n in _ns(cfg, t)]
        if "digits" in cfg.tasks:
            pts += [
                {"task": "digits-net", "n": n, "width": w}
                for n in cfg.net_n
                for w in cfg.net_widths
            ]
        return pts

    def _theory(
        self, cfg: LearningCurvesConfig, task: str
    ) -> eigenlearning.EigenlearningPrediction:
        ns = np.array(_ns(cfg, task), dtype=np.float64)[None, :]
        ridges = np.array(cfg.ridges)[:, None] * ns
        if task == "synthetic":
            lam, v = _synthetic(cfg)
            return eigenlearning.predict(lam, v, ns, ridges, cfg.noise_var)
        d = _digits(cfg.kernel_depth, cfg.w_std, cfg.b_std)
        return eigenlearning.predict(d["lam"], d["v"], ns, ridges, 0.0)

    def predict(self, cfg: LearningCurvesConfig) -> list[Curve]:
        curves = []
        for task in cfg.tasks:
            p = self._theory(cfg, task)
            scale = 10.0 if task == "digits" else 1.0  # MSE per output
            for i, r in enumerate(cfg.ridges):
                curves.append(
                    Curve(
                        "test_mse",
                        "n",
                        _ns(cfg, task),
                        p.test_mse[i] / scale,
                        f"{task}/ridge={r:g}",
                    )
                )
        return curves

    # -- measure ------------------------------------------------------------------------
    def measure(
        self, cfg: LearningCurvesConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        task, n = point["task"], int(point["n"])
        out: dict[int, list[Curve]] = {}
        if task == "digits-net":
            return self._measure_net(cfg, n, int(point["width"]), seeds, device)
        ridges = np.array(cfg.ridges)
        for seed in seeds:
            rng = np.random.default_rng(_draw_seed(task, n, seed))
            if task == "synthetic":
                lam, v = _synthetic(cfg)
                Z = rng.standard_normal((n, lam.size))
                y = Z @ v + math.sqrt(cfg.noise_var) * rng.standard_normal(n)
                K = (Z * lam) @ Z.T
                mses = []
                for r in ridges:
                    A = K + r * n * np.eye(n)
                    alpha = (
                        np.linalg.lstsq(A, y, rcond=None)[0] if r == 0 else np.linalg.solve(A, y)
                    )
                    w = lam * (Z.T @ alpha)
                    mses.append(float(np.sum((w - v) ** 2) + cfg.noise_var))
            else:
                d = _digits(cfg.kernel_depth, cfg.w_std, cfg.b_std)
                N = d["x"].shape[0]
                # n distinct images; the test error is over the whole population (the
                # theory's test distribution), training images included
                idx = rng.choice(N, n, replace=False)
                K = d["K"][np.ix_(idx, idx)]
                Kx = d["K"][:, idx]
                y = d["y"][idx]
                mses = []
                for r in ridges:
                    A = K + r * n * np.eye(n)
                    # ridgeless with repeated draws: the minimum-norm interpolant (pseudo-inverse)
                    alpha = (
                        np.linalg.lstsq(A, y, rcond=None)[0] if r == 0 else np.linalg.solve(A, y)
                    )
                    mses.append(float(np.mean((Kx @ alpha - d["y"]) ** 2)))
            out[seed] = [Curve("test_mse", "ridge", ridges, mses)]
        return out

    def _measure_net(
        self, cfg: LearningCurvesConfig, n: int, width: int, seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        from learnmech.nets.mlp import MLP

        d = _digits(cfg.kernel_depth, cfg.w_std, cfg.b_std)
        dev = torch.device(device)
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            rng = np.random.default_rng(_draw_seed("digits", n, seed) + 1)
            idx = rng.choice(d["x"].shape[0], n, replace=False)
            K = d["K"][np.ix_(idx, idx)]
            lr = n / float(np.linalg.eigvalsh(K)[-1])  # mode factor 1 − ηλ/n ∈ [0, 1)
            # kernel GD from zero at time T on this draw, loss ½·mean_i Σ_k: rate η/n
            lam, V = np.linalg.eigh(K)
            filt = (1 - lr * lam / n) ** cfg.net_steps
            coef = np.where(
                lam > 1e-12 * lam[-1], (1 - filt) / np.maximum(lam, 1e-300), lr * cfg.net_steps / n
            )
            f_ker = d["K"][:, idx] @ (V @ (coef[:, None] * (V.T @ d["y"][idx])))
            x = torch.from_numpy(d["x"]).to(dev)
            y = torch.from_numpy(d["y"][idx]).to(dev)
            net = MLP(
                64,
                width,
                cfg.kernel_depth,
                out_dim=10,
                w_std=cfg.w_std,
                b_std=cfg.b_std,
                seed=10_000 + seed,
                dtype=torch.float64,
            ).to(dev)
            with torch.no_grad():
                f0_all = net(x)
            f0_train = f0_all[torch.from_numpy(idx).to(dev)]
            opt = torch.optim.SGD(net.parameters(), lr=lr)
            xt = x[torch.from_numpy(idx).to(dev)]
            for _ in range(cfg.net_steps):
                opt.zero_grad(set_to_none=True)
                loss = 0.5 * ((net(xt) - f0_train - y) ** 2).sum(1).mean()
                loss.backward()
                opt.step()
            with torch.no_grad():
                f_net = (net(x) - f0_all).cpu().numpy()
            out[seed] = [
                Curve("net_test_mse", "n", [n], [float(np.mean((f_net - d["y"]) ** 2))]),
                Curve("kernel_test_mse", "n", [n], [float(np.mean((f_ker - d["y"]) ** 2))]),
                Curve(
                    "net_vs_kernel_rms",
                    "n",
                    [n],
                    [float(np.sqrt(np.mean((f_net - f_ker) ** 2) / np.mean(f_ker**2)))],
                ),
                Curve("net_minus_kernel", "index", np.arange(f_net.size), (f_net - f_ker).ravel()),
                Curve("kernel_rms", "n", [n], [float(np.sqrt(np.mean(f_ker**2)))]),
            ]
        return out

    # -- compare ------------------------------------------------------------------------
    def _table(self, cfg: LearningCurvesConfig, trials: list[TrialResult]) -> dict[str, Any]:
        tab: dict[str, Any] = {}
        for task in cfg.tasks:
            p = self._theory(cfg, task)
            scale = 10.0 if task == "digits" else 1.0
            rows = []
            for j, n in enumerate(_ns(cfg, task)):
                ok = [
                    t
                    for t in trials
                    if t.status == "ok" and t.point.get("task") == task and t.point.get("n") == n
                ]
                if len(ok) < 2:
                    continue
                m, se = mean_se(np.stack([t.curve("test_mse").values for t in ok]))
                for i, r in enumerate(cfg.ridges):
                    pred = p.test_mse[i, j] / scale
                    rows.append(
                        {
                            "n": n,
                            "ridge": r,
                            "pred": pred,
                            "mean": m[i],
                            "se": se[i],
                            "draws": len(ok),
                        }
                    )
            tab[task] = rows
        return tab

    def compare(
        self, cfg: LearningCurvesConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        tab = self._table(cfg, trials)
        metrics: list[Metric] = []
        for task, rows in tab.items():
            rows = [r for r in rows if np.isfinite(r["pred"]) and r["pred"] > 0]
            if not rows:
                continue
            worst, worst_row = -np.inf, rows[0]
            for r in rows:
                fin = 1 / r["n"] if task == "synthetic" else 1 / math.sqrt(r["n"])
                excess = abs(r["mean"] - r["pred"]) / (3 * r["se"] + fin * r["pred"])
                if excess > worst:
                    worst, worst_row = excess, r
            bound = "1/n" if task == "synthetic" else "1/√n"
            metrics.append(
                Metric(
                    f"{task}_max_error_over_tolerance",
                    float(worst),
                    1.0,
                    "<=",
                    description=f"max over n and ridges of |measured − predicted| / (3 SE + "
                    f"{bound}·predicted); worst at n={worst_row['n']}, "
                    f"ridge={worst_row['ridge']:g}",
                )
            )
            for ridge in cfg.ridges:
                rr = [r for r in rows if r["ridge"] == ridge]
                if rr:
                    rel = [abs(r["mean"] / r["pred"] - 1) for r in rr]
                    k = int(np.argmax(rel))
                    metrics.append(
                        Metric(
                            f"{task}_max_rel_error@ridge{ridge:g}",
                            float(rel[k]),
                            None,
                            stderr=float(rr[k]["se"] / rr[k]["pred"]),
                            description="max over n of |measured/predicted − 1| (at n="
                            f"{rr[k]['n']}); per-n values in the report table",
                        )
                    )
        nets = [t for t in trials if t.status == "ok" and t.point.get("task") == "digits-net"]
        for n in cfg.net_n:
            widths, per_m, per_se = [], [], []
            for w in cfg.net_widths:
                mine = [t for t in nets if t.point["n"] == n and t.point.get("width") == w]
                if len(mine) < 2:
                    continue
                D = np.stack([t.curve("net_minus_kernel").values for t in mine])  # (S, P)
                scale = float(np.mean([t.curve("kernel_rms").values[0] for t in mine]))

                def bias_rms(d: np.ndarray, scale: float = scale) -> float:
                    # ‖mean_s d‖² over-estimates ‖E d‖² by tr Cov/S: subtract it (unbiased)
                    m2 = np.mean(d.mean(0) ** 2)
                    noise = np.mean(d.var(0, ddof=1)) / d.shape[0]
                    return float(np.sqrt(max(m2 - noise, 0.0)) / scale)

                dev, dse = jackknife(D, bias_rms)
                metrics.append(
                    Metric(
                        f"net_vs_kernel_mean_rel_error@n{n},w{w}",
                        float(dev),
                        None,
                        stderr=float(dse),
                        description="RMS over images of E_draws,init[f_net − f_kernel] (same "
                        "draw, same training time; seed noise subtracted) / RMS f_kernel",
                    )
                )
                pm, ps = mean_se(np.array([t.curve("net_vs_kernel_rms").values[0] for t in mine]))
                widths.append(w)
                per_m.append(float(pm))
                per_se.append(float(ps))
                metrics.append(
                    Metric(
                        f"net_vs_kernel_per_network_rel_rms@n{n},w{w}",
                        float(pm),
                        None,
                        stderr=float(ps),
                        description="RMS of f_net − f_kernel per network / RMS f_kernel",
                    )
                )
            if len(widths) >= 2:
                fit = fit_power_law(np.array(widths, float), per_m, per_se)
                metrics.append(
                    Metric(
                        f"net_vs_kernel_width_exponent_upper_2se@n{n}",
                        fit.exponent + 2 * fit.exponent_se,
                        0.0,
                        "<",
                        description="the trained network approaches its kernel's prediction as "
                        f"width grows: slope {fit.exponent:.3f} ± {fit.exponent_se:.3f} of the "
                        "per-network deviation vs width, + 2 SE < 0 (a network's own kernel "
                        "fluctuation alone would give −1/2; long training along small-eigenvalue "
                        "directions adds slower terms)",
                    )
                )
        metrics.append(failures_metric(trials))
        return metrics

    def figures(
        self,
        cfg: LearningCurvesConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report.plots import _plt, save_png

        tab = self._table(cfg, trials)
        if not tab:
            return []
        plt = _plt()
        fig, axes = plt.subplots(1, len(tab), figsize=(5.2 * len(tab), 4.0), squeeze=False)
        cmap = plt.get_cmap("viridis")
        for ax, (task, rows) in zip(axes[0], tab.items(), strict=True):
            scale = 10.0 if task == "digits" else 1.0
            ns_fine = np.geomspace(min(_ns(cfg, task)), max(_ns(cfg, task)), 200)
            for i, ridge in enumerate(cfg.ridges):
                c = cmap(0.1 + 0.8 * i / max(len(cfg.ridges) - 1, 1))
                if task == "synthetic":
                    lam, v = _synthetic(cfg)
                    fine = eigenlearning.predict(lam, v, ns_fine, ridge * ns_fine, cfg.noise_var)
                else:
                    d = _digits(cfg.kernel_depth, cfg.w_std, cfg.b_std)
                    fine = eigenlearning.predict(d["lam"], d["v"], ns_fine, ridge * ns_fine)
                ax.plot(ns_fine, fine.test_mse / scale, color=c, lw=1.2)
                rr = [r for r in rows if r["ridge"] == ridge]
                ax.errorbar(
                    [r["n"] for r in rr],
                    [r["mean"] for r in rr],
                    [2 * r["se"] for r in rr],
                    fmt="o",
                    ms=4,
                    color=c,
                    capsize=2,
                    label=f"ridge λ={ridge:g}",
                )
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="training samples n",
                ylabel="test MSE" + (" per output" if task == "digits" else ""),
                title=f"{task}: lines eigenlearning, dots KRR ±2 SE",
            )
            ax.legend(fontsize=8)
        path = save_png(fig, outdir / "learning_curves.png")
        return [
            Figure(
                path,
                "Kernel ridge regression test MSE against n: measured over draws of "
                "the training set (dots, ±2 SE) and predicted from the spectrum "
                "alone (lines).",
            )
        ]
