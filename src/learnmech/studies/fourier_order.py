"""Study ``fourier-order``: from small init, Fourier features arrive in AGF's order and time.

Claim under test (Kunin et al. 2025, "Alternating gradient flows", arXiv:2506.06489, §5):
a quadratic network trained from small initialization on modular addition learns the
Fourier features of the target one at a time, in decreasing order of the target's
coefficient magnitude |x̂_k|, each when its fastest hidden unit escapes the dormant
phase. One-hot encodings have a flat spectrum, so the task encodes a ∈ Z_p as the shift
x_a of a template whose Fourier magnitudes differ
(:func:`learnmech.data.algorithmic.fourier_template_task`); the target is x_{a+b}.

* predict — per seed, from its own initial weights: each unit's frequency-k part follows
  the dormant flow of :mod:`learnmech.theory.agf` (eq. 2, rate c_k = √2|x̂_k|³/p^{3/2}),
  and frequency k arrives when its fastest unit reaches unit norm
  (:func:`learnmech.theory.agf.predict_onsets`); with equal init statistics the onset
  scales as |x̂_k|^−3.
* measure — f(a, b) = W₂ᵀ(W₁ᵀ[x_a; x_b])², entries N(0, σ²), full-batch GD on all p²
  pairs, L = (1/2p²)Σ‖f − x_{a+b}‖², float64, seeds as one stacked ensemble. Every
  ``eval_every`` steps, each frequency's fit ⟨f, y_k⟩/⟨y_k, y_k⟩
  (:func:`learnmech.measure.units.frequency_fit`); the onset is the step at which it
  first reaches ``onset_fit`` = 5% — early in the jump, which is abrupt (in the pilot
  the 5% and 50% crossings were within 25% of each other).
* claims (tolerances a priori) — ``order``: every seed acquires the frequencies in
  strictly decreasing |x̂_k| (``exact``). ``onset_times``: ln(measured/predicted onset)
  is 0 to within ln 1.25 for every frequency and init scale (``within_every``, 95%
  bounds over seeds). The template's magnitudes fall by 0.8 per frequency, so
  consecutive predicted onsets are a factor 0.8^−3 ≈ 1.95 apart: the tolerance is under
  half that gap in log time, fine enough to tell each frequency's time from its
  neighbours'. ``magnitude_exponent``: each seed's slope of ln t_onset against ln |x̂_k|
  is −3 to within 0.5 (separating AGF's cubic utility from |x̂|^−2 or |x̂|^−4).
  ``low_frequency_first`` (reported): Spearman ρ of onset against frequency index — the
  magnitudes are assigned out of frequency order, so a spectral bias towards low
  frequencies would show here instead.
* negative control ``large-init`` — σ = 0.1: the output is no longer negligible while
  the units climb, so the dormant flow is the wrong dynamics: the order mostly holds
  (5 of 6 seeds) but the onsets come 2–4× early and spread as |x̂|^−4.4, so
  ``onset_times`` and ``magnitude_exponent`` fail.

Findings. The dormant-flow times are accurate to a few percent: quick (6 seeds, σ = 0.01)
the worst frequency's 95% bound is 0.22 of the band; full (12 seeds, σ = 0.003 and 0.01)
the mean ln(measured/predicted) is within 2% in every cell and within 0.5% at σ = 0.003
(the neglected output is O(σ³)), one run's worst 12%; onsets ∝ |x̂|^−2.88 ± 0.04.
Outside the claims: when a template's frequency is 3k (mod p) for another of its
frequencies k, the learned k's square terms leave a residual that drives 3k early — in
the pilot (frequencies 1–4) frequency 3 came 31% early in one seed of four. The default
template avoids such pairs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from scipy.stats import spearmanr

from learnmech.claims import Claims, Estimate, fit_slope
from learnmech.data.algorithmic import _is_prime, fourier_template_task
from learnmech.measure.units import frequency_components, onset_times
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import colors, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.theory import agf

__all__ = ["FourierOrder", "FourierOrderConfig"]

ONSET_TOL = math.log(1.25)
EXPONENT, EXPONENT_TOL = -3.0, 0.5


class FourierOrderConfig(StudyConfig):
    p: int = Field(23, ge=5, le=211, description="the (prime) modulus")
    frequencies: list[int] = Values([5, 1, 9, 2], order=None, ge=1, le=105)
    magnitudes: list[float] = Values(
        [1.0, 0.8, 0.64, 0.512], order=None, gt=0, le=100, description="|x̂_k|/√p, per frequency"
    )
    template_seed: int = Field(0, ge=0, description="draws the template's phases")
    width: int = Field(64, ge=1, le=4096)
    init_scales: list[float] = Sweep([0.01], key="init", gt=0, le=10, description="σ")
    lr: float = Field(0.05, gt=0, le=1)
    steps: int = Field(8000, ge=10, le=1_000_000)
    eval_every: int = Field(10, ge=1, le=10_000)
    onset_fit: float = Field(0.05, gt=0, lt=1, description="fit that marks a frequency's onset")

    @model_validator(mode="after")
    def _template(self) -> FourierOrderConfig:
        if not _is_prime(self.p):
            raise ValueError(f"p must be prime (Z_p's Fourier analysis), got {self.p}")
        if len(self.magnitudes) != len(self.frequencies):
            raise ValueError("magnitudes needs one value per frequency")
        if max(self.frequencies) > (self.p - 1) // 2:
            raise ValueError(f"frequencies must be at most (p − 1)/2 = {(self.p - 1) // 2}")
        return self


def _log_ratio(a: float, b: float) -> float:
    """ln(a/b); NaN unless both are positive and finite (an onset at step 0 has no time)."""
    ok = all(math.isfinite(v) and v > 0 for v in (a, b))
    return math.log(a / b) if ok else math.nan


def _task(cfg: FourierOrderConfig) -> Any:
    return fourier_template_task(cfg.p, cfg.frequencies, cfg.magnitudes, seed=cfg.template_seed)


class FourierOrder(Study):
    name = "fourier-order"
    title = "Fourier features from small init: AGF's order and times on modular addition"
    summary = "quadratic net, templated modular addition: features in order of |x̂_k| at AGF times"
    pillar = "solvable settings"
    Config = FourierOrderConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 6},
        "full": {"seeds": 12, "init_scales": [0.003, 0.01], "steps": 30_000},
    }
    controls = (
        Control(
            "large-init",
            {"init_scales": [0.1], "steps": 1000},
            ("onset_times", "magnitude_exponent"),
            "at σ = 0.1 the output is not negligible during the climb: frequencies arrive "
            "2–4× before the dormant flow's times, and spread by more than |x̂|^−3",
        ),
    )

    def predict(self, cfg: FourierOrderConfig) -> list[Curve]:
        m = np.array(cfg.magnitudes)
        return [Curve("onset_scaling", "magnitude", m, (m / m.max()) ** EXPONENT)]

    def measure(
        self, cfg: FourierOrderConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        task, p, dev = _task(cfg), cfg.p, torch.device(device)
        comp = frequency_components(task.y.numpy(), task.frequencies)
        norm = torch.from_numpy(np.einsum("knp,knp->k", comp, comp)).to(dev)
        comp_t = torch.from_numpy(comp).to(dev)
        x, y = task.x.to(dev), task.y.to(dev)
        inits = []
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            w1 = torch.randn(2 * p, cfg.width, generator=g, dtype=torch.float64)
            inits.append((w1, torch.randn(cfg.width, p, generator=g, dtype=torch.float64)))
        W1 = (torch.stack([a for a, _ in inits]) * point["init"]).to(dev).requires_grad_(True)
        W2 = (torch.stack([b for _, b in inits]) * point["init"]).to(dev).requires_grad_(True)
        w1_0, w2_0 = W1.detach().cpu().numpy().copy(), W2.detach().cpu().numpy().copy()
        steps, fits, losses = [], [], []
        for step in range(cfg.steps + 1):
            out = ((x @ W1) ** 2) @ W2  # (S, p², p)
            loss = 0.5 * ((out - y) ** 2).sum(2).mean(1)
            if step % cfg.eval_every == 0:
                with torch.no_grad():
                    steps.append(step)
                    fits.append((torch.einsum("snq,knq->sk", out, comp_t) / norm).tolist())
                    losses.append(loss.detach().tolist())
            if step == cfg.steps:
                break
            loss.sum().backward()  # seeds are independent: the sum's gradient is each one's
            with torch.no_grad():
                for w in (W1, W2):
                    w -= cfg.lr * w.grad
                    w.grad = None
        if not np.all(np.isfinite(losses[-1])):
            raise FloatingPointError("training diverged")
        fits_a, loss_a = np.array(fits), np.array(losses)  # (T, S, K), (T, S)
        out_curves: dict[int, list[Curve]] = {}
        for i, s in enumerate(seeds):
            pred = agf.predict_onsets(
                w1_0[i, :p], w1_0[i, p:], w2_0[i].T, task.template, task.frequencies, cfg.lr
            )
            meas = onset_times(-fits_a[:, i], steps, -cfg.onset_fit)
            out_curves[s] = [
                Curve("loss", "step", steps, loss_a[:, i]),
                Curve("predicted_onset", "frequency", task.frequencies, pred),
                Curve("measured_onset", "frequency", task.frequencies, meas),
            ] + [
                Curve(f"fit_k{k}", "step", steps, fits_a[:, i, j])
                for j, k in enumerate(task.frequencies)
            ]
        return out_curves

    def analyze(self, cfg: FourierOrderConfig, theory: list[Curve], trials: Trials) -> Any:
        return [
            {
                "init": t.point["init"],
                "seed": t.seed,
                "predicted": t.curve("predicted_onset").values,
                "measured": t.curve("measured_onset").values,
                "steps": t.curve("loss").coords,
                "fits": np.stack([t.curve(f"fit_k{k}").values for k in cfg.frequencies], 1),
            }
            for t in trials.ok
        ]

    def claims(self, cfg: FourierOrderConfig, rows: list[dict]) -> list[Metric]:
        out = Claims()
        mags = np.array(cfg.magnitudes)
        rank = np.argsort(-mags)  # the predicted order: decreasing |x̂_k|

        def in_order(t: np.ndarray) -> bool:
            return bool(np.all(np.isfinite(t)) and np.all(np.diff(t[rank]) > 0))

        out.exact(
            "order",
            sum(not in_order(r["measured"]) for r in rows) if rows else 1,
            0,
            description="runs whose frequencies do not arrive in strictly decreasing |x̂_k|",
        )
        cells = [
            (
                f"σ={a:g}, k={k}",
                Estimate.of([_log_ratio(r["measured"][j], r["predicted"][j]) for r in rs]),
                0.0,
                ONSET_TOL,
            )
            for a in cfg.init_scales
            if (rs := [r for r in rows if r["init"] == a])
            for j, k in enumerate(cfg.frequencies)
        ]
        out.within_every(
            "onset_times",
            cells,
            description="ln(measured / AGF-predicted onset step), per frequency and σ",
        )
        out.within(
            "magnitude_exponent",
            Estimate.of([fit_slope(mags, r["measured"]).exponent.value for r in rows]),
            EXPONENT,
            EXPONENT_TOL,
            description="per-seed slope of ln t_onset against ln |x̂_k|; AGF: −3",
        )
        rho = [spearmanr(cfg.frequencies, r["measured"]).statistic for r in rows]
        out.reported(
            "low_frequency_first",
            Estimate.of(rho),
            description="Spearman ρ of onset against frequency index (spectral bias: ρ = 1)",
        )
        return out

    def figures(self, cfg: FourierOrderConfig, rows: list[dict], outdir: Path) -> list[Figure]:
        from matplotlib.ticker import NullFormatter

        if not rows:
            return []
        fig, ax = subplots(1, 2, figsize=(9, 3.3))
        small = min(r["init"] for r in rows)
        rs = [r for r in rows if r["init"] == small]
        cs = colors(len(cfg.frequencies))
        order = np.argsort(-np.array(cfg.magnitudes))
        for j in order:
            k, c = cfg.frequencies[j], cs[j]
            ax[0].plot(
                rs[0]["steps"],
                np.mean([r["fits"][:, j] for r in rs], 0),
                color=c,
                label=f"k = {k}, |x̂|/√p = {cfg.magnitudes[j]:g}",
            )
            ax[0].axvline(np.median([r["predicted"][j] for r in rs]), color=c, ls="--", lw=0.8)
        ax[0].set(xlabel="step", ylabel="fit of frequency k", title=f"σ = {small:g} (dashed: AGF)")
        ax[0].legend(fontsize=7, loc="lower right")
        pred = np.concatenate([r["predicted"] for r in rows])
        meas = np.concatenate([r["measured"] for r in rows])
        ok = np.isfinite(pred) & np.isfinite(meas) & (pred > 0) & (meas > 0)
        if ok.any():
            ax[1].plot(pred[ok], meas[ok], "o", alpha=0.6)
            lim = [min(pred[ok].min(), meas[ok].min()), max(pred[ok].max(), meas[ok].max())]
            ax[1].plot(lim, lim, "k--", lw=0.8, label="measured = predicted")
            ax[1].legend(fontsize=7)
        for axis in (ax[1].xaxis, ax[1].yaxis):
            axis.set_minor_formatter(NullFormatter())  # overlapping minor labels
        ax[1].set(
            xscale="log",
            yscale="log",
            xlabel="AGF-predicted onset step",
            ylabel="measured onset step",
            title="every seed and frequency",
        )
        caption = (
            "Left: each frequency's fit ⟨f, y_k⟩/⟨y_k, y_k⟩ (mean over seeds) at the smallest "
            "init; dashed lines are AGF's predicted onsets (median over seeds). Right: "
            f"measured onset (fit ≥ {cfg.onset_fit:g}) against the dormant-flow prediction "
            "from each seed's own initial weights."
        )
        return [Figure(save_png(fig, outdir / "fourier-order.png"), caption)]
