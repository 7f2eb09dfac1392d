"""Study ``saddle-to-saddle``: small-init two-layer nets learn planted modes one step at a time.

Claim under test (Saxe, McClelland & Ganguli 2014; Jacot et al. 2021, "Saddle-to-saddle
dynamics in deep linear networks"; Kunin et al. 2025, arXiv:2506.06489, Alternating
Gradient Flows): from small initialization a two-layer network f(x) = W₂φ(W₁x) trained by
gradient descent on a task with planted singular values s₁ > s₂ > … sits near a saddle,
escapes along the strongest remaining mode, plateaus at the next saddle, and so on: the
loss is a staircase, each step learns one rank-one feature, in order of s, at a time set
by s and the initialization.

* predict — the early (escape) phase is linear in the weights for every activation with
  φ'(0) = 1 (linear, tanh: φ(z) = z + O(z³)), so mode k's end-to-end strength
  u_k = U_kᵀ Σ_fx V_k (Σ_fx = f(X)ᵀX/n, the network's best linear map on whitened inputs)
  follows the depth-2 discrete GD map b ← b + ηb(s_k − b²), u = b², from the effective
  initial strength u₀,eff = ‖(W₂ᵀU_k + W₁V_k)/2‖² of the actual initialization (Saxe et
  al. 2014, §3; :mod:`learnmech.theory.deep_linear`). For ReLU on symmetric inputs
  E[xxᵀ1(w·x > 0)] = I/2 and E[x relu(w·x)] = w/2 for every w, so while f is small the
  weights follow the same map with s_k/2 (half the growth rate) and u = b²/2 (AGF's
  utility of a dormant neuron, Kunin et al. 2025, §3, is this halved correlation).
* predict, second theory — the population dynamics of every hidden unit in the planted
  subspace (:func:`learnmech.theory.planted.planted_subspace_dynamics`): gradient descent
  on L = ½E‖Sz − Σ_i w_i φ(u_i·z)‖², z ~ N(0, I), with E[z φ(u·z)] = u E[φ'] (Stein) and
  E[φ(u_i·z) φ(u_j·z)] in closed form for ReLU (the arc-cosine kernel, Cho & Saul 2009)
  or by quasi-Monte Carlo for tanh, from the seed's own initial weights projected on the
  subspace. In the dormant phase this is AGF's per-unit utility; unlike the linear escape
  it keeps ReLU's even part |h|/2 (a cost that slows the rise) and the coupling of modes
  that share saturating units. It is not a small-init theory: it holds at any init.
* measure — full-batch GD (float64, every seed one member of a stacked ensemble: plain
  SGD is elementwise) on :func:`learnmech.data.algorithmic.planted_singular_task`
  (whitened Gaussian inputs, s = 3, 1.5, 0.75); u_k(t), the loss, and the singular values
  of ΔΣ_fx(t) = Σ_fx(t) − Σ_fx(0) at every step.
* claims, per activation (tolerances a priori) —
  ``order``: every seed learns the modes in decreasing s (``exact``). ``step_times``:
  the step at which u_k first reaches s_k/8 (inside every activation's linear regime) is
  the map's prediction to within one e-folding time of that mode's escape, 1/(2ηs_k)
  (ReLU: 1/(ηs_k)) — the misaligned part of a random initialization decays within
  O(1) e-folds, so a larger miss means the escape is not this mode's linear growth
  (``within_every`` over modes, 95% bounds over seeds). ``reduced_step_times``: the same
  escape step against the population dynamics', same tolerance. ``rank_one_steps``: the
  count of ΔΣ_fx singular values above 10% of the final largest rises by one at a time,
  to the number of modes (``exact``). ``staircase``: the gap between consecutive modes'
  half-times over the earlier mode's 10–90% rise time is ≥ 1, i.e. the steps do not
  overlap (``above``, the smallest pair per seed).

Findings. Every activation learns in order of s, one rank-one feature per step, on a
staircase, at both scales. The linear escape times hold for the linear net (worst mode's
bound: quick 0.27, full 0.12 e-fold) but not for tanh — its later modes escape ≈ 1 e-fold
late at init 1e-3; the units saturated by mode 1 slow them — nor, at n = 512, for ReLU,
which escapes 0.4–0.8 e-fold early. The population dynamics account for both at quick
scale (bounds 0.58 ReLU, 0.73 tanh). ReLU's early escape is mostly a saturation the
map gets wrong — a unit's rise is braked half as hard as the map's once the even part
|h|/2 is counted, −0.5 e-fold at every n — and the rest the finite sample; tanh's delay
is the saturation of the units mode 1 made large. Full scale (init 1e-5, n = 32,768, 16
seeds): ReLU passes both
(the population dynamics to within 0.01 e-fold on modes 1–2, −0.31 ± 0.29 on mode 3);
tanh's modes 1–2 follow the population dynamics exactly (0.00 ± 0.02) but mode 3
escapes 4.6 ± 0.4 e-folds *early* (5.8 at n = 512), which no theory here predicts: its
init-driven strength is ~1e-10 when modes 1–2 are learned, so a small direct drive —
the sample's non-Gaussian moments, which also grow the units' weights outside the
planted subspace from exactly zero — plausibly sets its escape instead.

* negative controls — ``large-init`` (scale 1): the modes start near their targets, no
  saddle, the steps overlap; ``staircase`` and the linear escape (``step_times``) fail
  (the population dynamics still hold: 0.02–0.06 e-fold). ``few-samples`` (n = 12 in
  8 dimensions): far from Gaussian, the population dynamics miss by 3–9 e-folds;
  ``reduced_step_times`` fails for ReLU and tanh.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from learnmech.claims import Claims, Estimate
from learnmech.data.algorithmic import planted_singular_task
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import colors, save_png, subplots
from learnmech.stats import crossing_time
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.theory import deep_linear as dl
from learnmech.theory.planted import planted_subspace_dynamics

__all__ = ["SaddleToSaddle", "SaddleToSaddleConfig"]

ESCAPE = 1 / 8  # u_k = s_k/8: the escape is timed where every φ is still linear
RANK_THRESHOLD = 0.1  # a feature counts once its singular value is 10% of the final largest
PHI = {"linear": lambda z: z, "tanh": torch.tanh, "relu": torch.relu}
GAIN = {"linear": 1.0, "tanh": 1.0, "relu": 0.5}  # E[φ'] on the escape: the rate factor


class SaddleToSaddleConfig(StudyConfig):
    acts: list[Literal["linear", "tanh", "relu"]] = Sweep(
        ["linear", "tanh", "relu"], key="act", choices=("linear", "tanh", "relu")
    )
    singular_values: list[float] = Values([3.0, 1.5, 0.75], n=2, order="desc", gt=0, le=100)
    init_scale: float = Field(
        1e-3, gt=0, le=10, description="σ: entries N(0, σ²/fan_in) in both layers"
    )
    in_dim: int = Field(8, ge=2, le=1024)
    out_dim: int = Field(6, ge=2, le=1024)
    hidden: int = Field(16, ge=2, le=4096)
    samples: int = Field(512, ge=2, le=1_000_000)
    lr: float = Field(0.05, gt=0, le=1)
    steps: int = Field(600, ge=10, le=1_000_000)
    data_seed: int = Field(0, ge=0)


def _task(cfg: SaddleToSaddleConfig) -> Any:
    return planted_singular_task(
        cfg.samples, cfg.in_dim, cfg.out_dim, cfg.singular_values, seed=cfg.data_seed
    )


def _escape_times(s: np.ndarray, u0: np.ndarray, act: str, cfg: SaddleToSaddleConfig) -> Any:
    """Predicted first steps with u_k ≥ s_k/8 under the discrete map (NaN where u₀,eff is
    already there: no saddle to escape)."""
    g = GAIN[act]  # the weights follow the map with target g·s; u = g·b²
    out = np.full(s.size, np.nan)
    ok = u0 < ESCAPE * s / g  # (g ≥ 1/√8, so this is also below the target g·s)
    if ok.any():
        u = dl.mode_trajectory_discrete(g * s[ok], u0[ok], cfg.steps, cfg.lr, 2) * g
        st = np.arange(cfg.steps + 1)
        out[ok] = [crossing_time(st, u[:, j], ESCAPE * s[ok][j]) for j in range(ok.sum())]
    return out


def _crossings(u: np.ndarray, s: np.ndarray) -> np.ndarray:
    """First step at which each mode's strength u[:, k] reaches s_k/8 (NaN if never)."""
    st = np.arange(u.shape[0])
    return np.array([crossing_time(st, u[:, k], ESCAPE * s[k]) for k in range(s.size)])


