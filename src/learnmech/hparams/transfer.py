"""The loss-minimising learning rate of a sweep, and how it moves with width or depth.

μTransfer's claim (Yang et al. 2022, §3 and Fig. 1): under μP the optimal learning rate η*
is (nearly) independent of width; under SP it drifts (for Adam, towards η* ∝ 1/width).
:func:`optimal_lr` locates η* on a log grid by a parabola through the best grid point and its
two neighbours in log η (the usual vertex interpolation; exact for a loss quadratic in
log η near its minimum); :func:`transfer_exponent` fits η* ∝ width^c with its standard error.
:func:`lr_sweep` trains one model per rate of a grid; :func:`transfer_claims` scores a set
of per-seed optima against "η* stays put" (an equivalence test: a no-effect claim) or
"η* drifts" (a one-sided bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from learnmech.claims import Claims, Estimate
from learnmech.records import Metric
from learnmech.stats import fit_power_law
from learnmech.train.loops import train_steps
from learnmech.train.stacked import stack_reason, stacking_pays, train_steps_stacked

__all__ = [
    "LROptimum",
    "TransferFit",
    "lr_sweep",
    "optimal_lr",
    "transfer_claims",
    "transfer_exponent",
]


@dataclass(frozen=True)
class LROptimum:
    """η* of one loss-vs-learning-rate curve."""

    lr: float  # interpolated optimum
    log2_lr: float
    best_grid_lr: float
    best_loss: float
    at_edge: bool  # the best grid point is the first or last: η* may lie outside the grid


@dataclass(frozen=True)
class TransferFit:
    """η* ∝ x^c over a sweep (x is width or depth)."""

    exponent: float
    exponent_se: float
    xs: tuple[float, ...]
    log2_lr: tuple[float, ...]
    log2_lr_se: tuple[float, ...]

    @property
    def shift_log2(self) -> float:
        """Change of log2 η* across the sweep's range, from the fitted line."""
        return self.exponent * math.log2(max(self.xs) / min(self.xs))


def optimal_lr(lrs: Sequence[float], losses: Sequence[float]) -> LROptimum:
    """η* from a loss-vs-learning-rate curve; non-finite losses (diverged runs) count as worst.

    The parabola's vertex is kept within the two neighbouring grid points.
    """
    lr = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(losses, dtype=np.float64)
    if lr.ndim != 1 or lr.size != loss.size or lr.size < 3:
        raise ValueError("optimal_lr needs matching learning rates and losses, at least three")
    if np.any(~np.isfinite(lr)) or np.any(lr <= 0):
        raise ValueError("learning rates must be positive and finite")
    order = np.argsort(lr)
    lr, loss = lr[order], loss[order]
    if not np.any(np.isfinite(loss)):
        raise ValueError("every run diverged: no finite loss to locate an optimum")
    x = np.log2(lr)
    y = np.where(np.isfinite(loss), loss, np.inf)
    i = int(np.argmin(y))
    at_edge = i == 0 or i == lr.size - 1
    xi = float(x[i])
    if not at_edge and np.isfinite(y[i - 1]) and np.isfinite(y[i + 1]):
        x0, x1, x2 = x[i - 1], x[i], x[i + 1]
        y0, y1, y2 = y[i - 1], y[i], y[i + 1]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
        if a > 0:
            xi = float(np.clip(-b / (2 * a), x0, x2))
    return LROptimum(
        lr=float(2.0**xi),
        log2_lr=xi,
        best_grid_lr=float(lr[i]),
        best_loss=float(y[i]),
        at_edge=bool(at_edge),
    )


