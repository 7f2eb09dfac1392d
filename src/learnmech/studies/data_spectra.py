"""Study ``data-spectra``: power-law spectra of the bundled datasets, and what they predict.

Natural data has power-law covariance and kernel spectra (REFERENCES §1, §5); their
exponents are the inputs of the a-priori learning-curve and scaling exponents of #3 and #5
(:mod:`learnmech.theory.exponents`). This study measures them on data that ships with
scikit-learn, with bootstrap errors, after checking the estimator on planted data.

* ``planted`` — Gaussian data with covariance eigenvalues k^−a (a = 1.5, d = 64): the
  fitted exponent must equal the exponent of the expected sample eigenvalues to first
  order (Anderson 1963: E λ̂_k = λ_k(1 + n⁻¹Σ_{j≠k} λ_j/(λ_k − λ_j))) within 1% of a,
  the two significant digits at which data exponents are quoted (``within``, 95% bound).
* ``digits`` — pixel covariance of the 1,797 handwritten digits (standardised pixels).
* ``patches`` — 8×8 grey patches of scikit-learn's two photographs. Natural images have
  power spectra ∝ 1/f^{2−η} (Field 1987; Ruderman 1994, η ≈ 0.2), which in two dimensions
  makes patch-PCA eigenvalues fall as k^−(2−η)/2 ≈ k^−0.9 (reported, not scored: 8×8 patches
  are too small for an asymptotic exponent).
* ``digits-ntk`` — the depth-2 ReLU NTK Gram on digits images: kernel eigenvalue exponent
  α, target (one-hot class) power exponent β in the kernel eigenbasis, the a-priori
  learning-curve exponent min(β − 1, 2α) of a power-law idealisation, eigenlearning's local
  exponent on the measured spectrum, and the exponent of a measured kernel-regression
  learning curve. Reported: how far the power-law idealisation is from the data is the
  finding; the exact-spectrum prediction is scored in the ``learning-curves`` study.

Each seed is a bootstrap replicate of the dataset (a fresh draw for ``planted``).

Negative control ``few-samples``: 100 planted samples in 64 dimensions. Anderson's
expansion is in powers of 1/n and needs n ≫ d; here the sample spectrum is far from
its first-order expectation and the planted claim must fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from learnmech.claims import Claims, Estimate
from learnmech.data.real import digits, image_patches
from learnmech.measure.spectra import (
    effective_rank,
    eigenspectrum,
    participation_ratio,
    powerlaw_exponent,
)
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import save_png, subplots
from learnmech.stats import fit_power_law, mean_se
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.theory.exponents import asymptotic_exponent, local_exponent
from learnmech.theory.spectra import gram_matrix, spectrum_from_gram

__all__ = ["DataSpectra", "DataSpectraConfig"]

DATASETS = ("planted", "digits", "patches", "digits-ntk")
PLANTED_REL_TOL = 0.01  # two significant digits of the exponent


class DataSpectraConfig(StudyConfig):
    datasets: list[Literal["planted", "digits", "patches", "digits-ntk"]] = Sweep(
        list(DATASETS), key="dataset"
    )
    planted_exponent: float = Field(1.5, gt=0.2, le=5)
    planted_dim: int = Field(64, ge=10, le=2048)
    planted_samples: int = Field(10_000, ge=20, le=1_000_000)
    fit_range: tuple[int, int] = Field((2, 30), description="ranks for the covariance fits")
    patches: int = Field(5000, ge=100, le=200_000)
    kernel_samples: int = Field(1000, ge=100, le=1797)
    kernel_fit_range: tuple[int, int] = Field((5, 200))
    curve_ns: list[int] = Values([16, 32, 64, 128, 250], n=2, ge=2)

    @model_validator(mode="after")
    def _fits(self) -> DataSpectraConfig:
        if max(self.curve_ns) > self.kernel_samples // 4:
            raise ValueError(f"curve_ns must stay <= kernel_samples/4 = {self.kernel_samples // 4}")
        if self.kernel_fit_range[1] > self.kernel_samples:
            raise ValueError("kernel_fit_range must end at or below kernel_samples")
        if self.fit_range[1] > min(64, self.planted_dim):
            raise ValueError("fit_range must end at or below 64 and planted_dim")
        return self

    @field_validator("fit_range", "kernel_fit_range")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (1 <= v[0] and v[1] - v[0] >= 2):
            raise ValueError("a fit range needs 1 <= k_min and k_max >= k_min + 2")
        return v


def _anderson_bias(lam: np.ndarray, n: int, fit_range: tuple[int, int]) -> float:
    diff = lam[:, None] - lam[None, :]
    np.fill_diagonal(diff, np.inf)
    pred = lam * (1 + (lam[None, :] / diff).sum(1) / n)
    return powerlaw_exponent(pred, fit_range).exponent


class DataSpectra(Study):
    name = "data-spectra"
    title = "Power-law spectra of bundled data: covariance, natural patches, NTK and target"
    summary = "spectral exponents with bootstrap errors; the estimator checked on planted data"
    pillar = "universality"
    Config = DataSpectraConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 4},
        "full": {
            "seeds": 16,
            "patches": 20_000,
            "kernel_samples": 1797,
            "curve_ns": [16, 32, 64, 128, 256, 449],
        },
    }
    controls = (
        Control(
            "few-samples",
            {"datasets": ["planted"], "planted_samples": 100},
            ("planted_exponent",),
            "n = 100 samples in d = 64: the first-order (1/n) sample-eigenvalue expansion "
            "needs n ≫ d",
        ),
    )

    def predict(self, cfg: DataSpectraConfig) -> list[Curve]:
        k = np.arange(1, cfg.planted_dim + 1, dtype=np.float64)
        return [Curve("planted_spectrum", "rank", k, k**-cfg.planted_exponent)]

    def measure(
        self, cfg: DataSpectraConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        ds = point["dataset"]
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            rng = np.random.default_rng(seed)
            if ds == "planted":
                lam = np.arange(1, cfg.planted_dim + 1, dtype=np.float64) ** -cfg.planted_exponent
                X = rng.standard_normal((cfg.planted_samples, cfg.planted_dim)) * np.sqrt(lam)
            elif ds == "digits":
                x, _ = digits("standard")
                X = x[rng.integers(0, len(x), len(x))]
            elif ds == "patches":
                X = image_patches(8, cfg.patches, seed=seed)
            else:
                out[seed] = self._ntk(cfg, rng)
                continue
            ev = eigenspectrum(X)
            fit = powerlaw_exponent(ev, cfg.fit_range)
            k = np.arange(1, ev.size + 1)
            out[seed] = [
                Curve("spectrum", "rank", k, np.maximum(ev, 1e-300)),
                Curve("exponent", "rank", [cfg.fit_range[1]], [fit.exponent]),
                Curve("fit_r2", "rank", [cfg.fit_range[1]], [fit.r2]),
                Curve("effective_rank", "rank", [ev.size], [effective_rank(ev)]),
                Curve("participation_ratio", "rank", [ev.size], [participation_ratio(ev)]),
            ]
        return out

    def _ntk(self, cfg: DataSpectraConfig, rng: np.random.Generator) -> list[Curve]:
        x, lab = digits("unit")
        idx = rng.choice(len(x), cfg.kernel_samples, replace=False)
        xs, y = x[idx], np.eye(10)[lab[idx]] - 0.1
        K = gram_matrix(xs, "ntk", depth=2, w_std=math.sqrt(2), b_std=0.1)
        spec = spectrum_from_gram(K, y)
        lam, v2 = spec.eigenvalues, spec.target_coeffs**2
        if v2.ndim > 1:
            v2 = v2.sum(1)
        a = powerlaw_exponent(lam, cfg.kernel_fit_range)
        # target power: cumulative tail Σ_{j≥k} v_j² ∝ k^{1−β} is far less noisy than v_k²
        lo, hi = cfg.kernel_fit_range
        tail = np.cumsum(v2[::-1])[::-1]
        t = powerlaw_exponent(tail, (lo, hi))
        beta = t.exponent + 1
        ns = np.array(cfg.curve_ns, dtype=np.float64)
        # measured ridgeless KRR learning curve on the pool as the population (train on n
        # of its images, test on all of them), the setting eigenlearning describes; n stays
        # ≤ N/4 as in the learning-curves study
        errs = []
        for n in cfg.curve_ns:
            sub = rng.choice(cfg.kernel_samples, n, replace=False)
            coef = np.linalg.solve(
                K[np.ix_(sub, sub)] + 1e-10 * np.trace(K) / n * np.eye(n), y[sub]
            )
            pred = K[:, sub] @ coef
            errs.append(float(((pred - y) ** 2).sum(1).mean()))
        meas = fit_power_law(ns, np.array(errs))
        loc = local_exponent(lam, spec.target_coeffs, ns)
        try:
            prior = asymptotic_exponent(a.exponent, beta)
        except Exception:
            prior = math.nan
        k = np.arange(1, lam.size + 1)
        return [
            Curve("spectrum", "rank", k, np.maximum(lam, 1e-300)),
            Curve("target_tail", "rank", k, np.maximum(tail, 1e-300)),
            Curve("exponent", "rank", [hi], [a.exponent]),
            Curve("target_beta", "rank", [hi], [beta]),
            Curve("apriori_curve_exponent", "n", [ns[-1]], [prior]),
            Curve("local_curve_exponent", "n", [ns[-1]], [float(np.mean(loc))]),
            Curve("measured_curve_exponent", "n", [ns[-1]], [-meas.exponent]),
            Curve("learning_curve", "n", ns, errs),
            Curve("effective_rank", "rank", [lam.size], [effective_rank(lam)]),
            Curve("participation_ratio", "rank", [lam.size], [participation_ratio(lam)]),
        ]

    def analyze(self, cfg: DataSpectraConfig, theory: list[Curve], trials: Trials) -> dict:
        """Per dataset: each scalar observable over bootstrap replicates, one spectrum and
        the learning curves."""
        out: dict[str, Any] = {}
        for ds, ts in trials.by("dataset").items():
            r: dict[str, Any] = {"spectrum": ts.stack("spectrum")}
            for obs in (
                "exponent",
                "effective_rank",
                "participation_ratio",
                "target_beta",
                "apriori_curve_exponent",
                "local_curve_exponent",
                "measured_curve_exponent",
            ):
                v = ts.has(obs).last(obs)
                if v.size:
                    r[obs] = v[np.isfinite(v)]
            r["learning_curve"] = ts.stack("learning_curve")
            out[ds] = r
        return out

    def claims(self, cfg: DataSpectraConfig, s: dict) -> list[Metric]:
        out = Claims()
        if "planted" in s:
            lam = np.arange(1, cfg.planted_dim + 1, dtype=np.float64) ** -cfg.planted_exponent
            expected = _anderson_bias(lam, cfg.planted_samples, cfg.fit_range)
            e = Estimate.of(s["planted"].get("exponent", []))
            out.within(
                "planted_exponent",
                e,
                expected,
                PLANTED_REL_TOL * cfg.planted_exponent,
                description=f"fitted exponent vs planted {cfg.planted_exponent:g} with "
                f"Anderson's first-order sample bias ({expected:.4f}); tolerance 1%",
            )
        labels = {
            "exponent": "eigenvalue exponent a (λ_k ∝ k^−a)",
            "effective_rank": "effective rank",
            "participation_ratio": "participation ratio",
            "target_beta": "target power exponent β (class one-hots in the NTK eigenbasis)",
            "apriori_curve_exponent": "a-priori learning-curve exponent min(β − 1, 2α) of "
            "the power-law idealisation",
            "local_curve_exponent": "eigenlearning's local exponent on the measured spectrum",
            "measured_curve_exponent": "measured ridgeless KRR learning-curve exponent",
        }
        for ds in ("digits", "patches", "digits-ntk"):
            for obs, label in labels.items():
                v = s.get(ds, {}).get(obs)
                if v is not None and v.size >= 2:
                    name = f"{ds.replace('-', '_')}_{obs}"
                    out.reported(name, Estimate.of(v), description=f"{ds}: {label}")
        return out

    def figures(self, cfg: DataSpectraConfig, s: dict, outdir: Path) -> list[Figure]:
        fig, (a1, a2) = subplots(1, 2, figsize=(10, 3.8))
        for ds, r in s.items():
            k, v = r["spectrum"]
            if v.size:
                a1.plot(k, v[0] / v[0, 0], label=ds)
        k = np.arange(1, cfg.planted_dim + 1)
        a1.plot(k, k**-cfg.planted_exponent, "k--", lw=1, label=f"k^−{cfg.planted_exponent:g}")
        a1.set(xscale="log", yscale="log", xlabel="rank k", ylabel="λ_k / λ_1", ylim=(1e-8, 2))
        a1.set_title("eigenvalue spectra (one bootstrap replicate)")
        if a1.get_legend_handles_labels()[0]:
            a1.legend(fontsize=7)
        ntk = s.get("digits-ntk")
        if ntk and ntk["learning_curve"][1].size:
            ns, vals = ntk["learning_curve"]
            m, se = mean_se(vals)
            a2.errorbar(ns, m, 2 * se, marker="o", capsize=3, label="measured (KRR, NTK)")
            for obs, ls in (("local_curve_exponent", ":"), ("apriori_curve_exponent", "--")):
                e = ntk.get(obs)
                if e is not None and e.size:
                    lab = f"slope {obs.split('_')[0]}: −{e.mean():.2f}"
                    a2.plot(ns, m[0] * (ns / ns[0]) ** -e.mean(), ls=ls, color="k", label=lab)
            a2.set(xscale="log", yscale="log", xlabel="training samples n", ylabel="test MSE")
            a2.set_title("digits: learning curve vs spectral exponents")
            a2.legend(fontsize=7)
        caption = (
            "Left: normalised eigenvalue spectra of the bundled data, with the planted power "
            "law. Right: digits kernel-regression learning curve (±2 SE over bootstrap "
            "replicates) with the slopes predicted by eigenlearning on the measured spectrum "
            "and by the power-law idealisation."
        )
        return [Figure(save_png(fig, outdir / "data-spectra.png"), caption)]
