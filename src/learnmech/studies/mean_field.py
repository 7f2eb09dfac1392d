"""Study ``mean-field``: finite networks converge to their mean-field limit as width^−½, and
a lazy/rich map says which theory holds where.

Setting: the two-layer ReLU student–teacher of ``lazy-rich`` (Chizat, Oyallon & Bach
2019): f(x) = (α/m) Σ_j a_j relu(w_jᵀx), 2-D Gaussian inputs, a teacher of 3 ReLU units,
gradient descent on (1/α²)·½·mean(f − y)² with step η·m·min(1, α) for T/min(1, α) steps.
At fixed α the network is a system of m interacting particles (a_j, w_j) and, as m → ∞,
its empirical measure follows the Wasserstein gradient flow of the mean-field limit (Mei,
Montanari & Nguyen 2018; Chizat & Bach 2018; Rotskoff & Vanden-Eijnden 2018). The
fluctuations around the limit obey a central limit theorem: for i.i.d. initial particles
the loss curve is L_m(t) = L_∞(t) + ξ(t)/√m + O(1/m) (Sirignano & Spiliopoulos 2020,
Thm 2.2; Rotskoff & Vanden-Eijnden 2022, §3).

* predict — the mean-field limit by its particle discretization at a much larger width
  (the largest of ``widths``, the reference: the standard numerical scheme for the limit,
  its own error ∝ m_ref^−½ and averaged over seeds); the lazy (kernel) prediction, from each
  seed's own tangent kernel at init (Chizat et al. 2019, Thm 2.2–2.4).
* measure — ensembles of networks at each width and α, trained as one stacked batch with
  closed-form gradients; the train-loss curve at 40 log-spaced steps, and the linearized
  model's from the same init.

Errors (per seed): e = max_t |L(t) − L_theory(t)|/L(0) over the recorded steps, for the
mean-field limit (the reference seeds' mean curve) and for the lazy prediction; and the
mean-field deviation D_m = √(mean_s mean_t (L_m,s(t) − L̄_ref(t))² − V_ref/S_ref)/L(0),
debiased by the reference mean's own variance V_ref/S_ref.

Claims (95% bounds; tolerances fixed before the run):

* ``mf_exponent@alpha…`` — D_m ∝ m^b with b = −½ within 0.5/√m_min: the next-order O(1/m)
  term relative to O(1/√m) bends a log–log slope by at most ½·c/√m_min with c = O(1)
  (the same rule as ``wide-nets``); one claim per α.
* the regime map, at τ = ``tolerance`` (0.1: a theory "holds" where its loss curve stays
  within 10% of the initial loss — the map's resolution, chosen before the run):
  ``lazy_fails@alpha{min}`` (above τ at the widest finite width: the rich end is not a
  kernel method), ``lazy_holds@alpha{max}`` (below τ at the narrowest width),
  ``mean_field_holds@alpha…`` (below τ at the widest finite width, every α);
  ``mean_field_beats_lazy`` at (α_min, widest) and ``lazy_beats_mean_field`` at
  (α_max, narrowest), paired over seeds (log error ratio above 0).

Reported: the CLT amplitude predicted from the reference ensemble alone,
√(m_ref·V_ref)/L(0), against the fitted prefactor of D_m; the width where the mean-field
error crosses τ that this amplitude predicts, (amplitude/τ)².

Findings (quick scale: 8 seeds, widths 16–256, reference 2048; 30 s):

* the regime map comes out as the theory draws it (τ = 0.1): the kernel prediction fails at
  α = 0.1 at every width (loss-curve error 0.38–0.41) and holds for α ≥ 1; the mean-field
  limit holds at every α from width 64 on (error ≤ 0.062) and fails at widths 16–32
  (0.12–0.20); at α = 0.1 and widths ≤ 32 neither holds. All map claims pass.
* ``mf_exponent`` fails at every α: the fitted exponents are −0.73 (α = 0.1) to −0.92
  (α = 100), not −½. From width 64 on the deviation follows the CLT law whose amplitude
  the reference ensemble predicts (D_m·√m/amplitude = 0.67–1.06, inside the amplitude's
  ±27% precision from 8 reference seeds); widths 16 and 32 sit 1.24–2.44× above it, more
  so at large α. The O(1/m) next order is far larger than the tolerance's c = O(1) assumed
  at m ≤ 32; the claim is kept failing.

* full scale (16 seeds, widths 16–1024, reference 8192, α = 0.1 … 100): exponents −0.62
  to −0.75; from width 64 on ≈ m^−0.52; the CLT amplitude over-predicts D_m by ≈ 1.5
  (ratio 0.62–0.80; amplitude precision ±18%). Every map claim passes.

Negative control ``kernel-limit``: the kernel (NTK) limit — the reference seeds' linearized
curves — scored in place of the mean-field limit. At the rich end the networks converge to
something else: ``mean_field_holds@alpha{min}`` must fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.claims import Claims, Estimate, fit_slope
from learnmech.nets import two_layer as tl
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import save_png, subplots
from learnmech.studies.base import Analysis, Control, Study, StudyConfig, Sweep, Trials
from learnmech.studies.lazy_rich import LazyRichConfig, _data, _even_widths

__all__ = ["MeanField", "MeanFieldConfig"]


class MeanFieldConfig(StudyConfig):
    alphas: list[float] = Sweep([0.1, 1.0, 10.0, 100.0], key="alpha", n=2, gt=0)
    widths: list[int] = Sweep(
        [16, 32, 64, 128, 256, 2048],
        key="width",
        n=4,
        ge=2,
        description="student neurons m (even); the largest is the mean-field reference",
    )
    n_train: int = Field(64, ge=2, le=100_000)
    lr: float = Field(0.5, gt=0, le=10, description="η; the step on each parameter is η·m")
    steps: int = Field(400, ge=1, le=1_000_000, description="steps at α ≥ 1 (time η·steps)")
    data_seed: int = Field(0, ge=0)
    tolerance: float = Analysis(0.1, gt=0, le=1, description="τ of the regime map")
    limit: Literal["mean-field", "kernel"] = Analysis(
        "mean-field", description="the infinite-width limit scored ('kernel': the control)"
    )

    _even = field_validator("widths")(classmethod(_even_widths))


def _init_seed(seed: int, width: int) -> int:
    return (seed + 1) * 1_000_003 + width


class MeanField(Study):
    name = "mean-field"
    title = "Mean-field limit: finite widths converge as m^−½; a lazy/rich regime map"
    summary = "two-layer ReLU student–teacher: loss curves vs the mean-field and kernel limits"
    pillar = "solvable settings"
    Config = MeanFieldConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 8},
        "full": {
            "seeds": 16,
            "alphas": [0.1, 0.3, 1.0, 3.0, 10.0, 100.0],
            "widths": [16, 32, 64, 128, 256, 512, 1024, 8192],
        },
    }
    controls = (
        Control(
            "kernel-limit",
            {"limit": "kernel"},
            ("mean_field_holds@alpha0.1",),
            "the NTK limit in place of the mean-field one: rich networks do not converge to it",
        ),
    )

    def setup(self, cfg: MeanFieldConfig) -> dict[str, torch.Tensor]:
        return _data(LazyRichConfig(n_train=cfg.n_train, data_seed=cfg.data_seed))

    def predict(self, cfg: MeanFieldConfig) -> list[Curve]:
        w = np.array(cfg.widths[:-1], dtype=np.float64)
        return [Curve("mf_deviation_scaling", "width", w, (w / w[0]) ** -0.5)]

    def measure(
        self, cfg: MeanFieldConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        d = self.state(cfg)
        X, y = d["X"].to(device), d["y"].to(device)
        alpha, m = float(point["alpha"]), int(point["width"])
        slow = min(1.0, alpha)
        lr, steps = cfg.lr * slow, round(cfg.steps / slow)
        rec = set(np.unique(np.round(np.geomspace(1, steps, 40)).astype(int)).tolist())
        inits = [tl.symmetric_init(m, 2, _init_seed(s, m), device) for s in seeds]
        W0, A0 = torch.stack([w for w, _ in inits]), torch.stack([a for _, a in inits])
        _, _, st, losses = tl.train_scaled_stacked(X, y, W0, A0, alpha, lr, steps, rec)
        out: dict[int, list[Curve]] = {}
        for i, seed in enumerate(seeds):
            L = losses[:, i].cpu().numpy()
            _, lin = tl.linearized_run(X, y, X[:1], W0[i], A0[i], lr, steps, st)
            out[seed] = [
                Curve("train_loss", "step", st, L),
                Curve("lin_loss", "step", st, lin.cpu().numpy()),
            ]
        return out

    # ----------------------------------------------------------------------------------
    def analyze(self, cfg: MeanFieldConfig, theory: list[Curve], trials: Trials) -> dict:
        """α → per-width errors (per seed, seed order) and the reference's statistics."""
        ref_w, widths = cfg.widths[-1], cfg.widths[:-1]
        out: dict[float, Any] = {}
        for alpha, ta in trials.by("alpha").items():
            by_w = ta.by("width")
            if ref_w not in by_w or not all(w in by_w for w in widths):
                continue
            _, Lr = by_w[ref_w].stack("train_loss")
            _, Llin = by_w[ref_w].stack("lin_loss")
            limit = (Lr if cfg.limit == "mean-field" else Llin).mean(0)
            L0 = float(Lr[:, 0].mean())
            v_ref = float(Lr.var(0, ddof=1).mean())  # mean over t of the seed variance
            cells = {}
            for w in widths:
                _, L = by_w[w].stack("train_loss")
                _, lin = by_w[w].stack("lin_loss")
                n = min(L.shape[1], limit.size)
                dev2 = ((L[:, :n] - limit[:n]) ** 2).mean(1) - v_ref / Lr.shape[0]
                cells[w] = {
                    "e_mf": np.abs(L[:, :n] - limit[:n]).max(1) / L0,
                    "e_lazy": np.abs(L - lin).max(1) / L0,
                    "dev2": dev2 / L0**2,
                }
            out[float(alpha)] = {
                "cells": cells,
                "amplitude": math.sqrt(ref_w * v_ref) / L0,
                "ref_seeds": Lr.shape[0],
                "curves": (by_w[ref_w].stack("train_loss")[0], limit, by_w[widths[0]]),
            }
        return out

    @staticmethod
    def _deviation(dev2: np.ndarray) -> Estimate:
        """√(mean dev²) with its delta-method SE (clipped at a tiny positive floor)."""
        e = Estimate.of(dev2)
        v = max(e.value, 1e-300)
        return Estimate(math.sqrt(v), e.se / (2 * math.sqrt(v)), e.df)

    def claims(self, cfg: MeanFieldConfig, s: dict) -> list[Metric]:
        out = Claims()
        tau = cfg.tolerance
        widths = cfg.widths[:-1]
        lo_w, hi_w = widths[0], widths[-1]
        limit = "mean-field" if cfg.limit == "mean-field" else "kernel (NTK)"
        for alpha, r in sorted(s.items()):
            c = r["cells"]
            devs = [self._deviation(c[w]["dev2"]) for w in widths]
            fit = fit_slope(
                widths, [d.value for d in devs], [d.se for d in devs], df=len(c[lo_w]["dev2"]) - 1
            )
            out.within(
                f"mf_exponent@alpha{alpha:g}",
                fit.exponent,
                -0.5,
                0.5 / math.sqrt(lo_w),
                description=f"exponent of the {limit} deviation D_m vs width (CLT: −½; "
                f"tolerance 0.5/√m_min for the O(1/m) next order)",
                kind="slope",
            )
            out.below(
                f"mean_field_holds@alpha{alpha:g}",
                Estimate.of(c[hi_w]["e_mf"]),
                tau,
                description=f"max_t |L − L_{limit}|/L(0) at width {hi_w}",
            )
            out.reported(
                f"mf_amplitude@alpha{alpha:g}",
                r["amplitude"],
                description=f"CLT amplitude √(m_ref·V_ref)/L(0) from {r['ref_seeds']} reference "
                f"seeds; the fitted prefactor of D_m is {fit.prefactor:.3g}",
            )
            out.reported(
                f"mf_clt_ratio@alpha{alpha:g}",
                Estimate(devs[-1].value * math.sqrt(hi_w) / r["amplitude"], 0.0, math.inf),
                description=f"D_m·√m / the CLT amplitude at width {hi_w} (1 if the reference "
                f"predicts the deviation; the amplitude's own precision is ±1/√(2(S_ref − 1)))",
            )
            out.reported(
                f"mf_crossing_width@alpha{alpha:g}",
                (r["amplitude"] / tau) ** 2,
                description=f"width below which the CLT amplitude puts the RMS deviation "
                f"above τ = {tau}",
            )
        if len(s) < 2:
            return out
        amin, amax = min(s), max(s)
        rich, lazy = s[amin]["cells"], s[amax]["cells"]
        out.above(
            f"lazy_fails@alpha{amin:g}",
            Estimate.of(rich[hi_w]["e_lazy"]),
            tau,
            description=f"lazy (kernel) loss-curve error at α = {amin:g}, width {hi_w}",
        )
        out.below(
            f"lazy_holds@alpha{amax:g}",
            Estimate.of(lazy[lo_w]["e_lazy"]),
            tau,
            description=f"lazy (kernel) loss-curve error at α = {amax:g}, width {lo_w}",
        )
        out.above(
            "mean_field_beats_lazy",
            Estimate.of(np.log(rich[hi_w]["e_lazy"] / rich[hi_w]["e_mf"])),
            0.0,
            strict=True,
            description=f"ln(e_lazy/e_{limit}) at α = {amin:g}, width {hi_w} (paired)",
        )
        out.above(
            "lazy_beats_mean_field",
            Estimate.of(np.log(lazy[lo_w]["e_mf"] / lazy[lo_w]["e_lazy"])),
            0.0,
            strict=True,
            description=f"ln(e_{limit}/e_lazy) at α = {amax:g}, width {lo_w} (paired)",
        )
        return out

    def figures(self, cfg: MeanFieldConfig, s: dict, outdir: Path) -> list[Figure]:
        widths = cfg.widths[:-1]
        tau = cfg.tolerance
        fig, (a1, a2) = subplots(1, 2, figsize=(11, 4.2))
        for i, (alpha, r) in enumerate(sorted(s.items())):
            devs = [self._deviation(r["cells"][w]["dev2"]) for w in widths]
            a1.errorbar(
                widths,
                [d.value for d in devs],
                yerr=[d.se for d in devs],
                marker="o",
                color=f"C{i}",
                label=f"α = {alpha:g}",
            )
            a1.plot(widths, r["amplitude"] / np.sqrt(widths), ls=":", color=f"C{i}")
        a1.set(xscale="log", yscale="log", xlabel="width m", ylabel="RMS deviation D_m / L(0)")
        a1.set_xticks(widths, [str(w) for w in widths])
        a1.minorticks_off()
        a1.set_title("deviation from the limit (dotted: CLT from the reference)")
        a1.legend(fontsize=7)
        al = sorted(s)
        E_mf = np.array([[s[a]["cells"][w]["e_mf"].mean() for a in al] for w in widths])
        E_lz = np.array([[s[a]["cells"][w]["e_lazy"].mean() for a in al] for w in widths])
        code = (E_lz <= tau).astype(int) + 2 * (E_mf <= tau).astype(int)
        from matplotlib.colors import ListedColormap

        cmap = ListedColormap(["#dddddd", "#9ecae1", "#fdae6b", "#a1d99b"])
        a2.pcolormesh(
            np.arange(len(al) + 1), np.arange(len(widths) + 1), code, cmap=cmap, vmin=-0.5, vmax=3.5
        )
        for i in range(len(widths)):
            for j in range(len(al)):
                a2.text(
                    j + 0.5,
                    i + 0.5,
                    f"K {E_lz[i, j]:.2f}\nMF {E_mf[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
        a2.set_xticks(np.arange(len(al)) + 0.5, [f"{a:g}" for a in al])
        a2.set_yticks(np.arange(len(widths)) + 0.5, [str(w) for w in widths])
        a2.set(xlabel="output scale α", ylabel="width m")
        a2.set_title(
            f"which theory holds (error ≤ {tau}): grey none, blue kernel, "
            "orange mean-field, green both",
            fontsize=8,
        )
        caption = (
            "Left: each width's RMS loss-curve deviation from the mean-field limit (its "
            f"particle discretization at width {cfg.widths[-1]}), with the m^−½ law whose "
            "amplitude the reference ensemble predicts (dotted). Right: the lazy/rich "
            "regime map — each cell's loss-curve error of the kernel (K) and mean-field "
            "(MF) predictions, coloured by which stays within τ."
        )
        return [Figure(save_png(fig, outdir / "mean-field.png"), caption)]
