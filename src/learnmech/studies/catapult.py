"""Study ``catapult``: the lazy, catapult and divergent phases of large-learning-rate GD.

Claim under test (Lewkowycz et al. 2020, "The large learning rate phase of deep learning:
the catapult mechanism", §2; :mod:`learnmech.theory.catapult`): for a wide two-layer
linear network f(x) = vᵀUx/√n trained by gradient descent on ½Σ(f − y)², the NTK at
initialization λ₀ alone decides the phase — lazy for η < 2/λ₀, catapult (the loss rises,
then falls, and the run ends where the NTK is below 2/η) for 2/λ₀ < η < 4/λ₀, divergent
above 4/λ₀ — and the catapult's loss peak is where the residual reaches g² ~ n, so its
height grows in proportion to the width.

* predict — the phase of every (width, η λ₀) cell from the boundaries 2 and 4.
* measure — U, v with N(0, 1) entries, one unit-norm example x ∈ R^8 with y = 1 (the
  model of §2, whose GD is exactly eq. (1) of the theory module; a test checks that to
  round-off), full-batch GD for ``steps`` steps at η = ratio/λ₀ with each seed's own
  λ₀ = the top eigenvalue of JJᵀ (J the Jacobian of the outputs). The loss curve, and
  the NTK's top eigenvalue at the end.
* claims (tolerances a priori) — ``phases``: every run's phase, read from its loss curve
  (:func:`learnmech.theory.catapult.classify_run`), is the predicted one (``exact``; the
  default grid keeps η λ₀ at least 0.5 from either boundary). ``catapult_flattens``:
  every catapult run ends with η·λ_final < 2 (``exact``). ``peak_loss_exponent``: per
  seed and catapult learning rate, the slope of ln(peak loss) against ln n is 1 to within
  0.25 (separating ∝ n from √n or n²); ``within_every`` over the learning rates.
  ``lazy_kernel_drift`` (reported): the lazy runs' |λ_final/λ₀ − 1|, O(1/n).
* negative control ``readout-kernel`` — the same runs with η set from the top eigenvalue
  of the readout layer's kernel alone (|Ux|²/n, about half the NTK): a misspecified λ₀
  puts the boundaries in the wrong place, and ``phases`` fails.

Findings: quick (3 seeds, widths 256–4,096) and full (8 seeds, to 16,384) pass: every
run is in its predicted phase (0 of 63, 0 of 352 wrong); the catapult ends at η·λ =
0.2–1.3; the peak-loss slope is 0.97–1.005 ± 0.01–0.02 per learning rate at full scale
(quick: the worst bound at 0.74 of the band — the smallest width is still far from
the large-width limit). Not scored: with several examples the upper boundary is not
sharp at finite width, and ReLU networks' upper boundary (≈ 12/λ₀ in the paper).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from learnmech.claims import Claims, Estimate, fit_slope
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import colors, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.theory.catapult import PHASES, classify_run, predicted_phase

__all__ = ["Catapult", "CatapultConfig"]

EXPONENT_TOL = 0.25


class CatapultConfig(StudyConfig):
    widths: list[int] = Sweep([256, 1024, 4096], key="width", n=2, ge=2, le=1_000_000)
    lr_ratios: list[float] = Values(
        [0.5, 1.5, 2.5, 3.0, 3.5, 4.5, 6.0], gt=0, le=100, description="η·λ₀ per run"
    )
    act: Literal["linear", "relu"] = "linear"
    samples: int = Field(1, ge=1, le=4096, description="training examples")
    dim: int = Field(8, ge=1, le=4096)
    steps: int = Field(300, ge=2, le=1_000_000)
    data_seed: int = Field(0, ge=0)
    kernel: Literal["ntk", "readout"] = Field(
        "ntk",
        description="whose top eigenvalue λ₀ sets η: the NTK, or (a misspecified "
        "prediction, for the negative control) the readout layer's kernel alone",
    )


def _data(cfg: CatapultConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.data_seed)
    x = torch.randn(cfg.samples, cfg.dim, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)  # unit-norm examples, as in §2
    if cfg.samples == 1:
        return x, torch.ones(1, dtype=torch.float64)
    w = torch.randn(cfg.dim, generator=g, dtype=torch.float64)
    return x, x @ w / w.norm()


def _top_ntk(f: Any, params: list[torch.Tensor], m: int) -> float:
    rows = []
    for i in range(m):
        grads = torch.autograd.grad(f()[i], params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    return float(torch.linalg.eigvalsh(jac @ jac.T)[-1])


class Catapult(Study):
    name = "catapult"
    title = "Catapult: λ₀ at initialization predicts the lazy, catapult and divergent phases"
    summary = "two-layer linear nets: phases at 2/λ₀ and 4/λ₀, final NTK below 2/η, peak ∝ n"
    pillar = "solvable settings"
    Config = CatapultConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {
            "seeds": 8,
            "widths": [256, 1024, 4096, 16384],
            "lr_ratios": [0.5, 1.0, 1.5, 2.5, 2.75, 3.0, 3.25, 3.5, 4.5, 5.0, 6.0],
        },
    }
    controls = (
        Control(
            "readout-kernel",
            {"kernel": "readout"},
            ("phases",),
            "η set from the readout layer's kernel (about half the NTK): the boundaries "
            "it implies are wrong, and the runs land in other phases than predicted",
        ),
    )

    def predict(self, cfg: CatapultConfig) -> list[Curve]:
        r = np.array(cfg.lr_ratios)
        code = [PHASES.index(predicted_phase(x, 1.0)) for x in r]
        return [Curve("phase", "lr_ratio", r, np.array(code, dtype=float))]

    def measure(
        self, cfg: CatapultConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        n, dev = point["width"], torch.device(device)
        x, y = (t.to(dev) for t in _data(cfg))
        phi = torch.relu if cfg.act == "relu" else (lambda z: z)
        out: dict[int, list[Curve]] = {}
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            U0 = torch.randn(n, cfg.dim, generator=g, dtype=torch.float64).to(dev)
            v0 = torch.randn(n, generator=g, dtype=torch.float64).to(dev)
            curves = []
            for ratio in cfg.lr_ratios:
                U, v = U0.clone().requires_grad_(True), v0.clone().requires_grad_(True)

                def f(U: torch.Tensor = U, v: torch.Tensor = v) -> torch.Tensor:
                    return phi(x @ U.T) @ v / math.sqrt(n)

                lam0 = _top_ntk(f, [U, v], cfg.samples)
                lam_eta = lam0 if cfg.kernel == "ntk" else _top_ntk(f, [v], cfg.samples)
                eta, losses = ratio / lam_eta, []
                for _ in range(cfg.steps + 1):
                    loss = 0.5 * ((f() - y) ** 2).sum()
                    losses.append(loss.item())
                    if not math.isfinite(losses[-1]) or losses[-1] > 1e12:
                        break  # diverged: classify_run reads the blow-up
                    gu, gv = torch.autograd.grad(loss, [U, v])
                    with torch.no_grad():
                        U -= eta * gu
                        v -= eta * gv
                ok = math.isfinite(losses[-1]) and losses[-1] <= 1e12
                # stored values must be finite: a blown-up run keeps its finite prefix
                # (which ends far above where it began) and no final NTK
                loss = np.array([v for v in losses if math.isfinite(v)])
                # [λ₀ of the kernel that set η, λ₀ of the NTK, final NTK]
                ntk = [lam_eta, lam0] + ([_top_ntk(f, [U, v], cfg.samples)] if ok else [])
                tag = f"r{ratio:g}"
                curves += [
                    Curve("loss", "step", np.arange(loss.size), loss, tag),
                    Curve("ntk", "when", np.arange(len(ntk)), np.array(ntk), tag),
                ]
            out[s] = curves
        return out

    def analyze(self, cfg: CatapultConfig, theory: list[Curve], trials: Trials) -> Any:
        rows = []
        for t in trials.ok:
            for r in cfg.lr_ratios:
                loss = t.curve("loss", f"r{r:g}").values
                ntk = t.curve("ntk", f"r{r:g}").values
                lam_eta, lam_f = ntk[0], (ntk[2] if ntk.size > 2 else math.nan)
                rows.append(
                    {
                        "width": t.point["width"],
                        "seed": t.seed,
                        "ratio": r,
                        "loss": loss,
                        "predicted": predicted_phase(r, 1.0),
                        "measured": classify_run(loss),
                        "eta_lam_final": r * lam_f / lam_eta,  # η = r/λ₀
                        "peak": float(np.max(loss)) if np.all(np.isfinite(loss)) else math.nan,
                    }
                )
        return rows

    def claims(self, cfg: CatapultConfig, rows: list[dict]) -> list[Metric]:
        out = Claims()
        out.exact(
            "phases",
            sum(r["measured"] != r["predicted"] for r in rows) if rows else 1,
            0,
            description="runs whose phase (read from the loss curve) is not the one "
            "η·λ₀ predicts: lazy < 2 < catapult < 4 < divergent",
        )
        cat = [r for r in rows if r["measured"] == "catapult"]
        out.exact(
            "catapult_flattens",
            sum(not r["eta_lam_final"] < 2 for r in cat) if cat else 1,
            0,
            description="catapult runs that end with η·λ_final ≥ 2 (not in a flatter minimum)",
        )
        cells = []
        for ratio in sorted({r["ratio"] for r in rows if r["predicted"] == "catapult"}):
            slopes = []
            for seed in sorted({r["seed"] for r in rows}):
                rs = sorted(
                    (r["width"], r["peak"])
                    for r in rows
                    if r["ratio"] == ratio and r["seed"] == seed
                )
                slopes.append(fit_slope([w for w, _ in rs], [p for _, p in rs]).exponent.value)
            cells.append((f"ηλ₀={ratio:g}", Estimate.of(slopes), 1.0, EXPONENT_TOL))
        out.within_every(
            "peak_loss_exponent",
            cells,
            description="per-seed slope of ln(peak loss) against ln n in the catapult phase; "
            "predicted 1 (the turn comes at g² ~ n)",
        )
        lazy = [abs(r["eta_lam_final"] / r["ratio"] - 1) for r in rows if r["measured"] == "lazy"]
        out.reported(
            "lazy_kernel_drift",
            Estimate.of(lazy),
            description="|λ_final/λ₀ − 1| of the lazy runs (O(1/n))",
        )
        return out

    def figures(self, cfg: CatapultConfig, rows: list[dict], outdir: Path) -> list[Figure]:
        if not rows:
            return []
        fig, ax = subplots(1, 2, figsize=(9, 3.3))
        wide = max(r["width"] for r in rows)
        rs = [r for r in rows if r["width"] == wide and r["seed"] == rows[0]["seed"]]
        for c, r in zip(colors(len(rs)), rs, strict=True):
            loss = np.where(np.isfinite(r["loss"]), r["loss"], np.nan)
            ax[0].plot(
                loss[:60] / loss[0], color=c, label=f"ηλ₀ = {r['ratio']:g} ({r['measured']})"
            )
        ax[0].set(yscale="log", xlabel="step", ylabel="loss / initial loss", title=f"width {wide}")
        ax[0].set_ylim(1e-6, 1e6)
        ax[0].legend(fontsize=6)
        for c, ratio in zip(colors(len(cfg.lr_ratios)), cfg.lr_ratios, strict=True):
            fin = [r for r in rows if r["ratio"] == ratio and np.isfinite(r["eta_lam_final"])]
            if fin:
                ax[1].plot([ratio] * len(fin), [r["eta_lam_final"] for r in fin], "o", color=c)
        grid = np.linspace(0, max(cfg.lr_ratios), 50)
        ax[1].plot(grid, grid, "k:", lw=0.8, label="λ unchanged")
        ax[1].axhline(2, color="grey", ls="--", lw=0.8, label="η·λ = 2")
        for b in (2, 4):
            ax[1].axvline(b, color="grey", lw=0.5)
        ax[1].set(xlabel="η·λ₀", ylabel="η·λ_final", title="the catapult ends below 2/η")
        ax[1].legend(fontsize=7)
        caption = (
            "Left: loss curves of one seed at the widest net, one per learning rate (phase "
            "read from the curve). Right: η times the final NTK against η·λ₀, every run that "
            "converged; the vertical lines are the predicted phase boundaries."
        )
        return [Figure(save_png(fig, outdir / "catapult.png"), caption)]
