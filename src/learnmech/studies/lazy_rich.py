"""Study ``lazy-rich``: the output scale α moves a network between kernel and feature learning.

Setting (Chizat, Oyallon & Bach 2019, "On lazy training in differentiable programming",
§2 and Fig. 2; the framing paper's Fig. 2): a two-layer ReLU student
f(x) = (α/m) Σ_j a_j relu(w_jᵀx), m = 200, 2-D Gaussian inputs, a teacher of 3 ReLU units,
trained by gradient descent on the rescaled loss (1/α²)·½·mean(f − y)² with step η·m. The
symmetric init (neurons in ± pairs) makes f₀ = 0 and |a_j| = ‖w_j‖ (balanced).

Predictions:

* Lazy limit α → ∞: f follows the *linearized* model, i.e. kernel gradient descent with the
  (α-independent) tangent kernel K_h(x, x') = (1/m)Σ_j[relu(w_jᵀx)relu(w_jᵀx') + a_j²
  1(w_jᵀx > 0)1(w_jᵀx' > 0) xᵀx'] at init; parameters move by O(1/α) (Chizat et al. 2019,
  Thm 2.2–2.4), so the relative weight change scales as α⁻¹.
* Rich regime α ≪ 1: weights move by O(1), the kernel changes, and neurons rotate and
  concentrate on the teacher directions (mean-field feature learning); the linearized
  prediction is then wrong.

Measured at each α: relative weight change, relative kernel change, alignment (fraction of
the neurons' mass |a_j|‖w_j‖ within 10° of a teacher direction), test loss, and the error of
the linearized prediction ‖f_T − f_lin,T‖/‖f_lin,T‖ on test points. For ReLU the Jacobian is
discontinuous, so at moderate α the linearization error falls more slowly than α⁻¹ (a
fraction O(1/α) of activation patterns flip); it is reported, and scored only for its sign
of trend. To keep every α stable the step is η·min(1, α) and the number of steps
T/min(1, α): all runs train for the same time. Every α of one seed starts from the same
init, so comparisons across α are paired over seeds.

Claims (95% bounds over seeds):

* the local slope of the relative weight change vs α between the two largest α is −1
  within 1/α at the pair's lower end (``within``): Chizat et al.'s Δθ = O(1/α) with an
  O(1/α²) next order. The slope's change from the previous pair is reported, not added
  to the tolerance;
* the linearized-prediction error, its train-loss curve error and the kernel change fall
  with α ≥ 1 (fitted exponent ``below`` 0);
* at the rich end the neurons align with the teacher: the gain in the mass fraction
  within 10° of a teacher direction is at least the chance fraction (k teachers ·
  20°/360°, what isotropic directions have), i.e. alignment at least doubles
  (``above``); and the gain exceeds the lazy end's (paired, ``above`` 0).

Negative control ``all-lazy``: α ∈ {10, 30, 100}: the smallest α is already lazy, so the
"rich end" must not align and both alignment claims must fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.claims import Claims, Estimate, fit_slope
from learnmech.nets import two_layer as tl
from learnmech.records import Curve, Figure, Metric, scalars
from learnmech.stats import mean_se
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials

__all__ = ["LazyRich", "LazyRichConfig"]

ALIGN_DEG = 10.0


def _even_widths(cls: type, v: list[int]) -> list[int]:
    """Validator shared by the studies of the symmetric two-layer net."""
    if any(w % 2 for w in v):
        raise ValueError("widths must be even (neurons come in ± pairs)")
    return v


class LazyRichConfig(StudyConfig):
    alphas: list[float] = Sweep([0.1, 0.3, 1.0, 3.0, 10.0, 30.0], key="alpha", n=2, gt=0)
    widths: list[int] = Sweep([200], key="width", ge=2, description="student neurons m (even)")
    n_train: int = Field(64, ge=2, le=100_000)
    n_test: int = Field(512, ge=2, le=100_000)
    teacher_angles_deg: list[float] = Field(default_factory=lambda: [20.0, 140.0, 250.0])
    lr: float = Field(0.5, gt=0, le=10, description="η; the step on each parameter is η·m")
    steps: int = Field(2000, ge=1, le=1_000_000, description="steps at α ≥ 1 (time η·steps)")
    data_seed: int = Field(0, ge=0)

    _even = field_validator("widths")(classmethod(_even_widths))


def _teacher(cfg: LazyRichConfig) -> torch.Tensor:
    ang = torch.tensor([math.radians(a) for a in cfg.teacher_angles_deg], dtype=torch.float64)
    return torch.stack([torch.cos(ang), torch.sin(ang)], 1)


def _data(cfg: LazyRichConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.data_seed)
    X = torch.randn(cfg.n_train, 2, generator=g, dtype=torch.float64)
    Xt = torch.randn(cfg.n_test, 2, generator=g, dtype=torch.float64)
    Wt = _teacher(cfg)
    return {"X": X, "Xt": Xt, "y": torch.relu(X @ Wt.T).sum(1), "yt": torch.relu(Xt @ Wt.T).sum(1)}


class LazyRich(Study):
    name = "lazy-rich"
    title = "Lazy vs rich: output scale α moves a network between kernel and feature learning"
    summary = "two-layer ReLU student–teacher: weight/kernel change, alignment, NTK error vs α"
    pillar = "solvable settings"
    Config = LazyRichConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3, "alphas": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]},
        "full": {
            "seeds": 8,
            "alphas": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0],
            "widths": [200, 1000],
        },
    }
    controls = (
        Control(
            "all-lazy",
            {"alphas": [10.0, 30.0, 100.0]},
            ("alignment_gain@alpha*", "alignment_gain_rich_minus_lazy"),
            "the smallest α is already lazy: no end of the sweep is rich",
        ),
    )

    def setup(self, cfg: LazyRichConfig) -> dict[str, torch.Tensor]:
        return _data(cfg)

    def predict(self, cfg: LazyRichConfig) -> list[Curve]:
        al = np.array(cfg.alphas)
        ref = al[-1]
        return [Curve("weight_change_scaling", "alpha", al, (ref / al))]

    def measure(
        self, cfg: LazyRichConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        d = self.state(cfg)
        dev = torch.device(device)
        X, Xt, y, yt = (d[k].to(dev) for k in ("X", "Xt", "y", "yt"))
        Wt = _teacher(cfg).to(dev)
        alpha = float(point["alpha"])
        m = int(point["width"])
        slow = min(1.0, alpha)
        lr = cfg.lr * slow
        steps = round(cfg.steps / slow)
        rec = set(np.unique(np.round(np.geomspace(1, steps, 40)).astype(int)).tolist())
        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            w0, a0 = tl.symmetric_init(m, 2, seed, dev)
            run = tl.train_scaled(X, y, w0, a0, alpha, lr, steps, rec)
            w, a, losses = run.w, run.a, run.losses
            if not math.isfinite(losses[-1]):
                out[seed] = [Curve("train_loss", "step", run.steps, losses)]
                continue
            with torch.no_grad():
                K0 = tl.tangent_kernel(X, X, w0, a0)
                KT = tl.tangent_kernel(X, X, w, a)
                ft = alpha / m * (torch.relu(Xt @ w.T) @ a)
                f_lin, lin_loss = tl.linearized_run(X, y, Xt, w0, a0, lr, steps, run.steps)
                loss_t = torch.tensor(losses, dtype=lin_loss.dtype, device=lin_loss.device)
                theta0 = torch.cat([w0.reshape(-1), a0])
                theta = torch.cat([w.reshape(-1), a])
                curves = scalars(
                    "alpha",
                    alpha,
                    weight_change=float((theta - theta0).norm() / theta0.norm()),
                    kernel_change=float((KT - K0).norm() / K0.norm()),
                    alignment=tl.alignment(w, a, Wt, ALIGN_DEG),
                    alignment_init=tl.alignment(w0, a0, Wt, ALIGN_DEG),
                    test_loss=float(0.5 * ((ft - yt) ** 2).mean()),
                    lin_test_loss=float(0.5 * ((f_lin - yt) ** 2).mean()),
                    lin_error=float((ft - f_lin).norm() / f_lin.norm()),
                    loss_curve_error=float((loss_t - lin_loss).abs().max() / lin_loss[0]),
                )
            curves.append(Curve("train_loss", "step", run.steps, losses))
            if seed == min(seeds):
                wa0 = (w0 * a0.abs()[:, None]).cpu().numpy()
                wa = (w * a.abs()[:, None]).cpu().numpy()
                i = np.arange(m)
                curves += [
                    Curve("neuron_x_init", "neuron", i, wa0[:, 0]),
                    Curve("neuron_y_init", "neuron", i, wa0[:, 1]),
                    Curve("neuron_x_final", "neuron", i, wa[:, 0]),
                    Curve("neuron_y_final", "neuron", i, wa[:, 1]),
                    Curve("neuron_sign", "neuron", i, np.sign(a.cpu().numpy())),
                ]
            out[seed] = curves
        return out

    KEYS = (
        "weight_change",
        "kernel_change",
        "alignment",
        "alignment_init",
        "test_loss",
        "lin_test_loss",
        "lin_error",
        "loss_curve_error",
    )

    def analyze(self, cfg: LazyRichConfig, theory: list[Curve], trials: Trials) -> dict:
        """width → α → {observable: per-seed values (seed order)}, plus the trials."""
        out: dict[int, Any] = {}
        for w, tw in trials.by("width").items():
            tab: dict[float, dict[str, Any]] = {}
            for a, ta in tw.has("weight_change").by("alpha").items():
                row = {k: ta.last(k) for k in self.KEYS}
                row["seeds"] = ta.seeds
                row["align_gain"] = row["alignment"] - row["alignment_init"]
                tab[float(a)] = row
            out[w] = {"tab": tab, "trials": list(tw)}
        return out

    def claims(self, cfg: LazyRichConfig, s: dict) -> list[Metric]:
        out = Claims()
        for w, r in s.items():
            part = self._claims_width(r["tab"], len(cfg.teacher_angles_deg))
            if len(s) > 1:
                for m in part:
                    m.name = f"{m.name}@m{w}"
            out += part
        return out

    def _claims_width(self, tab: dict[float, dict[str, Any]], teachers: int) -> list[Metric]:
        out = Claims()
        chance = teachers * 2 * ALIGN_DEG / 360
        lazy = [a for a in sorted(tab) if a >= 3]
        if len(lazy) >= 3:
            t0, t1, t2 = lazy[-3:]
            d0, d1, d2 = (tab[a]["weight_change"] for a in (t0, t1, t2))
            if d0.size == d1.size == d2.size:
                s_top = np.log(d2 / d1) / math.log(t2 / t1)
                s_prev = np.log(d1 / d0) / math.log(t1 / t0)
                out.within(
                    "weight_change_exponent",
                    Estimate.of(s_top),
                    -1.0,
                    1.0 / t1,
                    kind="slope",
                    description=f"local slope of the relative weight change vs α between "
                    f"α={t1:g} and {t2:g} (theory −1, Chizat et al. 2019 Thm 2.2); "
                    f"tolerance 1/α = {1 / t1:.3g} (the next order)",
                )
                out.reported(
                    "weight_change_exponent_truncation",
                    Estimate.of(s_top - s_prev),
                    description="the slope's change from the previous pair of α",
                )
        if len(tab) < 2:
            return out
        al = np.array(sorted(tab))
        lo, hi = al[0], al[-1]
        big = al[al >= 1] if (al >= 1).sum() >= 2 else al
        for key, label in (
            ("lin_error", "linearized-prediction error"),
            ("loss_curve_error", "train-loss curve error of the linearized prediction"),
            ("kernel_change", "relative kernel change"),
        ):
            v = [Estimate.of(tab[a][key]) for a in big]
            fit = fit_slope(big, [e.value for e in v], [e.se for e in v])
            out.below(
                f"{key}_exponent",
                fit.exponent,
                0.0,
                strict=True,
                description=f"{label} falls with α (α ≥ 1): fitted log–log slope",
            )
        for a in (hi, lo):
            out.reported(
                f"loss_curve_error@alpha{a:g}",
                Estimate.of(tab[a]["loss_curve_error"]),
                description="max over steps of |L_t − L_lin,t| / L_0",
            )
            out.reported(
                f"lin_error@alpha{a:g}",
                Estimate.of(tab[a]["lin_error"]),
                description="‖f_T − f_lin,T‖/‖f_lin,T‖ on test points",
            )
        out.above(
            f"alignment_gain@alpha{lo:g}",
            Estimate.of(tab[lo]["align_gain"]),
            chance,
            description=f"rich end: gain in the mass fraction within {ALIGN_DEG:g}° of a "
            f"teacher direction, at least the chance fraction {chance:.3f}",
        )
        if tab[lo]["seeds"] == tab[hi]["seeds"]:
            d = Estimate.paired(tab[lo]["align_gain"], tab[hi]["align_gain"])
        else:
            d = Estimate.of(tab[lo]["align_gain"]) - Estimate.of(tab[hi]["align_gain"])
        out.above(
            "alignment_gain_rich_minus_lazy",
            d,
            0.0,
            strict=True,
            description=f"alignment gain at α={lo:g} minus at α={hi:g} (paired over seeds)",
        )
        return out

    def figures(self, cfg: LazyRichConfig, s: dict, outdir: Path) -> list[Figure]:
        from learnmech.report import plots

        r = s.get(cfg.widths[0])
        if not r or not r["tab"]:
            return []
        tab = {
            a: {k: mean_se(v) for k, v in row.items() if k != "seeds"} | {"n": len(row["seeds"])}
            for a, row in r["tab"].items()
        }
        return plots.lazy_rich_figures(cfg, tab, r["trials"], _teacher(cfg).numpy(), outdir)
