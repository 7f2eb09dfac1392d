"""The loss-minimising learning rate of a sweep, and how it moves with width or depth.

μTransfer's claim (Yang et al. 2022, §3 and Fig. 1): under μP the optimal learning rate η*
is (nearly) independent of width; under SP it drifts (for Adam, towards η* ∝ 1/width).
:func:`optimal_lr` locates η* on a log grid by a parabola through the best grid point and its
two neighbours in log η (the usual vertex interpolation; exact for a loss quadratic in
log η near its minimum); :func:`transfer_exponent` fits η* ∝ width^c with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learnmech.stats import fit_power_law

__all__ = ["LROptimum", "TransferFit", "optimal_lr", "transfer_exponent"]


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
