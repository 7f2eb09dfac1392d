"""Study ``edge-of-stability``: sharpness rises to the optimizer's stability threshold and stays.

Claim under test (Cohen, Kaur, Li, Kolter & Talwalkar 2021; Cohen et al. 2022 for Adam;
REFERENCES §3): under full-batch GD with step η the top Hessian eigenvalue (largest
algebraic) rises during training — progressive sharpening — until it reaches 2/η, then
hovers there while the loss keeps falling non-monotonically. For Adam the preconditioned
sharpness λ_max(P⁻¹H) does the same at (2 + 2β₁)/((1 − β₁)η) = 38/η, for RMSProp (no
momentum) λ_max(D⁻¹H) at 2/η.

* predict — the ratio sharpness/threshold rises to 1 and, averaged over the rest of
  training, stays within the band Cohen et al. report ("at, or just above": we score
  [0.95, 1.15]); the loss goes up on a non-zero fraction of steps once there, never before.
* measure — tanh MLPs (depth 2) and, at full scale, a small tanh CNN (two 3×3
  convolutions) on 300 digits images, MSE on one-hot targets, full-batch GD at several η,
  Adam, and RMSProp (β₂ = 0.99, ε = 1e-8, its square average started at ∇L(w₀)² as the
  flow's ν₀ is, not at torch's zeros). Finding: the CNN at η = 0.2 and 0.3 does not
  self-stabilise — full-batch GD diverges within 3,000 steps — so its step sizes stop at
  0.1 (``cnn_gd_lrs``);
  :class:`~learnmech.measure.hessian.SharpnessProbe` every ``probe_every`` steps (Lanczos
  to 1e-3, warm-started), its time share recorded.

Finding: the probe costs more than the training it watches here (``probe_time_share``
≈ 2.3 at quick scale, against the issue's goal of 0.3): each reading needs ~14–21
Hessian-vector products for a 1e-3 residual, and a full-batch step of this small network
costs about one product. ``benchmarks/bench_sharpness_probe.py`` measures the whole
accuracy/cost frontier; no setting with a useful accuracy reaches 30%.

Claims, for each optimizer and η (95% bounds over seeds):

* every seed reaches 0.95 of the threshold (``exact``, progressive sharpening);
* the mean ratio after reaching it lies in [0.95, 1.15], i.e. within 0.10 of 1.05
  (``within``: the whole confidence interval inside the band);
* before the threshold the loss falls on (almost) every step — GD with η < 2/λ descends
  (the descent lemma) — at most 1% of steps rise (``below``); after it the loss rises on
  a positive fraction of steps (``above`` 0).

Reported: time to the threshold, the probe's cost.

Predicted curves — the central flow (Cohen, Damian, Talwalkar, Kolter & Lee 2025;
:mod:`learnmech.theory.central_flow`): for the GD step sizes in ``flow_lrs``, the ODE of
GD's time-averaged trajectory is integrated from each seed's own initialisation (float64),
with the plain gradient flow beside it. At the records where GD has reached the threshold
and the central flow holds S = 2/η:

* ``flow_loss`` — the median |L̄_GD − L̄| (GD's loss averaged over ±``probe_every`` steps
  against the flow's predicted time-averaged loss, eq. 3 of the module) is below the
  central flow's own oscillation term Δ = Σ x_i S_i/2, the loss the oscillation adds: the
  prediction misses by less than what it averages out (tolerance 1 Δ, a unit derived from
  the oscillation amplitude, not from the data judged);
* ``flow_sharpness`` — the median |S_GD − S|/S is below 0.10, the half-width of the "at,
  or just above" band;
* ``flow_closer`` — at the last step GD's parameters are nearer the scored flow than the
  other one (log distance ratio above 0 over seeds).

Finding (quick scale, η = 0.4, 3 seeds): the central flow holds the sharpness where GD
keeps it (median error 0.045) and ends 8× nearer GD's parameters than the gradient flow,
but GD's time-averaged loss sits above the flow's L̄ by 1.11 ± 0.05 Δ — GD's oscillation
carries about twice the loss the flow assigns to it (GD's sharpness averages ≈ 1.05·2/η,
not 2/η, and it moves in bursts). The gradient flow misses by 2.8 Δ. The same error with
the flow integrated far more finely (Lanczos to 1e-6 every substep, h = ¼) is 0.86 Δ over
the first 500 steps, so it is not the integrator's. ``flow_loss`` is kept failing. The
flow holds one direction (k = 1); fresh Lanczos readings along it reach 1.049 ± 0.004·2/η
(``flow_untracked_overshoot``): a second eigenvalue crosses between refreshes, by a little.

Full scale (4 seeds, 3,000 steps, η = 0.2, 0.4, 0.8, 1.2; 48 min with the flows): every
flow claim passes. ``flow_loss`` is 0.69, 0.82, 0.87 and 0.73 Δ (the gradient flow's 1.30,
2.44, 2.50, 2.25 Δ), ``flow_sharpness`` 0.009–0.043, and GD ends 1.6–9× nearer the central
flow. The quick scale's miss is an early-training effect (800 steps, dominated by the
spike at the onset of the edge).

RMSProp arm (:mod:`learnmech.theory.rmsprop_flow`, the paper's §5): every RMSProp run gets
RMSProp's central flow, which carries ν with w, and its *stable flow* (X = 0, the ODE
RMSProp would follow if it never oscillated), scored by the same three claims with the
preconditioned sharpness. Finding (quick scale, η = 3e-4, 3 seeds): the preconditioned
sharpness rises to 2/η by step ≈ 330 and averages 1.09·2/η there; the central flow holds
it (``flow_sharpness`` 0.068). The stable flow's ν decays with the gradient, so that its
sharpness grows without bound; it is stopped once it passes ``stop_ratio`` = 10·2/η (step
≈ 660; its Euler substeps 1/(ηS) would otherwise make it the study's costliest part), and
there RMSProp is 4.5× nearer the central flow than the stable flow. RMSProp's
time-averaged loss sits above the flow's L̄ by 2.9 ± 0.2 Δ — Δ is small here, and the
miss is 1.4% of the loss; the stable flow misses by 21 Δ. ``flow_loss`` is kept failing.
The loss rises on only 3.9 ± 1.4% of RMSProp's steps at its edge (GD's: 38%); with 3
seeds the bound of ``loss_increase_fraction_after`` sits on 0 (power). Both flows start
at 1.77·2/η (ν₀ = g₀² makes the first steps sign-like), which ``flow_start_ratio``
reports; ``flow_untracked_overshoot`` counts fresh readings after the start only. At
full scale (4 seeds, 3,000 steps; the arm run alone, 4.5 min) the loss rises on 36% of
the steps at the edge and every threshold claim passes; ``flow_sharpness`` is 0.068 and
RMSProp ends 8× nearer the central flow than the stable flow, which is stopped once its
sharpness passes 100·2/η (near step 1,040, where the distances are compared); the loss
still misses, by 1.75 ± 0.10 Δ (11% of the loss).

Negative control ``gradient-flow``: the flows without oscillation scored as the
prediction — GD's gradient flow, RMSProp's stable flow. They do not stop at 2/η (GD's
gradient flow reaches ≈ 2.3·2/η by step 800) and drift away from the runs, so
``flow_sharpness`` and ``flow_closer`` must fail for both optimizers.

Negative control ``minibatch``: SGD with batches of 16 of the 300 images at η = 0.4.
Minibatch noise keeps the sharpness well below 2/η (Jastrzębski et al. 2020; Cohen et al.
2021, §5): the threshold claims must fail.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from learnmech.claims import Claims, Estimate
from learnmech.data.real import digits_subset
from learnmech.measure.hessian import SharpnessProbe
from learnmech.records import Curve, Figure, Metric, TrialResult
from learnmech.report.plots import save_png, subplots
from learnmech.studies.base import Analysis, Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.theory.central_flow import central_flow
from learnmech.theory.rmsprop_flow import matching_rmsprop, rmsprop_central_flow
from learnmech.train.recorder import Recorder

__all__ = ["EdgeOfStability", "EdgeOfStabilityConfig"]

BAND = (0.95, 1.15)  # "at, or just above" the threshold (Cohen et al. 2021, §3)
REACHED = 0.95
MONOTONE = 0.01  # at most 1% of steps may raise the loss before the threshold
FLOW_SHARPNESS = (BAND[1] - BAND[0]) / 2  # 0.10
BETA2, EPS = 0.99, 1e-8  # RMSProp's β₂ (torch's ``alpha``) and ε: torch's defaults
NAMES = {"gd": "GD", "adam": "Adam", "rmsprop": "RMSProp"}
STILL = {"gd": "gradient", "rmsprop": "stable"}  # each optimizer's flow without oscillation


def _model(kind: str, width: int) -> nn.Module:
    """Depth-2 tanh MLP, or a small tanh CNN on the 8×8 images (two 3×3 convolutions with
    ``width // 4`` channels, then a linear readout)."""
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(64, width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, 10),
        )
    c = max(width // 4, 1)
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, c, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(c, c, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(c * 64, 10),
    )


def _mse(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """½·mean over examples of ‖z − t‖² (MSE on one-hot targets)."""
    return 0.5 * ((z - t) ** 2).sum(1).mean()


def _flat(model: nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().double().cpu().numpy()


def _optimizer(
    name: str, model: nn.Module, lr: float, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.optim.Optimizer:
    """SGD, Adam, or RMSProp started from its central flow's state
    (:func:`~learnmech.theory.rmsprop_flow.matching_rmsprop`)."""
    if name == "gd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return matching_rmsprop(model, _mse, batch, lr, beta2=BETA2, eps=EPS)


class EdgeOfStabilityConfig(StudyConfig):
    models: list[str] = Sweep(["mlp"], key="model", order=None, choices=("mlp", "cnn"))
    cnn_gd_lrs: list[float] = Sweep(
        [0.05, 0.1],
        key="lr",
        n=0,
        gt=0,
        le=100,
        description="GD step sizes for the CNN (its sharpness is higher; at 0.2 and 0.3 "
        "full-batch GD diverged within 3,000 steps instead of self-stabilising)",
    )
    gd_lrs: list[float] = Sweep([0.4, 0.8], key="lr", n=0, gt=0, le=100)
    flow_lrs: list[float] = Values(
        [0.4],
        n=0,
        gt=0,
        le=100,
        description="GD step sizes (MLP) whose runs get the central-flow and gradient-flow "
        "predictions, integrated from each seed's initialisation",
    )
    flow: Literal["central", "gradient"] = Analysis(
        "central",
        description="the flow scored as the prediction; the other is the comparison "
        "('gradient': the flow without oscillation — GD's gradient flow, RMSProp's stable "
        "flow — is the negative control)",
    )
    flow_k: Annotated[int, Field(ge=1, le=8)] | Literal["auto"] = Field(
        1,
        description="eigenvectors the central flow tracks ('auto': one more whenever the "
        "next eigenvalue reaches 2/η, up to 4)",
    )
    adam_lrs: list[float] = Sweep([2e-3], key="lr", n=0, gt=0, le=100)
    rmsprop_lrs: list[float] = Sweep(
        [3e-4],
        key="lr",
        n=0,
        gt=0,
        le=100,
        description="RMSProp step sizes (MLP; β₂ = 0.99, ε = 1e-8, square average started "
        "at ∇L(w₀)²): each run gets RMSProp's central and stable flows",
    )
    stop_ratio: float = Field(
        10.0,
        gt=1,
        le=1e6,
        description="the flows without oscillation stop once their sharpness passes this "
        "multiple of 2/η (their Euler substep 1/(ηS) shrinks as they sharpen)",
    )
    steps: int = Field(800, ge=20, le=1_000_000)
    batch: int = Field(0, ge=0, le=100_000, description="minibatch size (0: full batch)")
    probe_every: int = Field(10, ge=1, le=10_000)
    samples: int = Field(300, ge=20, le=1797)
    width: int = Field(64, ge=4, le=4096)
    data_seed: int = Field(0, ge=0)


class EdgeOfStability(Study):
    name = "edge-of-stability"
    title = "Edge of stability: sharpness rises to 2/η (38/η for Adam) and hovers there"
    summary = (
        "full-batch GD, Adam and RMSProp on digits: λ_max vs the stability threshold, and "
        "the central flows' predicted loss and sharpness"
    )
    pillar = "empirical laws"
    Config = EdgeOfStabilityConfig
    controls = (
        Control(
            "gradient-flow",
            {"flow": "gradient"},
            (
                "gd_lr0.4_flow_sharpness",
                "gd_lr0.4_flow_closer",
                "rmsprop_lr0.0003_flow_sharpness",
                "rmsprop_lr0.0003_flow_closer",
            ),
            "the flows without oscillation as the prediction (GD's gradient flow, RMSProp's "
            "stable flow): they sharpen past 2/η and leave the runs",
        ),
        Control(
            "minibatch",
            {"batch": 16, "gd_lrs": [0.4], "adam_lrs": [], "rmsprop_lrs": [], "flow_lrs": []},
            ("gd_lr0.4_seeds_not_reaching_threshold", "gd_lr0.4_plateau_ratio"),
            "minibatch SGD (16 of 300): noise keeps the sharpness well below 2/η",
        ),
    )
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {
            "models": ["mlp", "cnn"],
            "seeds": 4,
            "steps": 3000,
            "gd_lrs": [0.2, 0.4, 0.8, 1.2],
            "flow_lrs": [0.2, 0.4, 0.8, 1.2],
            "adam_lrs": [5e-4, 1e-3],
            "stop_ratio": 100.0,
        },
    }

    def grid(self, cfg: EdgeOfStabilityConfig) -> list[dict[str, Any]]:
        pts = []
        for m in cfg.models:
            lrs = cfg.gd_lrs if m == "mlp" else cfg.cnn_gd_lrs
            pts += [{"model": m, "optimizer": "gd", "lr": lr} for lr in lrs]
            pts += [{"model": m, "optimizer": "adam", "lr": lr} for lr in cfg.adam_lrs]
            if m == "mlp":
                pts += [{"model": m, "optimizer": "rmsprop", "lr": lr} for lr in cfg.rmsprop_lrs]
        return pts

    def predict(self, cfg: EdgeOfStabilityConfig) -> list[Curve]:
        lrs = np.array(cfg.gd_lrs + cfg.adam_lrs + cfg.rmsprop_lrs, dtype=np.float64)
        return [Curve("plateau_ratio", "lr", lrs, np.ones_like(lrs))]

    def measure(
        self, cfg: EdgeOfStabilityConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        X, lab = (t.to(device) for t in digits_subset(cfg.samples, cfg.data_seed))
        T = nn.functional.one_hot(lab, 10).float()

        out: dict[int, list[Curve]] = {}
        for seed in seeds:
            torch.manual_seed(seed)
            model = _model(point.get("model", "mlp"), cfg.width).to(device)
            gen = torch.Generator().manual_seed(seed)
            lr, name = float(point["lr"]), point["optimizer"]
            opt = _optimizer(name, model, lr, (X, T))
            probe = SharpnessProbe(_mse, (X, T), opt, every=cfg.probe_every, tol=1e-3)
            losses: list[float] = []
            t_train = t_probe = 0.0
            flows = point.get("model", "mlp") == "mlp" and (
                name == "rmsprop" or (name == "gd" and lr in cfg.flow_lrs)
            )
            init = copy.deepcopy(model)
            ws = [_flat(model)] if flows else []
            with Recorder(model, [probe], every=1) as rec:
                for step in range(1, cfg.steps + 1):
                    t0 = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    if cfg.batch and cfg.batch < X.shape[0]:
                        b = torch.randint(0, X.shape[0], (cfg.batch,), generator=gen)
                        _mse(model(X[b.to(device)]), T[b.to(device)]).backward()
                        with torch.no_grad():
                            loss = _mse(model(X), T)
                    else:
                        loss = _mse(model(X), T)
                        loss.backward()
                    opt.step()
                    t1 = time.perf_counter()
                    losses.append(float(loss.detach()))
                    if flows and step % cfg.probe_every == 0:
                        ws.append(_flat(model))
                    rec.step(step)
                    t_train += t1 - t0
                    t_probe += time.perf_counter() - t1
            if not all(math.isfinite(v) for v in losses):
                raise FloatingPointError(f"training diverged at lr = {lr}")
            st, ratio = rec.series("sharpness_ratio")
            out[seed] = [
                Curve("sharpness_ratio", "step", st, ratio),
                Curve("loss", "step", np.arange(1, cfg.steps + 1), losses),
                Curve("probe_time_share", "step", [cfg.steps], [t_probe / t_train]),
            ]
            if flows:
                out[seed] += self._flows(cfg, init, (X, T), name, lr, np.stack(ws), t_train)
        return out

    @staticmethod
    def _flows(
        cfg: EdgeOfStabilityConfig,
        init: nn.Module,
        batch: tuple[torch.Tensor, torch.Tensor],
        optimizer: str,
        lr: float,
        ws: np.ndarray,
        t_train: float,
    ) -> list[Curve]:
        """The central flow and the flow without oscillation (GD's gradient flow,
        RMSProp's stable flow) from this seed's initialisation (float64), recorded where
        the run's parameters were (every ``probe_every`` steps)."""

        x, t = (b.double() for b in batch)
        out = []
        for kind in ("central", STILL[optimizer]):
            t0 = time.perf_counter()
            opts: dict[str, Any] = {
                "kind": kind,
                "k": cfg.flow_k,
                "refresh": 8,
                "record_every": cfg.probe_every,
                "keep_params": True,
                "stop_ratio": cfg.stop_ratio,
            }
            with warnings.catch_warnings():  # the overshoot is recorded and reported instead
                warnings.filterwarnings("ignore", "central flow: at step", RuntimeWarning)
                warnings.filterwarnings("ignore", f"the {kind} flow stopped", RuntimeWarning)
                if optimizer == "gd":
                    f = central_flow(init.double(), _mse, (x, t), lr, cfg.steps, **opts)
                else:
                    f = rmsprop_central_flow(
                        init.double(), _mse, (x, t), lr, cfg.steps, beta2=BETA2, eps=EPS, **opts
                    )
            assert f.params is not None
            n = min(len(f.steps), len(ws))
            dist = np.linalg.norm(f.params[:n] - ws[:n], axis=1)
            out += [
                Curve(f"{kind}_mean_loss", "step", f.steps, f.mean_loss),
                Curve(f"{kind}_loss", "step", f.steps, f.loss),
                Curve(f"{kind}_sharpness", "step", f.steps, f.sharpness),
                Curve(f"{kind}_distance", "step", f.steps[:n], dist),
                Curve(
                    f"{kind}_time_share",
                    "step",
                    [cfg.steps],
                    [(time.perf_counter() - t0) / t_train],
                ),
                Curve(f"{kind}_overshoot", "step", [cfg.steps], [f.overshoot]),
            ]
            if f.stopped is not None:  # past stop_ratio·2/η: reported
                out.append(Curve(f"{kind}_stopped", "step", [cfg.steps], [f.stopped]))
        move = np.linalg.norm(ws - ws[0], axis=1)
        out.append(Curve("gd_movement", "step", np.arange(len(ws)) * cfg.probe_every, move))
        return out

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _summary(t: TrialResult) -> dict[str, float] | None:
        r, lo = t.curve("sharpness_ratio"), t.curve("loss")
        if r is None or lo is None:
            return None
        hit = np.flatnonzero(r.values >= REACHED)
        inc = np.diff(lo.values) > 0
        if hit.size == 0:
            return {"reached": 0.0, "increase_before": float(inc.mean())}
        t_hit = float(r.coords[hit[0]])
        after = r.values[hit[0] :]
        k = int(t_hit)
        return {
            "reached": 1.0,
            "time_to_threshold": t_hit,
            "plateau_ratio": float(after.mean()),
            "plateau_sd": float(after.std()),
            "increase_before": float(inc[: max(k - 1, 0)].mean()) if k > 1 else 0.0,
            "increase_after": float(inc[k - 1 :].mean()) if k - 1 < inc.size else 0.0,
        }

    @staticmethod
    def _flow_summary(t: TrialResult, pred: str, alt: str, window: int) -> dict[str, float] | None:
        """Errors of the ``pred`` flow (and the ``alt`` one) against this run, over the
        records at the edge: the run has reached 0.95·2/η and the central flow is holding
        its sharpness at 2/η (its oscillation term Δ = L̄ − L > 0)."""
        cm, cl = t.curve("central_mean_loss"), t.curve("central_loss")
        r, lo = t.curve("sharpness_ratio"), t.curve("loss")
        if cm is None or cl is None or r is None or lo is None:
            return None
        thr = 2 / float(t.point["lr"])
        L = np.asarray(lo.values)
        steps = np.asarray(cm.coords, dtype=int)
        hit = np.flatnonzero(r.values >= REACHED)
        if hit.size == 0:
            return None
        sharp = dict(zip(np.asarray(r.coords, dtype=int).tolist(), r.values * thr, strict=True))
        delta = cm.values - cl.values
        keep = [
            i
            for i, st in enumerate(steps)
            if st >= r.coords[hit[0]] and delta[i] > 0 and st + window < L.size and st in sharp
        ]
        if not keep:
            return None
        gd_mean = np.array([L[steps[i] - window : steps[i] + window + 1].mean() for i in keep])
        gd_sharp = np.array([sharp[int(steps[i])] for i in keep])
        out: dict[str, float] = {"records": float(len(keep))}
        # a flow stopped past stop_ratio·2/η has fewer records: compare where both exist
        n = min(len(t.curve(f"{kind}_distance").values) for kind in (pred, alt))

        def median(x: np.ndarray) -> float:
            return float(np.median(x)) if x.size else math.nan

        for role, kind in (("pred", pred), ("alt", alt)):
            m, sh = t.curve(f"{kind}_mean_loss"), t.curve(f"{kind}_sharpness")
            j = [i for i, ix in enumerate(keep) if ix < len(m.values)]
            kj = [keep[i] for i in j]
            miss = np.abs(gd_mean[j] - m.values[kj])
            out[f"{role}_loss_error"] = median(miss / delta[kj])
            out[f"{role}_loss_relative"] = median(miss / m.values[kj])
            out[f"{role}_sharpness_error"] = median(
                np.abs(gd_sharp[j] - sh.values[kj]) / sh.values[kj]
            )
            out[f"{role}_distance"] = float(t.curve(f"{kind}_distance").values[n - 1])
            out[f"{role}_time_share"] = float(t.curve(f"{kind}_time_share").values[0])
            stop = t.curve(f"{kind}_stopped")
            out[f"{role}_stopped"] = float(stop.values[0]) if stop is not None else math.nan
        out["movement"] = float(t.curve("gd_movement").values[n - 1])
        over = t.curve(f"{pred}_overshoot")  # absent from trials stored before it was
        out["overshoot"] = float(over.values[0]) if over is not None else math.nan
        out["start"] = float(t.curve("central_sharpness").values[0]) / thr
        return out

    def analyze(self, cfg: EdgeOfStabilityConfig, theory: list[Curve], trials: Trials) -> dict:
        """Per grid point: each seed's summary, and its first trial's curves."""
        out: dict[str, Any] = {}
        for p in self.grid(cfg):
            ts = list(trials.where(**p))
            sums = [s for s in (self._summary(t) for t in ts) if s is not None]
            if not sums:
                continue
            tag = ("" if p["model"] == "mlp" else f"{p['model']}_") + (
                f"{p['optimizer']}_lr{p['lr']:g}"
            )
            still = STILL.get(p["optimizer"], "gradient")
            pred, alt = ("central", still) if cfg.flow == "central" else (still, "central")
            flows = [self._flow_summary(t, pred, alt, cfg.probe_every) for t in ts]
            flows = [f for f in flows if f is not None]
            out[tag] = {
                "point": p,
                "sums": sums,
                "first": ts[0],
                "flows": flows,
                "kinds": (pred, alt),
            }
        out["probe_time_share"] = [
            t.curve("probe_time_share").values[0] for t in trials.has("probe_time_share")
        ]
        return out

    def claims(self, cfg: EdgeOfStabilityConfig, s: dict) -> list[Metric]:
        out = Claims()
        for tag, r in s.items():
            if tag == "probe_time_share":
                continue
            p, sums = r["point"], r["sums"]
            thr = {"gd": "2/η", "adam": "38/η (preconditioned)"}.get(
                p["optimizer"], "2/η (preconditioned)"
            )
            reached = [x for x in sums if x["reached"]]
            out.exact(
                f"{tag}_seeds_not_reaching_threshold",
                len(sums) - len(reached),
                0,
                description=f"seeds whose sharpness never reached {REACHED}·{thr} "
                f"in {cfg.steps} steps (progressive sharpening)",
            )
            if not reached:
                continue
            lo, hi = BAND
            out.within(
                f"{tag}_plateau_ratio",
                Estimate.of([x["plateau_ratio"] for x in reached]),
                (lo + hi) / 2,
                (hi - lo) / 2,
                description=f"mean sharpness/{thr} after first reaching it; band {BAND}: "
                "'at, or just above' the threshold (Cohen et al. 2021, §3)",
            )
            out.below(
                f"{tag}_loss_increase_fraction_before",
                Estimate.of([x["increase_before"] for x in reached]),
                MONOTONE,
                description="fraction of steps where the loss rises before the threshold "
                "(descent lemma: none while η < 2/λ)",
            )
            out.above(
                f"{tag}_loss_increase_fraction_after",
                Estimate.of([x["increase_after"] for x in reached]),
                0.0,
                strict=True,
                description="fraction of steps where the loss rises after the threshold",
            )
            if r["flows"]:
                self._flow_claims(out, cfg, tag, r)
            out.reported(
                f"{tag}_time_to_threshold",
                Estimate.of([x["time_to_threshold"] for x in reached]),
                description="steps until sharpness first reaches 0.95 of the threshold",
            )
        if s.get("probe_time_share"):
            out.reported(
                "probe_time_share",
                Estimate.of(s["probe_time_share"]),
                description=f"sharpness-probe time / training time (probe every "
                f"{cfg.probe_every} steps, Lanczos to 1e-3)",
            )
        return out

    @staticmethod
    def _flow_claims(out: Claims, cfg: EdgeOfStabilityConfig, tag: str, r: dict) -> None:
        fl, (pred, alt), run = r["flows"], r["kinds"], NAMES[r["point"]["optimizer"]]
        name = f"the {pred} flow"
        out.below(
            f"{tag}_flow_loss",
            Estimate.of([f["pred_loss_error"] for f in fl]),
            1.0,
            description=f"median |L̄_{run} − L̄| of {name} over the records at the edge, in "
            "units of the central flow's oscillation term Δ (GD: Σ x_i S_i/2, eq. 3; "
            "RMSProp: ½⟨X, UᵀHU⟩): the prediction is off by less than the oscillation it "
            "averages out",
        )
        out.below(
            f"{tag}_flow_sharpness",
            Estimate.of([f["pred_sharpness_error"] for f in fl]),
            FLOW_SHARPNESS,
            description=f"median |S_{run} − S|/S of {name} at the edge; tolerance "
            f"{FLOW_SHARPNESS}: the half-width of the 'at, or just above' band",
        )
        out.above(
            f"{tag}_flow_closer",
            Estimate.of([math.log(f["alt_distance"] / f["pred_distance"]) for f in fl]),
            0.0,
            strict=True,
            description=f"ln(‖w_{run} − w_{alt}‖/‖w_{run} − w_{pred}‖) at the last step "
            f"both flows reached: {run} ends nearer {name} than the {alt} flow",
        )
        for role, kind in (("pred", pred), ("alt", alt)):
            stops = [f[f"{role}_stopped"] for f in fl]
            if any(math.isfinite(x) for x in stops):
                out.reported(
                    f"{tag}_{kind}_flow_stopped",
                    Estimate.of([x if math.isfinite(x) else cfg.steps for x in stops]),
                    description=f"step at which the {kind} flow was stopped, its sharpness "
                    f"past {cfg.stop_ratio:g}·2/η (the last step where it ran on); distances "
                    "are compared at the last record both flows reached",
                )
        out.reported(
            f"{tag}_flow_distance",
            Estimate.of([f["pred_distance"] / f["movement"] for f in fl]),
            description=f"‖w_{run} − w‖ of {name} at the last step / {run}'s own movement "
            "‖w_T − w_0‖",
        )
        out.reported(
            f"{tag}_flow_loss_relative",
            Estimate.of([f["pred_loss_relative"] for f in fl]),
            description=f"median |L̄_{run} − L̄|/L̄ of {name} at the edge (the loss error "
            "as a fraction of the loss, not of Δ)",
        )
        out.reported(
            f"{tag}_flow_loss_alternative",
            Estimate.of([f["alt_loss_error"] for f in fl]),
            description=f"the same loss error for the {alt} flow",
        )
        if pred == "central" and all(math.isfinite(f["overshoot"]) for f in fl):
            out.reported(
                f"{tag}_flow_untracked_overshoot",
                Estimate.of([f["overshoot"] for f in fl]),
                description=f"largest top eigenvalue/(2/η) of a fresh Lanczos reading along "
                f"the central flow (k = {cfg.flow_k}): above 1 a direction the flow did not "
                "hold had crossed the edge between refreshes, or the start was above it",
            )
        if r["point"]["optimizer"] != "gd":
            out.reported(
                f"{tag}_flow_start_ratio",
                Estimate.of([f["start"] for f in fl]),
                description="preconditioned sharpness/(2/η) at the start (ν₀ = ∇L(w₀)²): "
                "above 1 the run starts past the edge, and the flows pull it back",
            )
        out.reported(
            f"{tag}_flow_time_share",
            Estimate.of([f["pred_time_share"] for f in fl]),
            description=f"time to integrate {name} / {run} training time (float64 flow)",
        )

    def figures(self, cfg: EdgeOfStabilityConfig, s: dict, outdir: Path) -> list[Figure]:
        fig, (a1, a2) = subplots(1, 2, figsize=(10, 3.8))
        for tag, r in s.items():
            if tag == "probe_time_share":
                continue
            p, t = r["point"], r["first"]
            lr = float(p["lr"])
            label = f"{p['model']} {NAMES[p['optimizer']]} η={lr:g}"
            thr = 38 / lr if p["optimizer"] == "adam" else 2 / lr
            rr = t.curve("sharpness_ratio")
            line = a2.plot(rr.coords, rr.values * thr, label=label)[0]
            a2.axhline(thr, color=line.get_color(), ls="--", lw=1)
            lo = t.curve("loss")
            a1.plot(lo.coords, lo.values, color=line.get_color(), label=label, lw=0.8)
        a1.set(yscale="log", xlabel="step", ylabel="training loss", title="loss (first seed)")
        a2.set(yscale="log", xlabel="step", ylabel="sharpness (dashed: 2/η or 38/η)")
        a2.set_title("sharpness rises to the threshold and hovers")
        if a1.lines:
            a1.legend(fontsize=7)
            a2.legend(fontsize=7)
        caption = (
            "Full-batch GD, Adam and RMSProp on digits: training loss (left) and top "
            "Hessian eigenvalue — preconditioned for Adam and RMSProp — with its stability "
            "threshold (right, dashed), as in Cohen et al. 2021, Fig. 1."
        )
        figs = [Figure(save_png(fig, outdir / "edge-of-stability.png"), caption)]
        flows = [(tag, r) for tag, r in s.items() if tag != "probe_time_share" and r["flows"]]
        if flows:
            figs.append(self._flow_figure(cfg, flows, outdir))
        return figs

    @staticmethod
    def _flow_figure(cfg: EdgeOfStabilityConfig, flows: list, outdir: Path) -> Figure:
        fig, axes = subplots(2, len(flows), figsize=(5 * len(flows), 6.4), squeeze=False)
        w = cfg.probe_every
        for j, (_, r) in enumerate(flows):
            t, lr = r["first"], float(r["point"]["lr"])
            run, still = NAMES[r["point"]["optimizer"]], STILL[r["point"]["optimizer"]]
            a1, a2 = axes[0, j], axes[1, j]
            lo = t.curve("loss")
            L = np.asarray(lo.values)
            cm = t.curve("central_mean_loss")
            st = np.asarray(cm.coords, dtype=int)
            ok = (st >= w) & (st + w < L.size)
            avg = [L[i - w : i + w + 1].mean() for i in st[ok]]
            a1.plot(lo.coords, lo.values, color="C0", lw=0.6, alpha=0.6, label=run)
            a1.plot(st[ok], avg, color="C0", lw=1.6, label=f"{run}, mean over ±{w} steps")
            a1.plot(cm.coords, cm.values, "k--", lw=1.4, label="central flow L̄ (predicted)")
            cl = t.curve("central_loss")
            a1.plot(cl.coords, cl.values, color="0.5", ls="--", lw=1, label="central flow L(w)")
            gl = t.curve(f"{still}_loss")
            a1.plot(gl.coords, gl.values, "k:", lw=1.4, label=f"{still} flow")
            a1.set(yscale="log", xlabel="step", ylabel="training loss", title=f"{run} η = {lr:g}")
            rr = t.curve("sharpness_ratio")
            a2.plot(rr.coords, rr.values * 2 / lr, color="C0", label=run)
            for kind, style in (("central", "--"), (still, ":")):
                sh = t.curve(f"{kind}_sharpness")
                a2.plot(sh.coords, sh.values, "k" + style, lw=1.4, label=f"{kind} flow")
            a2.axhline(2 / lr, color="C3", lw=1, label="2/η")
            a2.set(yscale="log", xlabel="step", ylabel="sharpness λ_max (RMSProp: of D⁻¹H)")
            a1.legend(fontsize=7)
            a2.legend(fontsize=7)
        caption = (
            "Predicted curves at the edge of stability (first seed): the central flow "
            "(Cohen, Damian et al. 2025) integrated from the run's initialisation predicts "
            "the time-averaged loss L̄ = L(w) + Δ (top, dashed) and holds the (for RMSProp "
            "preconditioned) sharpness at 2/η (bottom); the flow without oscillation "
            "(dotted: gradient flow for GD, stable flow for RMSProp) keeps sharpening and "
            "its loss falls below the run's."
        )
        return Figure(save_png(fig, outdir / "central-flow.png"), caption)
