"""Exact learning dynamics of deep linear networks (Saxe, McClelland & Ganguli 2014).

Network f(x) = W_L ⋯ W_1 x, whitened inputs (E[xxᵀ] = I), loss ½ E‖y − f(x)‖², input–output
correlation Σ_yx = U S Vᵀ. From *task-aligned balanced* initialisation every layer stays
diagonal in the singular bases, each singular mode k evolves on its own, and every layer
carries the same per-layer strength a_k, the end-to-end strength being u_k = a_k^L
(Saxe et al. 2014, eq. 5–9; Rhee, Karkada & Simon 2026)::

    τ da/dt = a^{L−1}(s − a^L)        ⇒        τ du/dt = L u^{2−2/L} (s − u)

with τ = 1/η (time in optimisation steps of gradient descent with learning rate η).

* Depth 2 (closed form, eq. 7): u(t) = s e^{2st/τ} / (e^{2st/τ} − 1 + s/u₀), and the time
  from u₀ to u_f is t = (τ/2s) ln[u_f(s − u₀) / (u₀(s − u_f))].
* Depth L: in the logit z = ln(u/(s − u)) the ODE is τ dz/dt = L s u^{1−2/L}, smooth and
  non-stiff; it is integrated to 1e-12 relative (DOP853), and learning times are the exact
  integral t = τ/(Ls) ∫ u(z)^{2/L−1} dz by Gauss–Legendre quadrature.
* Discrete gradient descent (the exact map for aligned balanced init, any η):
  a ← a + η a^{L−1}(s − a^L). Its deviation from the ODE is O(η s) per unit of time and
  grows where the mode moves fastest.

Small initialisation makes the modes learned one after another, largest s first: the loss
is a staircase, sharper for deeper nets and smaller u₀ (saddle-to-saddle dynamics; Jacot
et al. 2021). For L = 2 the learning time grows as ln(1/u₀)/s, for L ≥ 3 as u₀^{2/L−1}/s.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from learnmech.errors import UserError

__all__ = [
    "learning_time",
    "loss_curve",
    "mode_trajectory",
    "mode_trajectory_discrete",
    "staircase_sharpness",
    "whitened_task",
]


def _check(s: Any, u0: Any, depth: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise UserError(f"depth must be a positive integer, got {depth!r}")
    ss = np.atleast_1d(np.asarray(s, dtype=np.float64))
    uu = np.broadcast_to(np.asarray(u0, dtype=np.float64), ss.shape).copy()
    if not (np.all(np.isfinite(ss)) and np.all(ss > 0)):
        raise UserError("singular values s must be positive and finite")
    if not (np.all(np.isfinite(uu)) and np.all(uu > 0)):
        raise UserError("initial strengths u0 must be positive and finite")
    if np.any(uu >= ss):
        raise UserError("initial strengths u0 must be below the target singular values s")
    return ss, uu


def mode_trajectory(s: Any, u0: Any, times: Any, depth: int = 2, tau: float = 1.0) -> np.ndarray:
    """End-to-end strengths u_k(t) under gradient flow, shape (T, K).

    Depth 2 uses the closed form; depth L ≥ 3 integrates the logit ODE to 1e-12; depth 1
    is linear regression, u(t) = s − (s − u₀)e^{−t/τ}.
    """
    ss, uu = _check(s, u0, depth)
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise UserError("times must be non-negative and finite")
    if not tau > 0:
        raise UserError(f"tau must be positive, got {tau!r}")
    if depth == 1:
        return ss - (ss - uu) * np.exp(-t[:, None] / tau)
    if depth == 2:
        # logistic in a form that cannot overflow: logit z(t) = z₀ + 2st/τ
        z = np.log(uu / (ss - uu)) + 2 * ss * t[:, None] / tau
        return ss / (1 + np.exp(-z))
    out = np.empty((t.size, ss.size))
    order = np.argsort(t)
    for k, (sk, uk) in enumerate(zip(ss, uu, strict=True)):
        z0 = math.log(uk / (sk - uk))
        p = 1 - 2 / depth

        def rhs(_t: float, z: np.ndarray, sk: float = sk, p: float = p) -> np.ndarray:
            u = sk / (1 + np.exp(-z))
            return depth * sk * u**p / tau

        if t.max() == 0:
            out[:, k] = uk
            continue
        sol = solve_ivp(
            rhs,
            (0.0, float(t.max())),
            [z0],
            method="DOP853",
            rtol=1e-12,
            atol=1e-12,
            t_eval=t[order],
            dense_output=False,
        )
        if not sol.success:  # pragma: no cover - DOP853 on a smooth scalar ODE
            raise RuntimeError(f"mode ODE failed: {sol.message}")
        zz = np.empty(t.size)
        zz[order] = sol.y[0]
        out[:, k] = sk / (1 + np.exp(-zz))
    return out


def mode_trajectory_discrete(
    s: Any, u0: Any, steps: int, lr: float, depth: int = 2, record: Any = None
) -> np.ndarray:
    """End-to-end strengths under discrete GD, a ← a + η a^{L−1}(s − a^L), shape (R, K).

    Exact for gradient descent from aligned balanced initialisation. ``record`` lists the
    steps to return (default: every step 0..steps).
    """
    ss, uu = _check(s, u0, depth)
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"lr must be positive and finite, got {lr!r}")
    rec = np.arange(steps + 1) if record is None else np.asarray(record, dtype=np.int64)
    if rec.size and (rec.min() < 0 or rec.max() > steps):
        raise UserError("record steps must lie in 0..steps")
    want = np.zeros(steps + 1, dtype=bool)
    want[rec] = True
    a = uu ** (1 / depth)
    rows = {}
    for step in range(steps + 1):
        if want[step]:
            rows[step] = a**depth
        if step < steps:
            a = a + lr * a ** (depth - 1) * (ss - a**depth)
    return np.stack([rows[int(r)] for r in rec])


def learning_time(
    s: Any, u0: Any, depth: int = 2, tau: float = 1.0, fraction: float = 0.5
) -> np.ndarray:
    """Time for each mode to go from u₀ to ``fraction``·s under gradient flow (Saxe et al.
    2014, eq. 8 for depth 2; the exact integral τ/(Ls)∫u^{2/L−1}dz in logit z otherwise)."""
    ss, uu = _check(s, u0, depth)
    if not 0 < fraction < 1:
        raise UserError(f"fraction must be in (0, 1), got {fraction!r}")
    uf = fraction * ss
    if np.any(uf <= uu):
        raise UserError("the initial strength is already past the target fraction")
    z0 = np.log(uu / (ss - uu))
    zf = np.log(uf / (ss - uf))
    if depth == 1:
        return tau * np.log((ss - uu) / (ss - uf))
    if depth == 2:
        return tau / (2 * ss) * (zf - z0)
    p = 2 / depth - 1
    x, w = np.polynomial.legendre.leggauss(200)
    out = np.empty(ss.size)
    for k in range(ss.size):
        # split at z = 0 where the integrand bends; 200 nodes per decade of e^{-pz} growth
        edges = np.unique(np.concatenate([np.linspace(z0[k], zf[k], 65), [0.0]]))
        edges = edges[(edges >= z0[k]) & (edges <= zf[k])]
        total = 0.0
        for lo, hi in itertools.pairwise(edges):
            z = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
            u = ss[k] / (1 + np.exp(-z))
            total += 0.5 * (hi - lo) * float(np.sum(w * u**p))
        out[k] = tau / (depth * ss[k]) * total
    return out


def loss_curve(s: Any, u: np.ndarray, residual: float = 0.0) -> np.ndarray:
    """Loss ½Σ_k (s_k − u_k)² + residual for strengths u of shape (T, K): the staircase."""
    ss = np.atleast_1d(np.asarray(s, dtype=np.float64))
    return 0.5 * np.sum((ss[None, :] - np.asarray(u)) ** 2, axis=1) + residual


def whitened_task(
    singular_values: Any,
    in_dim: int,
    out_dim: int,
    samples: int,
    seed: int = 0,
    anisotropy: float = 1.0,
) -> dict[str, np.ndarray]:
    """A regression task with exactly whitened inputs and Σ_yx = U S Vᵀ.

    X (samples × in_dim) has XᵀX/samples = I exactly; Y = X V S Uᵀ; U, V random orthonormal
    (seeded). Returns X, Y, U (out_dim × K), V (in_dim × K), s (K,).

    ``anisotropy`` > 1 breaks the whitening *after* Y is built (a negative control): input
    coordinate i is scaled by √(anisotropy^{i/(in−1)}), normalised to unit mean square, so
    Σ_xx ≠ I and Saxe et al.'s modes no longer decouple.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    K = s.size
    if K > min(in_dim, out_dim) or samples < in_dim:
        raise UserError("need rank ≤ min(in_dim, out_dim) and samples ≥ in_dim")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((samples, in_dim)))
    X = Q * math.sqrt(samples)
    V, _ = np.linalg.qr(rng.standard_normal((in_dim, K)))
    U, _ = np.linalg.qr(rng.standard_normal((out_dim, K)))
    Y = X @ V @ np.diag(s) @ U.T
    if anisotropy != 1.0:
        scales = np.geomspace(1.0, anisotropy, in_dim) ** 0.5
        X = X * scales / np.sqrt(np.mean(scales**2))
    return {"X": X, "Y": Y, "U": U, "V": V, "s": s}


def staircase_sharpness(steps: np.ndarray, u: np.ndarray, s: Any) -> float:
    """Gap between the first two modes' learning times (u_k = s_k/2) over the first mode's
    10–90% rise time, from recorded strengths ``u`` (steps × modes): large when the loss
    is a staircase of well-separated steps (saddle-to-saddle), small when modes overlap."""
    from learnmech.stats import crossing_time

    s = np.asarray(s, dtype=np.float64)
    t10 = crossing_time(steps, u[:, 0], 0.1 * s[0])
    t90 = crossing_time(steps, u[:, 0], 0.9 * s[0])
    gap = crossing_time(steps, u[:, 1], s[1] / 2) - crossing_time(steps, u[:, 0], s[0] / 2)
    return gap / (t90 - t10) if t90 > t10 else float("nan")
