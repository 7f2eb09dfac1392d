"""Population dynamics of a two-layer net on a planted linear task, reduced to the planted
subspace.

Task: Gaussian inputs x ~ N(0, I), target y = U·diag(s)·Vᵀx (Saxe, McClelland & Ganguli
2014; :func:`learnmech.data.algorithmic.planted_singular_task`). Network
f(x) = Σ_i w_i φ(u_i·x), loss L = ½ E‖y − f(x)‖². Write z = Vᵀx ~ N(0, I_r) and keep each
unit's input weights in span(V) and output weights in span(U) (a unit's components
outside them see no target and stay at their initial size). Then, with
h_i = u_i·z ~ N(0, |u_i|²),

    L = ½ Σ_k s_k² − Σ_i m_i w_iᵀ S u_i + ½ Σ_ij (w_i·w_j) K_ij,                     (1)
    m_i = E[φ'(h_i)]              (Stein's lemma: E[z φ(u·z)] = u E[φ'(u·z)]),
    K_ij = E[φ(h_i) φ(h_j)],

and the strength of mode k in the network's linear map, U_kᵀ E[f xᵀ] V_k, is
Σ_i m_i w_ik u_ik. For ReLU K is the degree-1 arc-cosine kernel (Cho & Saul 2009, eq. 6):
K_ij = |u_i||u_j| (sin θ + (π − θ) cos θ)/2π with cos θ = u_i·u_j/(|u_i||u_j|), and
m_i = 1/2; for a linear φ, K = u_i·u_j and m = 1 (the deep-linear case, exact); for
other φ, m and K are Gauss–Hermite integrals over the bivariate normal (h_i, h_j).

Gradient descent on (1) from the actual initial weights' projections (u_i ← Vᵀu_i,
w_i ← Uᵀw_i) predicts when each mode is learned, for every activation, with no fitting.
While the weights are small this is Alternating Gradient Flows' dormant phase (Kunin et
al. 2025, arXiv:2506.06489, §2: each unit climbs the utility −∂L/∂(its output) at f ≈ 0
— for ReLU the halved correlation m = ½); once a unit is large, (1) also carries its
saturation — for ReLU the even part |h|/2 of relu(h) = h/2 + |h|/2, a cost the
linear escape omits — and the coupling between modes that share units. What it leaves
out: the finite sample (non-Gaussian moments of n whitened inputs, which can feed a mode
directly instead of through its own growth).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["arccos_kernel", "gaussian_moments", "planted_subspace_dynamics"]

Activation = Literal["linear", "relu", "tanh"]
_PHI = {"linear": lambda z: z, "relu": torch.relu, "tanh": torch.tanh}
_DPHI = {
    "linear": lambda z: torch.ones_like(z),
    "relu": lambda z: (z > 0).to(z.dtype),
    "tanh": lambda z: 1 - torch.tanh(z) ** 2,
}


def _gaussian_sample(r: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """A fixed scrambled-Sobol sample of N(0, I_r), n points (quasi-Monte Carlo: error
    ≈ 1/n rather than 1/√n for smooth integrands; deterministic)."""
    q = torch.quasirandom.SobolEngine(r, scramble=True, seed=0).draw(n, dtype=torch.float64)
    return torch.special.ndtri(q.clamp(1e-12, 1 - 1e-12)).to(dtype)


def _t(u: torch.Tensor) -> torch.Tensor:
    return u.transpose(-1, -2)


def arccos_kernel(u: torch.Tensor) -> torch.Tensor:
    """E[relu(u_i·z) relu(u_j·z)] for z ~ N(0, I), rows u_i: the degree-1 arc-cosine
    kernel (Cho & Saul 2009, eq. 6), (…, h, h) for u (…, h, r)."""
    norm = u.norm(dim=-1)
    outer = norm[..., :, None] * norm[..., None, :]
    cos = ((u @ _t(u)) / outer.clamp_min(1e-300)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos * (1 - 1e-12))  # finite gradient at θ = 0
    return outer * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)


def gaussian_moments(
    u: torch.Tensor, act: Activation, samples: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, K) of eq. (1) for rows u_i (u: (…, h, r)): m_i = E[φ'(u_i·z)],
    K_ij = E[φ(u_i·z) φ(u_j·z)], z ~ N(0, I_r) — closed forms for linear and ReLU, a fixed
    quasi-Monte-Carlo sample of ``samples`` points otherwise (tanh: relative error ≈ 1e-4
    at 8192, against the 2% of 40-point Gauss–Hermite when |u| ≈ 2.6 makes tanh a step)."""
    if act not in _PHI:
        raise ValueError(f"act must be one of {sorted(_PHI)}, got {act!r}")
    if act == "linear":
        return torch.ones(u.shape[:-1], dtype=u.dtype), u @ _t(u)
    if act == "relu":
        return torch.full(u.shape[:-1], 0.5, dtype=u.dtype), arccos_kernel(u)
    z = _gaussian_sample(u.shape[-1], samples, u.dtype)
    h = z @ _t(u)  # (…, n, h)
    phi = _PHI[act](h)
    return _DPHI[act](h).mean(-2), _t(phi) @ phi / samples


def planted_subspace_dynamics(
    w_in: Any,
    w_out: Any,
    singular_values: Any,
    act: Activation,
    lr: float,
    steps: int,
) -> np.ndarray:
    """Gradient descent with learning rate ``lr`` on the population loss (1), from the
    initial weights projected on the planted subspace: ``w_in`` (hidden, r) = W₁V and
    ``w_out`` (hidden, r) = (UᵀW₂)ᵀ, or a stack (S, hidden, r) of independent nets.
    Returns each mode's strength U_kᵀ E[f xᵀ] V_k = Σ_i m_i w_ik u_ik at steps
    0 … ``steps``: (steps + 1, r), or (steps + 1, S, r) for a stack."""
    s = np.asarray(singular_values, dtype=np.float64).ravel()
    u = torch.as_tensor(np.asarray(w_in, dtype=np.float64)).clone()
    w = torch.as_tensor(np.asarray(w_out, dtype=np.float64)).clone()
    if u.ndim not in (2, 3) or w.shape != u.shape or u.shape[-1] != s.size:
        raise ValueError(
            f"w_in and w_out must both be (hidden, r={s.size}) or (S, hidden, r), got "
            f"{tuple(u.shape)} and {tuple(w.shape)}"
        )
    if not (torch.isfinite(u).all() and torch.isfinite(w).all() and np.all(np.isfinite(s))):
        raise ValueError("weights and singular values must be finite")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    S = torch.from_numpy(s)
    u.requires_grad_(True)
    w.requires_grad_(True)
    out = np.empty((steps + 1, *u.shape[:-2], s.size))
    for t in range(steps + 1):
        m, K = gaussian_moments(u, act)
        mwu = m[..., None] * w * u
        # the stack's nets are independent: the sum of their losses has each one's gradient
        loss = -(mwu * S).sum() + 0.5 * (K * (w @ _t(w))).sum()  # (1) less its constant
        with torch.no_grad():
            out[t] = mwu.sum(-2).numpy()
        if t == steps:
            break
        gu, gw = torch.autograd.grad(loss, (u, w))
        with torch.no_grad():
            u -= lr * gu
            w -= lr * gw
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the reduced dynamics diverged (learning rate too large)")
    return out
