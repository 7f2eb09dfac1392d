"""A plain reference implementation of Chinchilla's Approach 3: a loop of scipy L-BFGS-B.

This is the textbook way to run Hoffmann et al. 2022's fit (and what Besiroglu et al. 2024
did): one ``scipy.optimize.minimize(method="L-BFGS-B")`` per start, an analytic gradient,
keep the best. learnmech's batched fit is tested against it and benchmarked against it;
it shares no code with :mod:`learnmech.laws.fit`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

__all__ = ["approach3_objective", "approach3_scipy"]


def approach3_objective(
    p: np.ndarray,
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_l: np.ndarray,
    delta: float = 1e-3,
    weights: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Σ w·Huber_δ(LSE(a − α log N, b − β log D, e) − log L) and its gradient."""
    a, b, e, alpha, beta = p
    t = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    m = t.max(0)
    ex = np.exp(t - m)
    z = ex.sum(0)
    r = m + np.log(z) - log_l
    ar = np.abs(r)
    h = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
    hp = np.clip(r, -delta, delta)
    if weights is not None:
        h = h * weights
        hp = hp * weights
    w = hp * ex / z
    grad = np.array(
        [w[0].sum(), w[1].sum(), w[2].sum(), -(w[0] * log_n).sum(), -(w[1] * log_d).sum()]
    )
    return float(h.sum()), grad


def approach3_scipy(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    starts: np.ndarray,
    delta: float = 1e-3,
    weights: np.ndarray | None = None,
    ftol: float = 1e-15,
    gtol: float = 1e-10,
    maxiter: int = 15000,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Best parameters, best objective, and every start's result (x, fun)."""
    ln, ld, ll = np.log(n), np.log(d), np.log(loss)
    xs, fs = [], []
    for s in starts:
        res = minimize(
            approach3_objective,
            np.asarray(s, dtype=np.float64),
            args=(ln, ld, ll, delta, weights),
            jac=True,
            method="L-BFGS-B",
            options={"ftol": ftol, "gtol": gtol, "maxiter": maxiter},
        )
        xs.append(res.x)
        fs.append(res.fun if np.isfinite(res.fun) else np.inf)
    xs_a, fs_a = np.array(xs), np.array(fs)
    i = int(np.argmin(fs_a))
    return xs_a[i], float(fs_a[i]), xs_a, fs_a
