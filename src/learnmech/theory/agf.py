"""Alternating Gradient Flows for a quadratic network on modular addition (Kunin et al.
2025, "Alternating gradient flows: a theory of feature learning in two-layer neural
networks", arXiv:2506.06489, §2 and §5).

Setting (:func:`learnmech.data.algorithmic.fourier_template_task`): the inputs of (a, b)
are x_a, x_b, cyclic shifts of a zero-mean template x ∈ R^p (p prime), the target is
x_{a+b}, and the network is f(a, b) = Σ_i w_i (u_i·x_a + v_i·x_b)² with hidden units
(u_i, v_i, w_i) ∈ R^p × R^p × R^p, trained by gradient descent on
L = (1/2p²) Σ_{a,b} ‖f(a, b) − x_{a+b}‖².

AGF's dormant phase (§2): from small initialization f ≈ 0, so every hidden unit climbs
its own *utility* U_i = (1/p²) Σ_{a,b} ⟨x_{a+b}, f_i(a, b)⟩ independently (dθ_i/dt = ∇U_i)
until one of them reaches O(1) norm, at which moment the loss drops. With the DFT
ẑ[k] = Σ_n z[n] e^{−2πikn/p}, u·x_a = (1/p) Σ_k conj(û_k) x̂_k e^{−2πika/p}; averaging the
cubic over (a, b) keeps only the terms whose frequencies in a, b and the output cancel,
which (x̂_0 = 0) are the cross terms at one frequency k in all three:

    U_i = (4/p³) Σ_{k=1}^{(p−1)/2} |x̂_k|² Re(conj(x̂_k) û_k v̂_k conj(ŵ_k))        (1)

(the derivation is in docs/tutorial-units.md). In the coordinates z = √(2/p)·ẑ_k, in
which |z|² is the squared norm of the vector's frequency-k part, (1) is

    U_ik = c_k r_u r_v r_w cos Φ,    c_k = √2 |x̂_k|³ / p^{3/2},                     (2)
    Φ = arg û_k + arg v̂_k − arg ŵ_k − arg x̂_k,

so each (unit, frequency) pair is its own 3-homogeneous gradient flow:

    ṙ_u = c r_v r_w cos Φ   (and cyclically in u, v, w),
    Φ̇ = −c sin Φ (r_v r_w/r_u + r_u r_w/r_v + r_u r_v/r_w).

Its amplitudes blow up in finite time T = τ(r₀, Φ₀)/c_k (balanced and aligned:
r(t) = r₀/(1 − c r₀ t), T = 1/(c r₀)). Frequency k's feature is acquired when its first
unit blows up, at T_k = min_i T_ik: AGF predicts the order — decreasing |x̂_k|, since
T_k ∝ |x̂_k|^−3 up to the spread of the init — and, from the actual initial weights, the
times. Different frequencies do not interact in (1); once a frequency is learned its
units' square terms leave a residual at frequencies 0 and 2k that couples it to 3k
(mod p), outside this prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

__all__ = [
    "escape_time",
    "neuron_states",
    "predict_onsets",
    "utility",
    "utility_coefficients",
]


def _template(x: Any) -> np.ndarray:
    t = np.asarray(x, dtype=np.float64)
    if t.ndim != 1 or t.size < 3 or not np.all(np.isfinite(t)):
        raise ValueError("template must be a finite vector of length p >= 3")
    if abs(t.sum()) > 1e-9 * max(1.0, float(np.abs(t).sum())):
        raise ValueError("template must have zero mean (x̂_0 = 0); subtract its mean")
    return t


def _weights(w: Any, p: int, name: str) -> np.ndarray:
    a = np.asarray(w, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != p or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a finite (p={p}, width) array, got shape {a.shape}")
    return a


def utility_coefficients(template: Any) -> np.ndarray:
    """c_k = √2 |x̂_k|³ / p^{3/2} for k = 0 … (p−1)//2 (eq. 2): the growth rate of a
    unit that carries frequency k with unit norm in each of u, v, w, phases aligned."""
    x = _template(template)
    xh = np.fft.fft(x)[: (x.size - 1) // 2 + 1]
    return math.sqrt(2) * np.abs(xh) ** 3 / x.size**1.5


def utility(w_a: Any, w_b: Any, w_out: Any, template: Any) -> np.ndarray:
    """Each unit's utility U_i = (1/p²) Σ_{a,b} ⟨x_{a+b}, w_i⟩ (u_i·x_a + v_i·x_b)², by
    direct summation over all p² pairs: (width,). ``w_a``, ``w_b`` (p, width) are the input
    weights on x_a and x_b, ``w_out`` (p, width) the output weights (one column per unit)."""
    x = _template(template)
    p = x.size
    u, v, w = (_weights(a, p, n) for a, n in ((w_a, "w_a"), (w_b, "w_b"), (w_out, "w_out")))
    shifted = np.stack([np.roll(x, a) for a in range(p)])  # shifted[a] = x_a
    hu, hv, hw = shifted @ u, shifted @ v, shifted @ w  # (p, width): x_a·u_i etc.
    idx = np.arange(p)
    total = np.zeros(u.shape[1])
    for a in range(p):
        h = hu[a][None, :] + hv  # (b, width)
        total += np.sum(hw[(a + idx) % p] * h**2, axis=0)
    return total / p**2


def neuron_states(
    w_a: Any, w_b: Any, w_out: Any, template: Any, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(r_u, r_v, r_w, Φ) of every unit at frequency k (eq. 2): the norms of the
    frequency-k parts of u_i, v_i, w_i and their phase mismatch with the template."""
    x = _template(template)
    p = x.size
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= (p - 1) // 2:
        raise ValueError(f"k must be an integer in 1..{(p - 1) // 2}, got {k!r}")
    zs = [
        math.sqrt(2 / p) * np.fft.fft(_weights(a, p, n), axis=0)[k]
        for a, n in ((w_a, "w_a"), (w_b, "w_b"), (w_out, "w_out"))
    ]
    phase = np.angle(zs[0]) + np.angle(zs[1]) - np.angle(zs[2]) - np.angle(np.fft.fft(x)[k])
    return np.abs(zs[0]), np.abs(zs[1]), np.abs(zs[2]), phase


