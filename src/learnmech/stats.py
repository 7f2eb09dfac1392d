"""Small statistics helpers shared by studies: standard errors and log–log fits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLawFit", "fit_power_law", "jackknife", "mean_se"]


def mean_se(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean along ``axis`` (ddof = 1)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    mean = v.mean(axis=axis)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, v.std(axis=axis, ddof=1) / math.sqrt(n)


def jackknife(samples: np.ndarray, statistic) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Leave-one-out jackknife over the first axis: (statistic, standard error)."""
    s = np.asarray(samples)
    n = s.shape[0]
    full = float(statistic(s))
    if n < 2:
        return full, float("nan")
    loo = np.array([statistic(np.delete(s, i, axis=0)) for i in range(n)], dtype=np.float64)
    se = math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    return full, se


@dataclass(frozen=True)
class PowerLawFit:
    """y ≈ prefactor · x^exponent, fitted by (weighted) least squares in log–log space."""

    exponent: float
    exponent_se: float
    prefactor: float
    #: weighted residual sum of squares against the stated errors (NaN without them)
    chi2: float = float("nan")
    dof: int = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=np.float64) ** self.exponent


def fit_power_law(x: np.ndarray, y: np.ndarray, y_se: np.ndarray | None = None) -> PowerLawFit:
    """Fit log y = a + b log x. With ``y_se`` the points are weighted by 1/σ² of log y
    (σ_log ≈ se/y) and the exponent's SE comes from those stated errors alone — it is not
    inflated by the fit's χ² (a worse fit must not buy a wider tolerance; ``chi2``/``dof``
    report the misfit, see :func:`learnmech.claims.lack_of_fit`); without, from the
    residuals.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        raise ValueError("a power-law fit needs at least two positive finite points")
    lx, ly = np.log(x[ok]), np.log(y[ok])
    A = np.stack([np.ones_like(lx), lx], axis=1)
    if y_se is not None:
        sig = np.asarray(y_se, dtype=np.float64)[ok] / y[ok]
        if np.all(np.isfinite(sig)) and np.all(sig > 0):
            w = 1.0 / sig**2
            cov = np.linalg.inv(A.T @ (A * w[:, None]))
            coef = cov @ (A.T @ (w * ly))
            chi2 = float(np.sum(w * (ly - A @ coef) ** 2))
            se = math.sqrt(cov[1, 1])
            return PowerLawFit(float(coef[1]), se, float(math.exp(coef[0])), chi2, len(lx) - 2)
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - A @ coef
    dof = len(lx) - 2
    if dof > 0:
        s2 = float(resid @ resid) / dof
        se = math.sqrt(s2 * np.linalg.inv(A.T @ A)[1, 1])
    else:
        se = float("nan")
    return PowerLawFit(float(coef[1]), se, float(math.exp(coef[0])))


def crossing_time(t: np.ndarray, u: np.ndarray, target: float) -> float:
    """First time the series u(t) reaches ``target`` (u ≥ target), linearly interpolated
    between the recorded times; 0 if it starts there, NaN if it never gets there."""
    above = np.flatnonzero(u >= target)
    if above.size == 0:
        return float("nan")
    i = above[0]
    if i == 0:
        return 0.0
    f = (target - u[i - 1]) / (u[i] - u[i - 1])
    return float(t[i - 1] + f * (t[i] - t[i - 1]))


def r_squared(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination of ``predicted`` for ``measured`` (columns pooled, each
    column's own mean as the baseline); NaN when ``measured`` is constant."""
    ss_res = float(np.sum((measured - predicted) ** 2))
    ss_tot = float(np.sum((measured - measured.mean(0)) ** 2))
    return 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def debiased_mean_square(d: np.ndarray) -> float:
    """Unbiased estimate of mean_j (E d_j)² from samples d (seeds × coordinates).

    ‖mean_s d‖² over-estimates ‖E d‖² by tr Cov/S; the estimate subtracts it, so it is
    unbiased and unclipped (it can be negative when the mean is below the seed noise),
    which keeps a jackknife SE of it honest. With one sample nothing is subtracted.
    """
    m2 = np.mean(d.mean(0) ** 2)
    noise = np.mean(d.var(0, ddof=1)) / d.shape[0] if d.shape[0] > 1 else 0.0
    return float(m2 - noise)


def corrected_slope(
    x: np.ndarray, y: np.ndarray, h: np.ndarray, min_points: int = 4
) -> tuple[float, float]:
    """Log–log slope p with a known leading correction: fit log y = c + p·log x + q·h
    (and again with + r·h²), for h the correction's variable (e.g. 1/width, or η).

    Returns (p with q, p with q and r); their difference estimates the truncation error
    of the first fit (Richardson-style). With fewer than ``min_points`` points the second
    fit is not made and p with q is returned twice.
    """
    ly = np.log(y)
    A = np.stack([np.ones_like(x), np.log(x), h, h**2], 1)
    p3 = float(np.linalg.lstsq(A[:, :3], ly, rcond=None)[0][1])
    p4 = float(np.linalg.lstsq(A, ly, rcond=None)[0][1]) if x.size >= min_points else p3
    return p3, p4


def weighted_line(x: np.ndarray, y: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares y = a + b·x with weights 1/se²: ((a, b), covariance) — the
    covariance from the stated errors alone (not scaled by the fit's χ²)."""
    w = 1 / se**2
    A = np.stack([np.ones_like(x), x], 1)
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    return cov @ (A.T @ (w * y)), cov
