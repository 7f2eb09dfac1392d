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
  evaluated on the held-out largest ones (leave-largest-out), the number to check before
  trusting an extrapolation (reported: no a-priori bound exists for how well a
  misspecified law extrapolates).

Claims (95% bounds, df = seeds − 1):

* each sweep's log–log slope through the seed means (SE: delete-one-seed jackknife)
  equals the same unweighted fit through the prediction within the slope bias a 1/x relative
  error of the deterministic equivalent can cause over the sweep, 2/(x_min·ln(x_max/
  x_min)) (Cheng & Montanari 2022) (``within``; the slope's SE enters the bound, not the
  tolerance);
* each sweep's curve level equals the prediction at every size within max(1/x, 5%)
  relative (the learning-curves tolerance; ``within`` at the worst size, every size must
  pass).

Negative control ``finite-features``: the data sweep trains on P = 32 random features
instead of the kernel limit, so the error saturates once n > P while the prediction
keeps falling: the data-sweep claims must fail. The main run fails them too (findings of
power and level, below), so the quick test checks what sets the control apart: its slope's
point estimate (−0.85) is outside the tolerance where the main run's (−2.587 against
−2.570) is inside it, and the two misses differ beyond both 95% margins.

Arm ``gpt`` (``arms=["rf", "gpt"]``, on at full scale): the small GPT
(:class:`~learnmech.nets.GPT`, depth 2) trained by Adam at a constant rate on a Zipfian
Markov chain (:class:`~learnmech.data.language.ZipfMarkov`, order 1, 64 tokens, fresh
sequences every step), at several widths; the held-out test loss is recorded at log-spaced
token counts D along each run (constant-rate checkpoints, as Kaplan et al. 2020 do). The
chain's entropy rate H — the Bayes-optimal loss — is known in closed form, so:

* predict — every run's test loss stays above H (scored: L − H has a positive 95%
  lower bound at every run and checkpoint, the test-loss SE over held-out sequences);
  the irreducible term E of a fitted law L = E + A/N^α + B/D^β should be H.
* the Chinchilla law is fitted to every run (per seed: E − H with its SE over seeds)
  and, leave-largest-width-out, to the smaller widths and evaluated on the widest:
  relative error of L and of the excess L − H (reported). N counts every parameter.

Findings (the fitted E below H at full scale; why order 1): docs/tutorial-scaling.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from pydantic import Field, model_validator

from learnmech.claims import Claims, Estimate, reported
from learnmech.data.language import ZipfMarkov, table_size_error
from learnmech.laws import extrapolation_score, fit_law
from learnmech.measure import regression as rr
from learnmech.nets import GPT
from learnmech.records import Curve, Figure, Metric, TrialResult
from learnmech.report.plots import colors, errorbars, law_curves, legend, save_png, subplots
from learnmech.stats import jackknife
from learnmech.studies.base import Analysis, Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.theory import eigenlearning
from learnmech.theory.exponents import (
    asymptotic_exponent,
    asymptotic_model_exponent,
    projection_error,
)
from learnmech.theory.spectra import power_law_spectrum
from learnmech.train.language import heldout_loss, train_lm

__all__ = ["ScalingLaws", "ScalingLawsConfig"]

ARMS = ("rf", "gpt")
PRACTICAL_MARGIN = 0.05  # relative: the learning-curves tolerance floor


