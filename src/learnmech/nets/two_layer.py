"""A two-layer ReLU network with an output scale α: the lazy/rich model of Chizat et al.

f(x) = (α/m) Σ_j a_j relu(w_jᵀx) trained by gradient descent on the rescaled loss
(1/α²)·½·mean(f − y)² with step η·m per parameter (Chizat, Oyallon & Bach 2019, "On lazy
training in differentiable programming", §2 and Fig. 2). Large α keeps the parameters
within O(1/α) of their init, so f follows its linearization — kernel gradient descent with
the tangent kernel at init (their Thm 2.2–2.4); small α moves the weights by O(1), and the
neurons rotate towards the target's directions (feature learning, the mean-field regime).

The symmetric init (neurons in ± pairs with a_j = ±‖w_j‖) makes f₀ = 0 and every neuron
balanced, so a lazy run is exactly kernel regression from zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "ScaledRun",
    "alignment",
    "linearized_run",
    "symmetric_init",
    "tangent_kernel",
    "train_scaled",
    "train_scaled_stacked",
]


def symmetric_init(
    m: int, dim: int, seed: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w₀ (m, dim), a₀ (m,)): m/2 Gaussian directions, each twice, with a = ±‖w‖."""
    if m < 2 or m % 2:
        raise ValueError(f"m must be an even number ≥ 2, got {m}")
    g = torch.Generator().manual_seed(seed)
    half = torch.randn(m // 2, dim, generator=g, dtype=torch.float64)
    w0 = torch.cat([half, half]).to(device)
    a0 = torch.cat([half.norm(dim=1), -half.norm(dim=1)]).to(device)
    return w0, a0


def tangent_kernel(
    x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    """K_h(x, x') = (1/m)Σ_j ∇_θ h_j(x)·∇_θ h_j(x') for h_j = a_j relu(w_jᵀx): the
    α-independent tangent kernel of f/α (Chizat et al. 2019, §2)."""
    p1, p2 = x1 @ w.T, x2 @ w.T
    m = w.shape[0]
    feat = torch.relu(p1) @ torch.relu(p2).T
    gate = ((p1 > 0).to(w.dtype) * a**2) @ (p2 > 0).to(w.dtype).T
    return (feat + gate * (x1 @ x2.T)) / m


def alignment(w: torch.Tensor, a: torch.Tensor, directions: torch.Tensor, deg: float) -> float:
    """Fraction of the neurons' mass |a_j|‖w_j‖ whose direction lies within ``deg`` degrees
    of one of ``directions`` (unit rows)."""
    mass = a.abs() * w.norm(dim=1)
    cos = ((w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)) @ directions.T).max(1).values
    near = cos > math.cos(math.radians(deg))
    return float((mass * near).sum() / mass.sum())


@dataclass
class ScaledRun:
    """A trained (w, a) and the train loss at the recorded steps."""

    w: torch.Tensor
    a: torch.Tensor
    steps: list[int]
    losses: list[float]


def train_scaled(
    X: torch.Tensor,
    y: torch.Tensor,
    w0: torch.Tensor,
    a0: torch.Tensor,
    alpha: float,
    lr: float,
    steps: int,
    record: set[int],
) -> ScaledRun:
    """Gradient descent on (1/α²)·½·mean(f − y)², step lr·m per parameter, from (w₀, a₀);
    the train loss ½·mean(f − y)² at step 0 and at each step in ``record``."""
    m = w0.shape[0]
    w, a = w0.clone().requires_grad_(), a0.clone().requires_grad_()
    losses, rec_steps = [], []
    for step in range(steps + 1):
        f = alpha / m * (torch.relu(X @ w.T) @ a)
        loss = 0.5 * ((f - y) ** 2).mean()
        if step in record or step == 0:
            losses.append(float(loss.detach()))
            rec_steps.append(step)
        if step == steps:
            break
        gw, ga = torch.autograd.grad(loss / alpha**2, [w, a])
        with torch.no_grad():
            w -= lr * m * gw
            a -= lr * m * ga
    return ScaledRun(w.detach(), a.detach(), rec_steps, losses)


@torch.no_grad()
def linearized_run(
    X: torch.Tensor,
    y: torch.Tensor,
    Xt: torch.Tensor,
    w0: torch.Tensor,
    a0: torch.Tensor,
    lr: float,
    steps: int,
    record: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The α → ∞ prediction from the same init: kernel GD from f₀ = 0 with the tangent
    kernel K₀, mean loss (mode rate η·λ/n). Returns (f_lin at ``Xt`` after ``steps``,
    train loss at each step of ``record``): residual mode k decays as (1 − ηλ_k/n)^t
    (Lee et al. 2019, eq. 9–11)."""
    n = X.shape[0]
    lam, V = torch.linalg.eigh(tangent_kernel(X, X, w0, a0))
    lam = lam.clamp_min(0)
    filt = (1 - lr * lam / n) ** steps
    coef = torch.where(lam > 1e-12 * lam.max(), (1 - filt) / lam, lr * steps / n)
    f_lin = tangent_kernel(Xt, X, w0, a0) @ (V @ (coef * (V.T @ y)))
    proj = V.T @ y
    tt = torch.tensor(record, dtype=lam.dtype, device=lam.device)
    decay = (1 - lr * lam / n)[None, :] ** tt[:, None]
    return f_lin, 0.5 * ((decay * proj[None, :]) ** 2).sum(1) / n


#: elements of one (S, block, n) array in :func:`train_scaled_stacked`: 512 KiB of float64
_CACHE_ELEMENTS = 65_536


@torch.no_grad()
def train_scaled_stacked(
    X: torch.Tensor,
    y: torch.Tensor,
    w0: torch.Tensor,
    a0: torch.Tensor,
    alpha: float,
    lr: float,
    steps: int,
    record: set[int],
) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor]:
    """:func:`train_scaled` for a stack of S networks at once (w₀ (S, m, d), a₀ (S, m)),
    with the gradients in closed form (no autograd): with r = f − y,
    ∂/∂a_j = Σ_i r_i relu(w_jᵀx_i)/(αmn) and ∂/∂w_j = a_j Σ_i r_i 1(w_jᵀx_i > 0) x_i/(αmn),
    each step lr·m. Returns (w, a, recorded steps, train losses (steps, S))."""
    m, n = w0.shape[1], X.shape[0]
    w, a = w0.clone(), a0.clone()
    losses, rec_steps = [], []
    Xt = X.T.contiguous()
    # in blocks of hidden units whose (S, block, n) arrays stay in cache: at large m the
    # step is bound by memory traffic, not arithmetic; pre-activations are recomputed
    # (a (block, d) × (d, n) product) rather than kept
    block = max(1, _CACHE_ELEMENTS // max(1, w.shape[0] * n))
    parts = [slice(k, min(k + block, m)) for k in range(0, m, block)]
    for step in range(steps + 1):
        f = y.new_zeros(w.shape[0], n)
        for p in parts:
            f += (a[:, None, p] @ torch.relu(w[:, p] @ Xt)).squeeze(1)
        r = alpha / m * f - y
        if step in record or step == 0:
            losses.append(0.5 * (r**2).mean(1))
            rec_steps.append(step)
        if step == steps:
            break
        c = lr / (alpha * n)
        for p in parts:
            pre = w[:, p] @ Xt
            ga = (torch.relu(pre) @ r[:, :, None]).squeeze(2)
            gw = torch.where(pre > 0, r[:, None, :], 0.0) @ X
            w[:, p] -= c * a[:, p, None] * gw
            a[:, p] -= c * ga
    return w, a, rec_steps, torch.stack(losses)
