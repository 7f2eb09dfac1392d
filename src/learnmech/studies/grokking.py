"""Study ``grokking``: modular addition, weight decay, and the Fourier solution.

Claims under test:

* Gromov (2023, "Grokking modular arithmetic", eqs. 3–5): a two-layer network with
  quadratic activation, f(a, b) = W₂ᵀ(W₁ᵃe_a + W₁ᵇe_b)², trained on (a + b) mod p ends at
  the analytic solution: each hidden neuron k carries one frequency σ_k on both inputs,
  cos(2πσa/p + φᵃ), cos(2πσb/p + φᵇ), and its output weights cos(2πσq/p + φᵒ) with
  φᵒ = φᵃ + φᵇ, so that the sum over neurons peaks at q = a + b.
* Lyu et al. (2024, "Dichotomy of early and late phase implicit biases can provably
  induce grokking", Thm. 3.3–3.6) and Kumar et al. (2024, "Grokking as the transition from
  lazy to rich training dynamics"): from a large initialization the net first fits the
  training set in the kernel (lazy) regime; weight decay shrinks the weights as e^{−ηλt},
  and it generalizes once they are small enough for the rich (feature-learning) solution.
  So the step at which it generalizes scales as 1/λ, and grows with the init scale α by
  ln(α^m)/(ηλ), where α^m is the output's scale: m = 3 here (f is cubic in the weights).

* measure — full-batch training with AdamW-style decoupled weight decay (w ← (1 − ηλ)w,
  then Adam), MSE on one-hot targets, p = 23, half the p² pairs for training; every seed
  one member of a stacked ensemble. Train and test accuracy every ``eval_every`` steps;
  at the end, each neuron's dominant frequency and concentration
  (:func:`learnmech.measure.units.neuron_frequencies`), its phase mismatch
  φᵒ − φᵃ − φᵇ, and Nanda et al.'s restricted/excluded losses
  (:func:`learnmech.measure.units.restricted_excluded_loss`, reported).
* claims (tolerances a priori) — ``fits``, ``generalizes``: every run reaches 100% train
  and ≥ 95% test accuracy within the budget (``exact``). ``delay_exponent``: each
  seed's slope of log t_gen against log λ is −1 to within 0.25 (separating 1/λ from
  1/√λ and from 1/λ²). ``init_delay``: (t_gen(α) − t_gen(1))·ηλ/ln α is m = 3 to within
  1 (separating the cubic output from a homogeneous degree 2 or 4). ``concentration``:
  the median active neuron (norm ≥ 10% of the largest) has more than half its input
  power at one frequency (random weights: ≈ 2/(p − 1)). ``phase``: the mean of
  cos(φᵒ − φᵃ − φᵇ) over active neurons is ≥ cos 45° (random phases: 0).
* negative control ``no-weight-decay`` — λ = 0: nothing drives the net out of the kernel
  regime; it fits but does not generalize or find the Fourier solution.

Kunin et al.'s (2025) AGF order of Fourier features from small init is study
``fourier-order`` (:mod:`learnmech.studies.fourier_order`): with one-hot modular
addition every frequency has the same target coefficient, so there is no order to
predict; it encodes the operands on a template with unequal Fourier magnitudes.

Findings. The Fourier solution is what training finds (concentration 0.9999, phase
0.98 at both scales). The weight-decay law is close to 1/λ but not resolved to it:
quick −1.10 ± 0.10 (8 seeds; bound 0.29), full −1.23 ± 0.05 over λ = 0.25–2 (ηλ·t_gen
rises from 2.6 to 5.2 as λ falls). The init delay per ln α is 3.2 ± 0.8 at α = 1.5,
4.3 ± 0.3 at 2 and 15 at 3: with Adam the lazy fit itself slows at large init (100%
train accuracy at step ≈ 3,000 at α = 3, ≈ 70 at α = 1), which the account omits.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.claims import Claims, Estimate, fit_slope
from learnmech.data.algorithmic import _is_prime, modular_arithmetic
from learnmech.measure.units import neuron_frequencies, restricted_excluded_loss
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import colors, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Trials, Values

__all__ = ["Grokking", "GrokkingConfig"]

GEN_ACC = 0.95
OUTPUT_DEGREE = 3  # f is cubic in (W₁, W₂): the output scales as α³
ACTIVE = 0.1  # a neuron counts once its input-weight norm is 10% of the largest


class GrokkingConfig(StudyConfig):
    p: int = Field(23, ge=5, le=211, description="the (prime) modulus")
    train_fraction: float = Field(0.5, gt=0, lt=1)
    width: int = Field(64, ge=2, le=8192)
    lr: float = Field(0.005, gt=0, le=1)
    weight_decays: list[float] = Values([0.5, 1.0, 2.0], ge=0, le=100)
    reference_decay: float = Field(1.0, ge=0, le=100, description="λ of the init-scale arm")
    init_scales: list[float] = Values([2.0], n=0, gt=1, le=100, description="α > 1 arm")
    steps: int = Field(4000, ge=10, le=1_000_000)
    eval_every: int = Field(10, ge=1, le=10_000)
    data_seed: int = Field(0, ge=0)

    @field_validator("p")
    @classmethod
    def _prime(cls, v: int) -> int:
        if not _is_prime(v):
            raise ValueError(f"p must be prime (Z_p's Fourier analysis), got {v}")
        return v


def _onehot(x: torch.Tensor, p: int) -> torch.Tensor:
    f = torch.nn.functional.one_hot
    return torch.cat([f(x[:, 0], p), f(x[:, 1], p)], 1).double()


def _phase(w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Phase φ of each column's cos(2πk·n/p + φ) component (the DFT's angle at k)."""
    return np.angle(np.fft.fft(w, axis=0)[k, np.arange(w.shape[1])])