def transfer_exponent(
    xs: Sequence[float], log2_lr: Sequence[float], log2_lr_se: Sequence[float] | None = None
) -> TransferFit:
    """Fit log2 η* = a + c·log2 x (weighted by the SEs when given) → c ± SE."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(log2_lr, dtype=np.float64)
    if x.size < 2 or x.size != y.size:
        raise ValueError("transfer_exponent needs at least two (x, η*) points")
    se = None if log2_lr_se is None else np.asarray(log2_lr_se, dtype=np.float64)
    # fit_power_law works on y > 0 in log space: pass 2^{log2 η*} and the SE of ln η*
    lr = 2.0**y
    y_se = None if se is None else se * math.log(2) * lr
    fit = fit_power_law(x, lr, y_se)
    return TransferFit(
        exponent=fit.exponent,
        exponent_se=fit.exponent_se,
        xs=tuple(float(v) for v in x),
        log2_lr=tuple(float(v) for v in y),
        log2_lr_se=tuple(float(v) for v in (se if se is not None else np.zeros_like(y))),
    )


def lr_sweep(
    lrs: Sequence[float],
    build: Callable[..., tuple[nn.Module, torch.optim.Optimizer]],
    batches: Callable[..., Callable[[int], tuple[Any, torch.Tensor]]],
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    steps: int,
    evaluate: Callable[[nn.Module], float],
    *,
    cap: float = math.inf,
    stack: bool = True,
    seeds: Sequence[int] | None = None,
) -> np.ndarray:
    """The loss ``evaluate`` reads after ``steps`` optimizer steps at each learning rate.

    ``build(lr)`` returns a fresh (seeded) model and its optimizer; ``batches()`` a fresh
    ``batch(step) -> (x, y)`` stream, so every rate sees the same data in the same order.
    With ``seeds``, ``build(lr, seed)`` and ``batches(seed)`` instead, and the result is
    (seeds, rates). A run whose training loss turns non-finite, or whose final loss is
    non-finite or above ``cap``, is recorded as ``cap`` (a diverged run is the worst point
    of the curve: :func:`optimal_lr` then places η* below it).

    With ``stack`` (default), every (seed, rate) run trains in one stacked ensemble where
    the model allows it and it pays (:mod:`learnmech.train.stacked`; equal to the loop to
    float tolerance), else one after another.
    """
    multi = seeds is not None
    group = list(seeds) if multi else [None]
    keys = [(s, lr) for s in group for lr in lrs]

    def make(s: Any, lr: float) -> tuple[nn.Module, torch.optim.Optimizer]:
        return build(lr, s) if multi else build(lr)

    def stream(s: Any) -> Callable[[int], tuple[Any, torch.Tensor]]:
        return batches(s) if multi else batches()

    first = make(*keys[0])
    n_params = sum(p.numel() for p in first[0].parameters())
    device = next(first[0].parameters()).device if n_params else "cpu"
    built = [first]
    if stack and len(keys) > 1 and stacking_pays(n_params, device):
        built += [make(*k) for k in keys[1:]]
    models, opts = [b[0] for b in built], [b[1] for b in built]

    def read(model: nn.Module, diverged: bool) -> float:
        loss = cap if diverged else float(evaluate(model))
        return loss if math.isfinite(loss) and loss < cap else cap

    if len(models) > 1 and not stack_reason(models, opts):
        # one stream per seed, called once per step: each run sees what a fresh stream
        # of its own would give it
        live = [stream(s) for s in group]
        runs = train_steps_stacked(
            models,
            opts,
            lambda step, j: live[j](step),
            loss_fn,
            steps,
            streams=[group.index(k[0]) for k in keys],
            first_step=0,
        )
        out = [read(m, r.diverged) for m, r in zip(models, runs, strict=True)]
    else:  # one at a time, each model dropped before the next is built
        out = []
        del models, opts
        for i, key in enumerate(keys):
            model, opt = built[i] if i < len(built) else make(*key)
            run = train_steps(model, opt, stream(key[0]), loss_fn, steps, first_step=0)
            out.append(read(model, run.diverged))
        built.clear()
    arr = np.asarray(out, dtype=np.float64)
    return arr.reshape(len(group), len(lrs)) if multi else arr


def transfer_claims(
    name: str,
    optima: Mapping[float, Sequence[LROptimum]],
    *,
    transfers: bool,
    what: str = "width",
    step: float = 1.0,
) -> list[Metric]:
    """Claims on how η* moves over sizes: ``optima[size]`` holds one optimum per seed.

    The fitted shift of log₂ η* over the size range (exponent ± SE from the seeds' spread,
    :func:`transfer_exponent`) must lie within ±``step`` grid steps when ``transfers``
    (``equivalent``, a TOST: μTransfer's "within one grid step", Yang et al. 2022) and
    below −``step`` otherwise (``below``: SP's drift). An optimum at a grid edge is
    censored: a "transfers" claim with one fails (the optimum is unknown); for a drift
    claim the edge only hides drift, so it stays conservative. The exponent c in
    η* ∝ size^c is reported as ``{name}_exponent``.
    """
    out = Claims()
    sizes = sorted(optima)
    logs = [[o.log2_lr for o in optima[z]] for z in sizes]
    m = [float(np.mean(v)) for v in logs]
    se = [Estimate.of(v).se for v in logs]
    edge = any(o.at_edge for z in sizes for o in optima[z])
    fit = transfer_exponent(sizes, m, se if all(x > 0 for x in se) else None)
    df = min(len(v) for v in logs) - 1
    span = math.log2(max(sizes) / min(sizes))
    out.reported(
        f"{name}_exponent",
        Estimate(fit.exponent, fit.exponent_se, df),
        description=f"c in η* ∝ {what}^c ("
        + ", ".join(f"{z:g}: 2^{v:.2f}" for z, v in zip(sizes, m, strict=True))
        + ")"
        + ("; an optimum sits at the grid's edge" if edge else ""),
    )
    shift = Estimate(fit.shift_log2, fit.exponent_se * span, df)
    rng = f"{max(sizes) / min(sizes):g}× {what} range"
    if transfers:
        if edge:  # censored: the optimum lies somewhere beyond the grid
            shift = Estimate(math.nan, math.nan, df)
        out.equivalent(
            f"{name}_shift_log2",
            shift,
            step,
            description=f"fitted shift of log₂ η* over the {rng}: within one grid "
            "step" + (" — an optimum at the grid's edge: censored" if edge else ""),
        )
    else:
        out.below(
            f"{name}_shift_log2",
            shift,
            -step,
            description=f"fitted shift of log₂ η* over the {rng}: drifts down by "
            "more than one grid step",
        )
    return out
