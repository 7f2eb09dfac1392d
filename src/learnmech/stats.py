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