def _fourier(w1: np.ndarray, w2: np.ndarray, p: int) -> dict[str, np.ndarray]:
    a, b = w1[:p], w1[p:]
    fa, fb = neuron_frequencies(a), neuron_frequencies(b)
    mismatch = _phase(w2.T, fa.frequency) - _phase(a, fa.frequency) - _phase(b, fa.frequency)
    norm = np.linalg.norm(w1, axis=0)
    return {
        "concentration": (fa.concentration + fb.concentration) / 2,
        "same_frequency": (fa.frequency == fb.frequency).astype(float),
        "phase_cos": np.cos(mismatch),
        "active": (norm >= ACTIVE * norm.max()).astype(float),
        "frequency": fa.frequency.astype(float),
    }


class Grokking(Study):
    name = "grokking"
    title = "Grokking: weight decay moves a quadratic net from lazy fitting to the Fourier solution"
    summary = (
        "modular addition: t_gen ∝ 1/λ, +3 ln α/(ηλ) for init α; Gromov's frequencies and phases"
    )
    pillar = "solvable settings"
    Config = GrokkingConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 8},
        "full": {
            "seeds": 16,
            "weight_decays": [0.25, 0.5, 1.0, 2.0],
            "init_scales": [1.5, 2.0, 3.0],
            "steps": 12_000,
        },
    }
    controls = (
        Control(
            "no-weight-decay",
            {"weight_decays": [0.0], "reference_decay": 0.0, "init_scales": [], "steps": 2000},
            ("generalizes", "concentration", "phase"),
            "without weight decay nothing pulls the net out of the lazy fit of the training set",
        ),
    )

    def grid(self, cfg: GrokkingConfig) -> list[dict[str, Any]]:
        return [{"wd": w, "init": 1.0} for w in cfg.weight_decays] + [
            {"wd": cfg.reference_decay, "init": a} for a in cfg.init_scales
        ]

    def predict(self, cfg: GrokkingConfig) -> list[Curve]:
        lam = np.array([w for w in cfg.weight_decays if w > 0] or [1.0])
        return [Curve("t_gen_scaling", "weight_decay", lam, lam[0] / lam)]

    def measure(
        self, cfg: GrokkingConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        task, p, dev = (
            modular_arithmetic(cfg.p, train_fraction=cfg.train_fraction, seed=cfg.data_seed),
            cfg.p,
            torch.device(device),
        )
        xtr, xte = _onehot(task.x_train, p).to(dev), _onehot(task.x_test, p).to(dev)
        ytr, yte = task.y_train.to(dev), task.y_test.to(dev)
        target = torch.nn.functional.one_hot(ytr, p).double()
        w1, w2 = [], []
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            w1.append(
                torch.randn(2 * p, cfg.width, generator=g, dtype=torch.float64) / math.sqrt(2 * p)
            )
            w2.append(
                torch.randn(cfg.width, p, generator=g, dtype=torch.float64) / math.sqrt(cfg.width)
            )
        W = [(torch.stack(w) * point["init"]).to(dev).requires_grad_(True) for w in (w1, w2)]
        opt, shrink = torch.optim.Adam(W, lr=cfg.lr), 1 - cfg.lr * point["wd"]
        S, rec, acc_tr, acc_te = len(seeds), [], [], []

        def f(x: torch.Tensor) -> torch.Tensor:
            return ((x @ W[0]) ** 2) @ W[1]

        for step in range(1, cfg.steps + 1):
            out = f(xtr.expand(S, -1, -1))
            loss = 0.5 * ((out - target) ** 2).sum(2).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for w in W:
                    w.mul_(shrink)  # decoupled weight decay, then Adam (AdamW's order)
            opt.step()
            if step % cfg.eval_every == 0:
                with torch.no_grad():
                    rec.append(step)
                    acc_tr.append((out.argmax(2) == ytr).double().mean(1).tolist())
                    acc_te.append(
                        (f(xte.expand(S, -1, -1)).argmax(2) == yte).double().mean(1).tolist()
                    )
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError("training diverged")
        grid = _onehot(torch.cartesian_prod(torch.arange(p), torch.arange(p)), p).to(dev)
        out: dict[int, list[Curve]] = {}
        for i, s in enumerate(seeds):
            a1, a2 = (w[i].detach().cpu().numpy() for w in W)
            four = _fourier(a1, a2, p)
            keys = np.unique(four["frequency"][four["active"] > 0]).astype(int)
            with torch.no_grad():
                logits = (((grid @ W[0][i]) ** 2) @ W[1][i]).cpu().numpy().reshape(p, p, p)
            restricted, excluded = restricted_excluded_loss(logits, p, keys)
            neurons = np.arange(cfg.width)
            out[s] = [
                Curve("train_acc", "step", rec, np.array(acc_tr)[:, i]),
                Curve("test_acc", "step", rec, np.array(acc_te)[:, i]),
                Curve("restricted_loss", "step", [cfg.steps], [restricted]),
                Curve("excluded_loss", "step", [cfg.steps], [excluded]),
            ] + [Curve(k, "neuron", neurons, v) for k, v in four.items()]
        return out

    def analyze(self, cfg: GrokkingConfig, theory: list[Curve], trials: Trials) -> Any:
        def first(st: np.ndarray, v: np.ndarray, level: float) -> float:
            hit = np.flatnonzero(v >= level)
            return float(st[hit[0]]) if hit.size else math.nan

        rows = []
        for t in trials.ok:
            st = t.curve("train_acc").coords
            act = t.curve("active").values > 0
            rows.append(
                {
                    "wd": t.point["wd"],
                    "init": t.point["init"],
                    "seed": t.seed,
                    "t_fit": first(st, t.curve("train_acc").values, 1.0),
                    "t_gen": first(st, t.curve("test_acc").values, GEN_ACC),
                    "steps": st,
                    "test_acc": t.curve("test_acc").values,
                    "concentration": float(np.median(t.curve("concentration").values[act])),
                    "phase": float(np.mean(t.curve("phase_cos").values[act])),
                    "restricted": t.curve("restricted_loss").values[0],
                    "excluded": t.curve("excluded_loss").values[0],
                }
            )
        return rows

    def claims(self, cfg: GrokkingConfig, rows: list[dict]) -> list[Metric]:
        out = Claims()
        out.exact(
            "fits",
            sum(not math.isfinite(r["t_fit"]) for r in rows) if rows else 1,
            0,
            description="runs that never reach 100% training accuracy",
        )
        out.exact(
            "generalizes",
            sum(not math.isfinite(r["t_gen"]) for r in rows) if rows else 1,
            0,
            description=f"runs that never reach {GEN_ACC:.0%} test accuracy within the budget",
        )
        base = [r for r in rows if r["init"] == 1.0 and r["wd"] > 0]
        lams = sorted({r["wd"] for r in base})
        slopes = []
        for seed in sorted({r["seed"] for r in base}):
            t = {r["wd"]: r["t_gen"] for r in base if r["seed"] == seed}
            # NaN when a seed never generalized at some λ, or fewer than two λ
            slopes.append(fit_slope(lams, [t.get(w, math.nan) for w in lams]).exponent.value)
        out.within(
            "delay_exponent",
            Estimate.of(slopes),
            -1.0,
            0.25,
            description=f"slope of log t_gen against log λ over λ = {lams}; predicted −1",
        )
        ref = {r["seed"]: r["t_gen"] for r in base if r["wd"] == cfg.reference_decay}
        cells = []
        for a in cfg.init_scales:
            d = [
                (r["t_gen"] - ref.get(r["seed"], math.nan)) * cfg.lr * r["wd"] / math.log(a)
                for r in rows
                if r["init"] == a
            ]
            cells.append((f"α={a:g}", Estimate.of(d), float(OUTPUT_DEGREE), 1.0))
        if cfg.init_scales:
            out.within_every(
                "init_delay",
                cells,
                description="(t_gen(α) − t_gen(1))·ηλ/ln α; predicted 3 (output ∝ α³)",
            )
        ref_rows = [r for r in rows if r["init"] == 1.0 and r["wd"] == cfg.reference_decay]
        out.above(
            "concentration",
            Estimate.of([r["concentration"] for r in ref_rows]),
            0.5,
            description="median active neuron's input power at its top frequency",
        )
        out.above(
            "phase",
            Estimate.of([r["phase"] for r in ref_rows]),
            math.cos(math.pi / 4),
            description="mean cos(φᵒ − φᵃ − φᵇ) over active neurons; solution: 1",
        )
        out.reported(
            "restricted_loss",
            Estimate.of([r["restricted"] for r in ref_rows]),
            description="Nanda et al.: the key frequencies' components only",
        )
        out.reported(
            "excluded_loss",
            Estimate.of([r["excluded"] for r in ref_rows]),
            description="Nanda et al.: everything but the key frequencies",
        )
        return out

    def figures(self, cfg: GrokkingConfig, rows: list[dict], outdir: Path) -> list[Figure]:
        from matplotlib.ticker import NullFormatter

        fig, ax = subplots(1, 2, figsize=(9, 3.3))
        keys = sorted({(r["wd"], r["init"]) for r in rows})
        for c, key in zip(colors(len(keys)), keys, strict=True):
            rs = [r for r in rows if (r["wd"], r["init"]) == key]
            ax[0].plot(
                rs[0]["steps"],
                np.mean([r["test_acc"] for r in rs], 0),
                color=c,
                label=f"λ = {key[0]:g}, α = {key[1]:g}",
            )
        ax[0].set(xscale="log", xlabel="step", ylabel="test accuracy", title="grokking")
        ax[0].legend(fontsize=7)
        base = [r for r in rows if r["init"] == 1.0 and math.isfinite(r["t_gen"])]
        if base:
            lam = np.array([r["wd"] for r in base])
            ax[1].plot(lam, [r["t_gen"] for r in base], "o", alpha=0.6, label="measured")
            grid = np.geomspace(lam.min(), lam.max(), 20)
            t0 = np.median([r["t_gen"] for r in base if r["wd"] == lam.min()])
            ax[1].plot(grid, t0 * lam.min() / grid, "k--", label="∝ 1/λ")
            ax[1].set(
                xscale="log",
                yscale="log",
                xlabel="weight decay λ",
                ylabel="t_gen",
                title="when it generalizes",
            )
            ax[1].legend(fontsize=7)
            ax[1].xaxis.set_minor_formatter(NullFormatter())  # overlapping minor labels
        caption = (
            "Left: test accuracy (mean over seeds) per weight decay and init scale. Right: "
            f"the step at which test accuracy first reaches {GEN_ACC:.0%}, against λ."
        )
        return [Figure(save_png(fig, outdir / "grokking.png"), caption)]