class SaddleToSaddle(Study):
    name = "saddle-to-saddle"
    title = "Saddle-to-saddle: small-init two-layer nets learn planted modes one by one"
    summary = "linear, tanh and ReLU nets: step order, rank-one steps and escape times"
    pillar = "solvable settings"
    Config = SaddleToSaddleConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 5},
        "full": {"seeds": 16, "init_scale": 1e-5, "steps": 1000, "samples": 32768},
    }
    controls = (
        Control(
            "large-init",
            {"init_scale": 1.0, "acts": ["linear", "relu"]},
            ("*_staircase", "linear_step_times", "relu_step_times"),
            "at initialization scale 1 the modes start near their targets: no saddle, no "
            "plateaus, no escape for the small-init map to time",
        ),
        Control(
            "few-samples",
            {"samples": 12, "acts": ["relu", "tanh"]},
            ("relu_reduced_step_times", "tanh_reduced_step_times"),
            "12 samples in 8 dimensions are far from Gaussian: the population dynamics no "
            "longer describe the trained net",
        ),
    )

    def predict(self, cfg: SaddleToSaddleConfig) -> list[Curve]:
        s = np.array(cfg.singular_values)
        typical = cfg.init_scale**2 * (1 + cfg.hidden / cfg.in_dim) / 4  # E u₀,eff
        k = np.arange(s.size)
        return [
            Curve("escape_step", "mode", k, _escape_times(s, np.full(s.size, typical), a, cfg), a)
            for a in cfg.acts
        ]

    def measure(
        self, cfg: SaddleToSaddleConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        task, dev, f64 = _task(cfg), torch.device(device), torch.float64
        X, Y, U, V = (t.to(dev, f64) for t in (task.x, task.y, task.u, task.v))
        w1, w2 = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            w1.append(torch.randn(cfg.hidden, cfg.in_dim, generator=g, dtype=f64))
            w2.append(torch.randn(cfg.out_dim, cfg.hidden, generator=g, dtype=f64))
        W1 = (torch.stack(w1) * cfg.init_scale / math.sqrt(cfg.in_dim)).to(dev)
        W2 = (torch.stack(w2) * cfg.init_scale / math.sqrt(cfg.hidden)).to(dev)
        u0 = (((W2.transpose(1, 2) @ U + W1 @ V) / 2) ** 2).sum(1).cpu().numpy()
        traj = planted_subspace_dynamics(  # population dynamics in the planted subspace
            (W1 @ V).cpu().numpy(),
            (W2.transpose(1, 2) @ U).cpu().numpy(),
            cfg.singular_values,
            point["act"],
            cfg.lr,
            cfg.steps,
        )
        reduced = [_crossings(traj[:, i], np.array(cfg.singular_values)) for i in range(len(seeds))]
        W1.requires_grad_(True)
        W2.requires_grad_(True)
        opt, phi, n = torch.optim.SGD([W1, W2], lr=cfg.lr), PHI[point["act"]], cfg.samples
        us, losses, svs, sig0 = [], [], [], None
        for _ in range(cfg.steps + 1):
            f = phi(X @ W1.transpose(1, 2)) @ W2.transpose(1, 2)  # (S, n, out)
            loss = 0.5 * ((f - Y) ** 2).sum(2).mean(1)
            with torch.no_grad():
                sig = f.transpose(1, 2) @ X / n  # Σ_fx per member
                sig0 = sig.clone() if sig0 is None else sig0
                us.append(torch.einsum("ok,sod,dk->sk", U, sig, V).tolist())
                svs.append(torch.linalg.svdvals(sig - sig0).tolist())
                losses.append(loss.detach().tolist())
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        if not np.all(np.isfinite(losses)):
            raise FloatingPointError("training diverged")
        st = np.arange(cfg.steps + 1)
        u, sv, lo = np.array(us), np.array(svs), np.array(losses)
        return {
            seed: [Curve("loss", "step", st, lo[:, i])]
            + [
                Curve("mode_strength", "step", st, u[:, i, k], f"mode{k}")
                for k in range(u.shape[2])
            ]
            + [Curve("update_sv", "step", st, sv[:, i, j], f"sv{j}") for j in range(sv.shape[2])]
            + [Curve("u0_effective", "mode", np.arange(u0.shape[1]), u0[i])]
            + [Curve("reduced_escape", "mode", np.arange(u0.shape[1]), reduced[i])]
            for i, seed in enumerate(seeds)
        }

    def analyze(self, cfg: SaddleToSaddleConfig, theory: list[Curve], trials: Trials) -> Any:
        s, out = np.array(cfg.singular_values), {}
        for act, ts in trials.by("act").items():
            rows = []
            for t in sorted(ts.ok, key=lambda t: t.seed):
                st = t.curve("loss").coords
                u = np.stack(
                    [t.curve("mode_strength", f"mode{k}").values for k in range(s.size)], 1
                )
                sv = np.stack([c.values for c in t.curves if c.observable == "update_sv"], 1)
                u0 = t.curve("u0_effective").values
                meas = _crossings(u, s)
                efold = 1 / (2 * GAIN[act] * cfg.lr * s)
                half = [crossing_time(st, u[:, k], s[k] / 2) for k in range(s.size)]
                sharp = [
                    dl.staircase_sharpness(st, u[:, k : k + 2], s[k : k + 2])
                    for k in range(s.size - 1)
                ]
                count = (sv > RANK_THRESHOLD * sv[-1, 0]).sum(1)
                rows.append(
                    {
                        "steps": st,
                        "u": u,
                        "loss": t.curve("loss").values,
                        "err": (meas - _escape_times(s, u0, act, cfg)) / efold,
                        "reduced": t.curve("reduced_escape").values,
                        "reduced_err": (meas - t.curve("reduced_escape").values) / efold,
                        "in_order": bool(np.all(np.diff(half) > 0)),
                        "rank_one": bool(np.all(np.diff(count) <= 1) and count[-1] == s.size),
                        "sharpness": float(np.min(sharp)),
                        "u0": u0,
                    }
                )
            out[act] = rows
        return out

    def claims(self, cfg: SaddleToSaddleConfig, s: dict[str, Any]) -> list[Metric]:
        out = Claims()
        for act, rows in s.items():
            err = np.array([r["err"] for r in rows]).reshape(len(rows), -1)
            red = np.array([r["reduced_err"] for r in rows]).reshape(len(rows), -1)
            out.exact(
                f"{act}_order",
                sum(not r["in_order"] for r in rows),
                0,
                description="seeds whose modes are not learned in decreasing s (half-times)",
            )
            out.within_every(
                f"{act}_step_times",
                [(f"mode{k}", Estimate.of(err[:, k]), 0.0, 1.0) for k in range(err.shape[1])],
                description="escape step (u_k = s_k/8) minus the discrete map's from "
                "u₀,eff, in e-folding times of the mode",
            )
            out.within_every(
                f"{act}_reduced_step_times",
                [(f"mode{k}", Estimate.of(red[:, k]), 0.0, 1.0) for k in range(red.shape[1])],
                description="escape step minus the population dynamics' in the planted "
                "subspace (theory.planted), from this seed's init, in e-folding times",
            )
            out.exact(
                f"{act}_rank_one_steps",
                sum(not r["rank_one"] for r in rows),
                0,
                description="seeds where the rank of ΔΣ_fx (singular values above 10% of "
                "the final largest) jumps by more than one or ends below the mode count",
            )
            out.above(
                f"{act}_staircase",
                Estimate.of([r["sharpness"] for r in rows]),
                1.0,
                description="gap between consecutive half-times over the earlier mode's "
                "10–90% rise (smallest pair per seed); ≥ 1: the steps do not overlap",
            )
        return out

    def figures(self, cfg: SaddleToSaddleConfig, s: dict[str, Any], outdir: Path) -> list[Figure]:
        sv = np.array(cfg.singular_values)
        fig, axes = subplots(1, len(s) + 1, figsize=(3.4 * (len(s) + 1), 3.2))
        col = colors(sv.size)
        for ax, (act, rows) in zip(axes, s.items(), strict=False):
            r = rows[0]
            for k in range(sv.size):
                ax.plot(r["steps"], r["u"][:, k] / sv[k], color=col[k], label=f"s = {sv[k]:g}")
                th = _escape_times(sv, r["u0"], act, cfg)[k]
                if math.isfinite(th):
                    ax.axvline(th, color=col[k], ls=":", lw=1)
                if math.isfinite(r["reduced"][k]):
                    ax.axvline(r["reduced"][k], color=col[k], ls="--", lw=0.8)
            ax.axhline(ESCAPE, color="grey", lw=0.5)
            ax.set(xlabel="step", ylabel="u_k / s_k", title=f"{act} (first seed)")
            axes[-1].plot(r["steps"], r["loss"], label=act)
        axes[0].legend(fontsize=7)
        axes[-1].set(yscale="log", xlabel="step", ylabel="loss", title="the staircase")
        axes[-1].set_ylim(bottom=1e-4)  # the linear net's loss goes on to round-off
        axes[-1].legend(fontsize=7)
        caption = (
            "Mode strengths u_k/s_k of one seed per activation, with the predicted escape "
            "steps (u_k = s_k/8, grey line) from its own initialization: dotted, the linear "
            "escape (deep-linear map); dashed, the population dynamics in the planted "
            "subspace. Right: the loss."
        )
        return [Figure(save_png(fig, outdir / "saddle-to-saddle.png"), caption)]
