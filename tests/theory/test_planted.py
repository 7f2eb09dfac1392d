"""Population dynamics of two-layer nets in the planted subspace (theory.planted)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from learnmech.data.algorithmic import planted_singular_task
from learnmech.theory.planted import (
    arccos_kernel,
    gaussian_moments,
    planted_subspace_dynamics,
)


def test_arccos_kernel_is_the_relu_gaussian_moment():
    """Cho & Saul's closed form against Monte Carlo over 400,000 Gaussian draws, within
    5 standard errors, for aligned, orthogonal, opposite and random pairs."""
    g = torch.Generator().manual_seed(0)
    u = torch.cat(
        [
            torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.5, 0.0], [-1.0, 0.0, 0.0]]),
            torch.randn(3, 3, generator=g),
        ]
    ).double()
    z = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    h = torch.relu(z @ u.T)
    prod = h[:, :, None] * h[:, None, :]
    mc, se = prod.mean(0), prod.std(0) / math.sqrt(z.shape[0])
    k = arccos_kernel(u)
    assert torch.all((k - mc).abs() <= 5 * se + 1e-12)
    np.testing.assert_allclose(k[0, 0], 0.5, rtol=1e-12)  # E[relu(g)²] = 1/2
    np.testing.assert_allclose(k[0, 3], 0.0, atol=1e-12)  # opposite half-spaces


def test_tanh_moments_match_adaptive_quadrature():
    """The quasi-Monte-Carlo moments against scipy's adaptive quadrature of the same
    one- and two-dimensional Gaussian integrals, at |u| up to 2.6 (tanh nearly a step)."""
    u = torch.tensor([[2.6, 0.0, 0.0], [1.0, 1.2, -0.4], [0.1, 0.0, 0.05]], dtype=torch.float64)
    m, K = gaussian_moments(u, "tanh")
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    for i in range(3):
        si = float(u[i].norm())
        ref = integrate.quad(lambda x, s=si: (1 - math.tanh(s * x) ** 2) * pdf(x), -12, 12)[0]
        assert float(m[i]) == pytest.approx(ref, rel=2e-3)
    for i, j in [(0, 1), (1, 2), (0, 0)]:
        si, sj = float(u[i].norm()), float(u[j].norm())
        rho = float(u[i] @ u[j]) / (si * sj)
        rho = min(rho, 1 - 1e-9)

        def f(y, x, si=si, sj=sj, rho=rho):
            b = sj * (rho * x + math.sqrt(1 - rho * rho) * y)
            return math.tanh(si * x) * math.tanh(b) * pdf(x) * pdf(y)

        ref = integrate.dblquad(f, -9, 9, -9, 9, epsabs=1e-9)[0]
        assert float(K[i, j]) == pytest.approx(ref, rel=2e-3, abs=1e-5)


def test_linear_net_reduced_dynamics_is_the_sampled_gradient_descent():
    """On whitened inputs (XᵀX/n = I exactly) a linear net started inside the planted
    subspace (W₁ = W₁VVᵀ, W₂ = UUᵀW₂) stays there, and its sampled gradient descent is the
    population dynamics: the reduced model reproduces the trained network's mode
    strengths to round-off — an independent integration. (Components outside the
    subspace change it only at third order in the init scale.)"""
    task = planted_singular_task(256, 6, 5, [2.0, 1.0], seed=1)
    g = torch.Generator().manual_seed(3)
    U, V = task.u, task.v
    W1 = (1e-2 * torch.randn(7, 6, generator=g, dtype=torch.float64) @ V @ V.T).requires_grad_(True)
    W2 = (1e-2 * U @ U.T @ torch.randn(5, 7, generator=g, dtype=torch.float64)).requires_grad_(True)
    pred = planted_subspace_dynamics(
        (W1 @ task.v).detach().numpy(), (W2.T @ task.u).detach().numpy(), task.s, "linear", 0.1, 60
    )
    meas = []
    for _ in range(61):
        f = task.x @ W1.T @ W2.T
        with torch.no_grad():
            meas.append(torch.diag(task.u.T @ (f.T @ task.x / 256) @ task.v).numpy())
        loss = 0.5 * ((f - task.y) ** 2).sum(1).mean()
        g1, g2 = torch.autograd.grad(loss, (W1, W2))
        with torch.no_grad():
            W1 -= 0.1 * g1
            W2 -= 0.1 * g2
    np.testing.assert_allclose(pred, np.array(meas), rtol=1e-8, atol=1e-12)


def test_relu_escape_of_a_large_sample_follows_the_reduced_dynamics():
    """A ReLU net trained on 8,192 samples escapes mode 1 (u = s/8) within a quarter of an
    e-folding time 1/(ηs) of the reduced model; the linear escape at half rate, which
    omits ReLU's even part, is half an e-fold late at this init (the saddle study's
    finding), so the check tells the two apart."""
    task = planted_singular_task(8192, 8, 6, [3.0, 1.5], seed=0)
    lr, steps = 0.05, 160
    g = torch.Generator().manual_seed(0)
    W1 = (
        1e-3 / math.sqrt(8) * torch.randn(16, 8, generator=g, dtype=torch.float64)
    ).requires_grad_(True)
    W2 = (1e-3 / 4 * torch.randn(6, 16, generator=g, dtype=torch.float64)).requires_grad_(True)
    pred = planted_subspace_dynamics(
        (W1 @ task.v).detach().numpy(), (W2.T @ task.u).detach().numpy(), task.s, "relu", lr, steps
    )
    meas = []
    for _ in range(steps + 1):
        f = torch.relu(task.x @ W1.T) @ W2.T
        with torch.no_grad():
            meas.append(float(task.u[:, 0] @ (f.T @ task.x / 8192) @ task.v[:, 0]))
        loss = 0.5 * ((f - task.y) ** 2).sum(1).mean()
        g1, g2 = torch.autograd.grad(loss, (W1, W2))
        with torch.no_grad():
            W1 -= lr * g1
            W2 -= lr * g2
    st = np.arange(steps + 1)
    t_meas = np.interp(3 / 8, np.array(meas), st)
    t_pred = np.interp(3 / 8, pred[:, 0], st)
    assert abs(t_meas - t_pred) * lr * 3.0 < 0.25


def test_a_stack_is_its_members():
    rng = np.random.default_rng(0)
    u, w = 0.01 * rng.standard_normal((2, 3, 5, 2))
    both = planted_subspace_dynamics(u, w, [2.0, 1.0], "tanh", 0.05, 30)
    one = planted_subspace_dynamics(u[1], w[1], [2.0, 1.0], "tanh", 0.05, 30)
    np.testing.assert_allclose(both[:, 1], one, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"act": "gelu"}, "act must be one of"),
        ({"w_in": np.zeros((4, 3))}, r"\(hidden, r=2\)"),
        ({"lr": -1.0}, "lr must be"),
        ({"steps": -1}, "steps must be"),
        ({"singular_values": [1.0, math.nan]}, "finite"),
    ],
)
def test_bad_input(kw, match):
    args = {
        "w_in": np.full((4, 2), 0.01),
        "w_out": np.full((4, 2), 0.01),
        "singular_values": [2.0, 1.0],
        "act": "relu",
        "lr": 0.05,
        "steps": 3,
    } | kw
    with pytest.raises(ValueError, match=match):
        planted_subspace_dynamics(**args)