class ScalingLawsConfig(StudyConfig):
    modes: int = Field(3000, ge=16, le=200_000, description="data dimension M")
    a: float = Field(1.5, gt=1, le=10, description="λ_k = k^−a")
    b: float = Field(3.5, gt=1, le=20, description="v_k² ∝ k^−b")
    noise_var: float = Field(0.0, ge=0, le=10)
    n_sweep: list[int] = Sweep([16, 32, 64, 128, 256, 512, 1024], key="n", n=3, ge=2)
    p_sweep: list[int] = Sweep([16, 32, 64, 128, 256, 512, 1024], key="p", n=3, ge=2)
    grid_p: list[int] = Sweep([16, 32, 64, 128, 256], key="p", n=3, ge=2)
    grid_n: list[int] = Sweep([32, 64, 128, 256, 512, 1024], key="n", n=3, ge=2)
    ridge: float = Field(1e-3, gt=0, le=10, description="normalised ridge of the grid runs")
    data_sweep_p: int = Field(
        0, ge=0, le=100_000, description="features of the data sweep (0: kernel limit; control)"
    )
    holdout: int = Analysis(1, ge=1, le=4, description="largest P values held out of the fit")
    arms: list[str] = Sweep(["rf"], key="arm", order=None, choices=ARMS)
    gpt_widths: list[int] = Sweep([8, 16, 32, 64], key="width", n=3, ge=1)
    gpt_steps: list[int] = Values(
        [128, 256, 512, 1024, 2048],
        n=3,
        ge=1,
        description="steps at which the test loss is recorded (D = step·batch·context)",
    )
    gpt_vocab: int = Field(64, ge=2, le=1024)
    gpt_order: int = Field(1, ge=1, le=3)
    gpt_zipf: float = Field(1.0, ge=0, le=10)
    gpt_context: int = Field(16, ge=4, le=1024)
    gpt_batch: int = Field(32, ge=1, le=4096)
    gpt_lr: float = Field(3e-3, gt=0, le=1)
    gpt_depth: int = Field(2, ge=1, le=64)
    gpt_heads: int = Field(2, ge=1, le=64)
    gpt_test_sequences: int = Field(1024, ge=16, le=1_000_000)
    gpt_holdout: int = Analysis(1, ge=1, le=4, description="widest widths held out of the fit")
    gpt_seeds: int = Analysis(2, ge=1, le=1000, description="seeds of the gpt arm (≤ seeds)")
    gpt_data_seed: int = Field(0, ge=0, description="seed of the chain and its test set")

    @model_validator(mode="after")
    def _gpt_shapes(self) -> ScalingLawsConfig:
        if "gpt" in self.arms:
            bad = [w for w in self.gpt_widths if w % self.gpt_heads]
            if bad:
                raise ValueError(f"gpt_widths {bad} are not divisible by gpt_heads")
            if self.gpt_holdout >= len(self.gpt_widths) - 1:
                raise ValueError("gpt_holdout must leave at least two widths to fit on")
            err = table_size_error(self.gpt_vocab, self.gpt_order)
            if err:
                raise ValueError(f"gpt_vocab and gpt_order: {err}")
        return self


def _spectrum(cfg: ScalingLawsConfig) -> tuple[np.ndarray, np.ndarray]:
    s = power_law_spectrum(cfg.modes, cfg.a, cfg.b)
    return s.eigenvalues, s.target_coeffs


def _rng(kind: str, x: int, y: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, {"n": 1, "p": 2, "grid": 3}[kind], x, y])


def _language(cfg: ScalingLawsConfig) -> ZipfMarkov:
    return ZipfMarkov(cfg.gpt_vocab, cfg.gpt_order, cfg.gpt_zipf, seed=cfg.gpt_data_seed)


def _train_gpt(cfg: ScalingLawsConfig, width: int, seed: int, device: str) -> list[Curve]:
    """One constant-rate Adam run of the GPT on fresh sequences every step (seeded by
    (run seed, step), disjoint from the test set's stream); the held-out loss and its SE
    at each of ``gpt_steps``."""
    lang = _language(cfg)
    test = lang.sample(cfg.gpt_test_sequences, cfg.gpt_context + 1, seed=cfg.gpt_data_seed + 1)
    test = test.to(device)
    model = GPT(cfg.gpt_vocab, width, cfg.gpt_depth, cfg.gpt_heads, cfg.gpt_context, seed=seed)
    model.to(device)

    def batch(step: int) -> torch.Tensor:
        stream = np.random.SeedSequence([cfg.gpt_data_seed, 7, seed, step]).generate_state(1)
        return lang.sample(cfg.gpt_batch, cfg.gpt_context + 1, seed=int(stream[0])).to(device)

    run = train_lm(
        model,
        torch.optim.Adam(model.parameters(), lr=cfg.gpt_lr),
        batch,
        cfg.gpt_steps[-1],
        evaluate=lambda m: heldout_loss(m, test, cfg.gpt_order),
        at=cfg.gpt_steps,
    )
    if run.diverged:
        raise FloatingPointError(f"the width-{width} GPT's training loss became non-finite")
    tokens = np.array(cfg.gpt_steps, float) * cfg.gpt_batch * cfg.gpt_context
    n_params = float(sum(p.numel() for p in model.parameters()))
    return [
        Curve("test_loss", "tokens", tokens, run.column(0)),
        Curve("test_loss_se", "tokens", tokens, run.column(1)),
        Curve("params", "run", np.array([0.0]), np.array([n_params])),
    ]


