"""The steps–examples trade-off of data-parallel training and its critical batch size.

McCandlish, Kaplan, Amodei et al. (2018), "An Empirical Model of Large-Batch Training",
eq. 2.11: to reach a fixed loss, the optimizer steps S and examples E = S·B needed at batch
size B (each at its best learning rate) satisfy (S/S_min − 1)(E/E_min − 1) = 1, i.e.

    S(B) = S_min + E_min / B,

a hyperbola in 1/B. The critical batch size B_crit = E_min/S_min is where both are twice
their minimum; the paper predicts B_crit ≈ B_noise, the gradient noise scale
(:func:`learnmech.measure.gradients.noise_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BatchTradeoff", "fit_batch_tradeoff"]


@dataclass(frozen=True)
class BatchTradeoff:
    """A fitted S(B) = S_min + E_min/B with B_crit = E_min/S_min (delta-method SE)."""

    batch: np.ndarray  # B, sorted
    steps: np.ndarray  # mean S per B
    steps_se: np.ndarray  # SE of each mean over seeds (0 with one seed)
    s_min: float
    e_min: float
    b_crit: float
    b_crit_se: float
    chi2: float  # weighted residual sum of squares
    dof: int  # points − 2
    r2: float  # weighted R²
    df: int  # seeds − 1 of the scarcest batch size (≥ 1): the t degrees of freedom

    def steps_at(self, batch: np.ndarray | float) -> np.ndarray:
        """S(B) from the fit."""
        return self.s_min + self.e_min / np.asarray(batch, dtype=np.float64)


def fit_batch_tradeoff(
    batch: Sequence[int],
    samples: Sequence[np.ndarray],
    resolution: Sequence[float] | None = None,
) -> BatchTradeoff:
    """Weighted least-squares fit of S = S_min + E_min/B to per-seed steps-to-target.

    ``samples[i]`` holds the seeds' steps at ``batch[i]``; each mean is weighted by
    1/SE², the SE floored at ``resolution[i]`` (e.g. k/√12 when the loss is checked every
    k steps) and at one step. B_crit's SE is the delta method on the fit's covariance.
    """
    if len(batch) != len(samples) or len(batch) < 3:
        raise ValueError("fit_batch_tradeoff needs at least three batch sizes with their steps")
    order = np.argsort(np.asarray(batch))
    B = np.asarray(batch, dtype=np.float64)[order]
    vals = [np.asarray(samples[i], dtype=np.float64) for i in order]
    if any(v.size == 0 or not np.all(np.isfinite(v)) for v in vals):
        raise ValueError("every batch size needs finite steps-to-target")
    S = np.array([v.mean() for v in vals])
    se = np.array([v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0 for v in vals])
    res = np.zeros_like(B) if resolution is None else np.asarray(resolution, float)[order]
    w = 1 / np.maximum(se, np.maximum(res, 1.0)) ** 2
    A = np.stack([np.ones_like(B), 1 / B], 1)
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    coef = cov @ (A.T @ (w * S))
    resid = S - A @ coef
    s_min, e_min = float(coef[0]), float(coef[1])
    grad = np.array([-e_min / s_min**2, 1 / s_min])
    ss = float(np.sum(w * (S - np.average(S, weights=w)) ** 2))
    chi2 = float(np.sum(w * resid**2))
    return BatchTradeoff(
        batch=B,
        steps=S,
        steps_se=se,
        s_min=s_min,
        e_min=e_min,
        b_crit=e_min / s_min,
        b_crit_se=float(math.sqrt(grad @ cov @ grad)),
        chi2=chi2,
        dof=B.size - 2,
        r2=1 - chi2 / ss if ss > 0 else 1.0,
        df=max(min(v.size for v in vals) - 1, 1),
    )