def escape_time(r_u: Any, r_v: Any, r_w: Any, phase: Any, c: float, r_stop: float = 1.0) -> float:
    """Gradient-flow time at which the first of a set of units (arrays, one entry per unit)
    reaches norm ``r_stop`` in each of u, v, w under the dormant dynamics of eq. (2) with
    rate ``c`` — AGF's jump time, the blow-up of the fastest unit (+inf if none grows).
    Balanced and aligned (r_u = r_v = r_w = r₀, Φ = 0) this is (1/r₀ − 1/r_stop)/c."""
    r = np.vstack([np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (r_u, r_v, r_w)])
    ph = np.atleast_1d(np.asarray(phase, dtype=np.float64))
    if ph.shape != r.shape[1:] or not np.all(np.isfinite(r)) or not np.all(np.isfinite(ph)):
        raise ValueError("r_u, r_v, r_w and phase must be finite arrays of one shape")
    if np.any(r <= 0):
        raise ValueError("unit norms must be > 0 (a unit with no component never grows)")
    if not (math.isfinite(c) and c > 0 and math.isfinite(r_stop) and r_stop > 0):
        raise ValueError(f"c and r_stop must be positive and finite, got {c}, {r_stop}")
    if np.any(r.min(0) >= r_stop):
        return 0.0
    m = ph.size

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        # integrate log-norms: growth by many orders of magnitude stays well scaled
        ru, rv, rw = np.exp(y[:m]), np.exp(y[m : 2 * m]), np.exp(y[2 * m : 3 * m])
        cp, sp = np.cos(y[3 * m :]), np.sin(y[3 * m :])
        prod = ru * rv * rw
        return np.concatenate(
            [
                c * prod * cp / ru**2,
                c * prod * cp / rv**2,
                c * prod * cp / rw**2,
                -c * sp * prod * (ru**-2 + rv**-2 + rw**-2),
            ]
        )

    def reached(_t: float, y: np.ndarray) -> float:
        return float(np.max(np.min(y[: 3 * m].reshape(3, m), axis=0))) - math.log(r_stop)

    reached.terminal = True  # type: ignore[attr-defined]
    y0 = np.concatenate([np.log(r).ravel(), ph])
    # the fastest unit, balanced and aligned at its largest norm, bounds nothing from
    # below; integrate in growing windows until the event fires or everything decays
    horizon = 10.0 / (c * float(np.max(np.prod(r, axis=0) ** (1 / 3))))
    t0 = 0.0
    for _ in range(40):
        sol = solve_ivp(
            rhs, (t0, t0 + horizon), y0, events=reached, method="LSODA", rtol=1e-8, atol=1e-10
        )
        if not sol.success:
            raise RuntimeError(f"the dormant-phase integration failed: {sol.message}")
        if sol.t_events[0].size:
            return float(sol.t_events[0][0])
        t0, y0, horizon = float(sol.t[-1]), sol.y[:, -1], horizon * 2
    return math.inf


def predict_onsets(
    w_a: Any,
    w_b: Any,
    w_out: Any,
    template: Any,
    frequencies: Any,
    lr: float,
    r_stop: float = 1.0,
) -> np.ndarray:
    """AGF's predicted step at which each frequency in ``frequencies`` is acquired by
    gradient descent with learning rate ``lr`` from the given initial weights (one column
    per unit): the escape time of its fastest unit (:func:`escape_time`, rate c_k of
    eq. 2) divided by ``lr``. (K,)."""
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    c = utility_coefficients(template)
    out = []
    for k in np.asarray(frequencies).ravel().tolist():
        if not isinstance(k, int) or not 1 <= k < c.size or c[k] <= 1e-12 * c.max():
            raise ValueError(f"frequency {k!r} is not one the template carries")
        ru, rv, rw, phase = neuron_states(w_a, w_b, w_out, template, k)
        live = (ru > 0) & (rv > 0) & (rw > 0)  # a unit without a frequency-k part stays put
        t = (
            escape_time(ru[live], rv[live], rw[live], phase[live], c[k], r_stop)
            if live.any()
            else math.inf
        )
        out.append(t / lr)
    return np.asarray(out)