def _seed_means(
    N: np.ndarray, D: np.ndarray, L: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loss averaged over seeds at each (N, D), sorted by N then D."""
    keys = sorted({(n, d) for n, d in zip(N, D, strict=True)})
    Lm = np.array([L[(N == n) & (D == d)].mean() for n, d in keys])
    return np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), Lm


class ScalingLaws(Study):
    name = "scaling-laws"
    title = "Scaling laws: a-priori exponents, extrapolation, and a fit against a known floor"
    summary = "data and model-size exponents from the spectrum; leave-largest-out extrapolation"
    pillar = "empirical laws"
    Config = ScalingLawsConfig
    controls = (
        Control(
            "finite-features",
            {"data_sweep_p": 32},
            ("data_exponent", "data_curve"),
            "the data sweep trains 32 random features, not the kernel limit: the error "
            "saturates once n > P",
        ),
    )
    #: the finite-features control (data_sweep_p) re-measures the data sweep alone
    hashed_for: ClassVar[dict[str, dict[str, Any]]] = {
        "data_sweep_p": {"kind": "n"},
        "ridge": {"kind": "grid"},
    }
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 16},
        "full": {
            "seeds": 20,
            "modes": 8000,
            "n_sweep": [16, 32, 64, 128, 256, 512, 1024, 2048],
            "p_sweep": [16, 32, 64, 128, 256, 512, 1024, 2048],
            "grid_p": [16, 32, 64, 128, 256, 512],
            "grid_n": [32, 64, 128, 256, 512, 1024, 2048],
            "arms": ["rf", "gpt"],
            "gpt_widths": [8, 16, 32, 64, 128],
            "gpt_steps": [128, 256, 512, 1024, 2048, 4096],
            "gpt_seeds": 3,
        },
    }

    def grid(self, cfg: ScalingLawsConfig) -> list[dict[str, Any]]:
        pts: list[dict[str, Any]] = []
        if "rf" in cfg.arms:
            pts += [{"kind": "n", "n": n, "p": 0} for n in cfg.n_sweep]
            pts += [{"kind": "p", "n": 0, "p": p} for p in cfg.p_sweep]
            pts += [{"kind": "grid", "n": n, "p": p} for p in cfg.grid_p for n in cfg.grid_n]
        if "gpt" in cfg.arms:
            pts += [{"kind": "gpt", "width": w} for w in cfg.gpt_widths]
        return pts

    def trial_config(self, cfg: StudyConfig, point: dict[str, Any]) -> dict[str, Any]:
        # each arm's trials hash only the fields that arm reads, so changing one arm's
        # settings re-uses the other's measurements
        full = super().trial_config(cfg, point)
        gpt = point.get("kind") == "gpt"
        return {k: v for k, v in full.items() if k in point or k.startswith("gpt_") == gpt}

    def seeds_for(self, cfg: StudyConfig, point: dict[str, Any]) -> list[int]:
        seeds = self.seed_list(cfg)
        if point.get("kind") == "gpt":
            return seeds[: cast(ScalingLawsConfig, cfg).gpt_seeds]
        return seeds

    def predict(self, cfg: ScalingLawsConfig) -> list[Curve]:
        out: list[Curve] = []
        if "rf" in cfg.arms:
            lam, v = _spectrum(cfg)
            ns = np.array(cfg.n_sweep, float)
            ps = np.array(cfg.p_sweep, float)
            e_n = eigenlearning.predict(lam, v, ns, 0.0, cfg.noise_var).test_mse
            e_p = projection_error(lam, v, ps) + cfg.noise_var
            out += [
                Curve("test_error", "n", ns, e_n, "data"),
                Curve("test_error", "P", ps, e_p, "model"),
            ]
        if "gpt" in cfg.arms:
            widths = np.array(cfg.gpt_widths, float)
            out.append(
                Curve(
                    "gpt_optimal_loss",
                    "width",
                    widths,
                    np.full(widths.size, _language(cfg).entropy_rate),
                )
            )
        return out

    def measure(
        self, cfg: ScalingLawsConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        if point["kind"] == "gpt":
            return {s: _train_gpt(cfg, int(point["width"]), s, device) for s in seeds}
        lam, v = _spectrum(cfg)
        kind, n, P = point["kind"], int(point["n"]), int(point["p"])
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            rng = _rng(kind, n, P, seed)
            if kind == "p":  # unlimited data: best fit on P random features
                err = rr.feature_error(rr.random_features(P, lam, rng), v, cfg.noise_var)
            elif kind == "n":  # kernel limit, or P random features for the control
                Z, y = rr.gaussian_task(v, n, cfg.noise_var, rng)
                if cfg.data_sweep_p:
                    G = rr.random_features(cfg.data_sweep_p, lam, rng)
                    err = rr.feature_error(G, v, cfg.noise_var, Z, y)
                else:
                    err = rr.kernel_ridge_error(lam, v, Z, y, [0.0], cfg.noise_var)[0]
            else:  # P features, n samples, ridge; the same features for every n at (P, seed)
                G = rr.random_features(P, lam, _rng("p", 0, P, seed), normalize=True)
                Z, y = rr.gaussian_task(v, n, cfg.noise_var, rng)
                err = rr.feature_error(G, v, cfg.noise_var, Z, y, ridge=cfg.ridge)
            out[seed] = [Curve("test_error", "run", [0], [err])]
        return out

    def analyze(self, cfg: ScalingLawsConfig, theory: list[Curve], trials: Trials) -> dict:
        """The two sweeps (per size, per-seed errors), the grid runs and the GPT table."""
        out: dict[str, Any] = {"theory": {c.series: c for c in theory if c.series}}
        for kind, key in (("n", "n"), ("p", "p")):
            by = trials.where(kind=kind).by(key)
            out[kind] = {int(x): ts.last("test_error") for x, ts in by.items()}
        grid = list(trials.where(kind="grid"))
        out["grid"] = (
            np.array([t.point["p"] for t in grid], float),
            np.array([t.point["n"] for t in grid], float),
            np.array([t.curve("test_error").values[0] for t in grid]),
        )
        out["gpt"] = list(trials.where(kind="gpt"))
        return out

    def claims(self, cfg: ScalingLawsConfig, s: dict) -> list[Metric]:
        out = Claims()
        for kind, series, asym, label in (
            ("n", "data", asymptotic_exponent(cfg.a, cfg.b), "data n (kernel limit)"),
            ("p", "model", asymptotic_model_exponent(cfg.a, cfg.b), "model size P (∞ data)"),
        ):
            tab = {x: v for x, v in s.get(kind, {}).items() if v.size >= 2}
            if len(tab) < 3 or series not in s["theory"]:
                continue
            x = np.array(sorted(tab), float)
            est = [Estimate.of(tab[int(k)]) for k in x]
            m, se = np.array([e.value for e in est]), np.array([e.se for e in est])
            df = min(v.size for v in tab.values()) - 1
            th = s["theory"][series]
            th_full = np.interp(x, th.coords, th.values)
            th_vals = th_full - cfg.noise_var
            # the same estimator for both: an unweighted log–log slope through the seed
            # means (through the prediction), so both average the local exponent over the
            # sweep alike and the expected value does not depend on the data; the
            # measurement's SE is the delete-one-seed jackknife
            V = np.stack([tab[int(k)][: df + 1] for k in x], axis=1) - cfg.noise_var
            lx = np.log(x)

            def ols_slope(v: np.ndarray, lx: np.ndarray = lx) -> float:
                with np.errstate(invalid="ignore", divide="ignore"):
                    return float(np.polyfit(lx, np.log(v.mean(0)), 1)[0])

            fit_exp = Estimate(*jackknife(V, ols_slope), df)
            th_exp = float(np.polyfit(lx, np.log(th_vals), 1)[0])
            out.within(
                f"{series}_exponent",
                fit_exp,
                th_exp,
                2 / (x.min() * math.log(x.max() / x.min())),
                kind="slope",
                description=f"{label}: log–log slope through the seed means vs the same "
                f"fit to the prediction (asymptotic −{asym:g}); tolerance 2/(x_min ln range)",
            )
            tol = np.maximum(1 / x, PRACTICAL_MARGIN) * th_full
            cells = [
                (f"{kind}={x[k]:g}", Estimate(m[k], se[k], df), th_full[k], tol[k])
                for k in range(x.size)
            ]
            out.within_every(
                f"{series}_curve",
                cells,
                description=f"{label}: test error vs the prediction at every size; "
                "tolerance max(1/x, 5%) relative",
            )
        P, n, E = s["grid"]
        if E.size:
            out += self._grid_claims(cfg, P, n, E)
        if "gpt" in cfg.arms:
            out += self._compare_gpt(cfg, s["gpt"])
        return out

    def _grid_claims(
        self, cfg: ScalingLawsConfig, P: np.ndarray, n: np.ndarray, E: np.ndarray
    ) -> list[Metric]:
        sc = extrapolation_score("chinchilla", E, N=P, D=n, holdout=cfg.holdout, warn=False)
        f = sc["fit"].params
        out = Claims()
        out.reported(
            "grid_extrapolation_mean_abs_rel_error",
            sc["mean_abs_rel_error"],
            description=f"Chinchilla law fitted on P < {sc['threshold']:g} "
            f"({sc['train_points']} runs), evaluated on the {sc['test_points']} held-out "
            f"runs with the largest P (max {sc['max_abs_rel_error']:.3f})",
        )
        for name, asym in (
            ("alpha", asymptotic_model_exponent(cfg.a, cfg.b)),
            ("beta", asymptotic_exponent(cfg.a, cfg.b)),
        ):
            out.reported(
                f"grid_fitted_{name}",
                f[name],
                description=f"Chinchilla-law exponent fitted on the grid (asymptotic "
                f"a-priori {asym:g}; finite grids bias it)",
            )
        return out

    @staticmethod
    def _gpt_table(
        trials: list[TrialResult],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows over (run, checkpoint): N, D, L, SE(L), seed."""
        rows = []
        for t in trials:
            L, se, n = t.curve("test_loss"), t.curve("test_loss_se"), t.curve("params")
            if L is None or se is None or n is None:
                continue
            for d, v, e in zip(L.coords, L.values, se.values, strict=True):
                rows.append((n.values[0], d, v, e, t.seed))
        a = np.array(rows, float).reshape(-1, 5)
        return a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4]

    def _compare_gpt(self, cfg: ScalingLawsConfig, trials: list[TrialResult]) -> list[Metric]:
        N, D, L, SE, seed = self._gpt_table(trials)
        if N.size == 0:
            return []
        H = _language(cfg).entropy_rate
        # every run and checkpoint must clear H: the smallest lower bound decides
        k = int(np.argmin((L - H) / SE))
        out = Claims()
        out.above(
            "gpt_excess_over_bayes",
            Estimate(L[k] - H, SE[k]),
            0.0,
            strict=True,
            description=f"L − H at the run and checkpoint with the smallest (L − H)/SE "
            f"(every one must pass): no test loss may fall below the chain's entropy "
            f"rate H = {H:.4f} nats (closed form); SE over held-out sequences",
        )
        # E − H per seed (each seed's runs form a complete grid), mean ± SE over seeds
        gaps, alphas, betas = [], [], []
        for s in np.unique(seed):
            k = seed == s
            if np.unique(N[k]).size >= 3:
                f = fit_law("chinchilla", L[k], N=N[k], D=D[k], warn=False).params
                gaps.append(f["E"] - H)
                alphas.append(f["alpha"])
                betas.append(f["beta"])
        if gaps:
            out.reported(
                "gpt_fitted_E_minus_bayes",
                Estimate.of(gaps),
                description="irreducible term E of the Chinchilla law fitted to every run "
                f"of one seed, minus the Bayes-optimal loss H = {H:.4f}; mean over "
                f"{len(gaps)} seeds (a well-identified fit gives 0; below 0 means the "
                "fit's E is not a loss any model can reach)",
            )
            for name, vals in (("alpha", alphas), ("beta", betas)):
                out.reported(
                    f"gpt_fitted_{name}",
                    Estimate.of(vals),
                    description=f"Chinchilla-law exponent ({'N' if name == 'alpha' else 'D'})"
                    " fitted per seed, mean over seeds",
                )
        # leave-widest-out on the seed-mean losses
        Nm, Dm, Lm = _seed_means(N, D, L)
        if np.unique(Nm).size >= cfg.gpt_holdout + 2:
            sc = extrapolation_score(
                "chinchilla", Lm, N=Nm, D=Dm, holdout=cfg.gpt_holdout, warn=False
            )
            obs, pred = sc["observed"], sc["predicted"]
            excess = np.abs(pred - obs) / np.maximum(obs - H, 1e-12)
            out += [
                reported(
                    "gpt_extrapolation_mean_abs_rel_error",
                    sc["mean_abs_rel_error"],
                    description=f"Chinchilla law fitted on N < {sc['threshold']:.0f} "
                    f"parameters ({sc['train_points']} seed-mean points), scored on the "
                    f"{sc['test_points']} held-out points of the widest model(s): mean "
                    f"|L̂/L − 1| (max {sc['max_abs_rel_error']:.3f})",
                ),
                reported(
                    "gpt_extrapolation_excess_rel_error",
                    float(excess.mean()),
                    description="the same held-out predictions scored on the learnable part: "
                    "mean |L̂ − L|/(L − H), H the Bayes-optimal loss (max "
                    f"{excess.max():.2f})",
                ),
            ]
        return out

    def figures(self, cfg: ScalingLawsConfig, s: dict, outdir: Path) -> list[Figure]:
        figs: list[Figure] = []
        if "gpt" in cfg.arms:
            figs += self._gpt_figure(cfg, s["gpt"], outdir)
        if "rf" not in cfg.arms:
            return figs
        fig, axes = subplots(1, 3, figsize=(14, 4))
        for ax, kind, series, xl in (
            (axes[0], "n", "data", "samples n (kernel limit P → ∞)"),
            (axes[1], "p", "model", "features P (unlimited data)"),
        ):
            tab = {x: v for x, v in s.get(kind, {}).items() if v.size >= 2}
            if not tab:
                continue
            x = np.array(sorted(tab), float)
            errorbars(ax, x, [tab[int(k)] for k in x], fmt="o", capsize=2, label="trained (±2 SE)")
            th = s["theory"][series]
            ax.plot(th.coords, th.values, "k-", lw=1.2, label="a-priori prediction")
            ax.set(xscale="log", yscale="log", xlabel=xl, ylabel="test error")
            legend(ax, fontsize=8)
        ax = axes[2]
        P, n, E = s["grid"]
        cs = colors(len(cfg.grid_p))
        for i, p in enumerate(cfg.grid_p):
            xs_ = sorted(set(n[P == p]))
            if not xs_:
                continue
            ms_ = [E[(P == p) & (n == x)].mean() for x in xs_]
            held = p in cfg.grid_p[-cfg.holdout :]
            label = f"P = {p}" + (" (held out)" if held else "")
            ax.plot(xs_, ms_, "x--" if held else "o-", color=cs[i], label=label)
        ax.set(xscale="log", yscale="log", xlabel="samples n", ylabel="test error")
        ax.set_title(f"grid (ridge λ = {cfg.ridge:g})")
        legend(ax)
        caption = (
            "Test error of trained random-feature models against data and model size, with "
            "the a-priori predictions from the spectrum; right: the (P, n) grid used for the "
            "leave-largest-out extrapolation score."
        )
        return [Figure(save_png(fig, outdir / "scaling_laws.png"), caption), *figs]

    def _gpt_figure(
        self, cfg: ScalingLawsConfig, trials: list[TrialResult], outdir: Path
    ) -> list[Figure]:
        N, D, L, _, _ = self._gpt_table(trials)
        widths = np.unique(N)
        if widths.size < cfg.gpt_holdout + 2:
            return []
        H = _language(cfg).entropy_rate
        Nm, Dm, Lm = _seed_means(N, D, L)
        fit = Nm < widths[-cfg.gpt_holdout]
        f = fit_law("chinchilla", Lm[fit], N=Nm[fit], D=Dm[fit], warn=False)
        fig, ax = subplots(figsize=(6.5, 4.5))
        floors = {"Bayes-optimal loss H": H, "fitted E": f.params["E"]}
        law_curves(ax, f, Nm, Dm, Lm, held_from=widths[-cfg.gpt_holdout], floors=floors)
        ax.set(ylabel="test loss (nats per token)")
        ax.set_title("GPT on a Zipfian Markov chain: Chinchilla law fitted on the smaller widths")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        return [
            Figure(
                save_png(fig, outdir / "scaling_laws_gpt.png"),
                "Test loss of the small GPT against training tokens, one colour per model size "
                "(seed means); lines: the Chinchilla law fitted on the smaller models, dashed "
                "where it extrapolates to the held-out widest model; dotted: the chain's "
                "Bayes-optimal loss H and the fit's irreducible term E.",
            )
        ]
