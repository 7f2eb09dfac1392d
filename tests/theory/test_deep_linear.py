"""Deep linear dynamics: closed forms, the ODE, the discrete map and real training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnmech.errors import UserError
from learnmech.nets.deep_linear import DeepLinear
from learnmech.theory import deep_linear as dl

S = np.array([3.0, 1.5, 0.75])


def test_depth2_closed_form_solves_the_ode():
    t = np.linspace(0, 5, 101)
    u = dl.mode_trajectory(S, 1e-3, t, depth=2)
    # du/dt = 2u(s − u) by central differences on a fine grid
    h = 1e-6
    du = (dl.mode_trajectory(S, 1e-3, t + h, 2) - dl.mode_trajectory(S, 1e-3, t[:] + 0, 2)) / h
    np.testing.assert_allclose(du, 2 * u * (S - u), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(u[0], 1e-3)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_learning_time_inverts_the_trajectory(depth):
    tl = dl.learning_time(S, 1e-3, depth)
    u = np.diag(dl.mode_trajectory(S, 1e-3, tl, depth))  # mode k at its own time
    np.testing.assert_allclose(u, S / 2, rtol=1e-9)


def test_depth2_learning_time_closed_form_and_depth_scalings():
    u0, uf = 1e-4, 0.5 * S
    t2 = dl.learning_time(S, u0, 2)
    np.testing.assert_allclose(t2, 1 / (2 * S) * np.log(uf * (S - u0) / (u0 * (S - uf))))
    # depth L ≥ 3: t ≈ (L/(L−2)) u0^{2/L−1} / (L s) as u0 → 0 (leading term of the integral)
    for L in (3, 4):
        u0 = 1e-10
        lead = u0 ** (2 / L - 1) / ((L - 2) * S)
        t = dl.learning_time(S, u0, L)
        np.testing.assert_allclose(t / lead, 1, atol=5e-3)


def test_discrete_map_tends_to_the_flow_as_lr_shrinks():
    errs = []
    for lr in (0.02, 0.01, 0.005):
        T = 12.0
        steps = round(T / lr)
        d = dl.mode_trajectory_discrete(S, 1e-2, steps, lr, 3)[-1]
        f = dl.mode_trajectory(S, 1e-2, [T], 3)[-1]
        errs.append(np.max(np.abs(d - f)))
    # first-order (Euler) method: error halves with lr
    assert errs[0] / errs[1] == pytest.approx(2, rel=0.15)
    assert errs[1] / errs[2] == pytest.approx(2, rel=0.15)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_torch_training_from_aligned_init_follows_the_discrete_map(depth, f64):
    task = dl.whitened_task(S, 7, 5, 40, seed=1)
    np.testing.assert_allclose(task["X"].T @ task["X"] / 40, np.eye(7), atol=1e-12)
    net = DeepLinear([7] + [9] * (depth - 1) + [5])
    net.align_(task["U"], task["V"], 1e-3, seed=0)
    np.testing.assert_allclose(net.mode_strengths(task["U"], task["V"]), 1e-3, rtol=1e-12)
    X, Y = torch.from_numpy(task["X"]), torch.from_numpy(task["Y"])
    opt = torch.optim.SGD(net.parameters(), lr=0.02)
    steps = 300
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((net(X) - Y) ** 2).sum(1).mean()).backward()
        opt.step()
    th = dl.mode_trajectory_discrete(S, 1e-3, steps, 0.02, depth, [steps])[0]
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(net.mode_strengths(task["U"], task["V"]), th, atol=100 * steps * eps)


def test_loss_curve_is_half_squared_gap():
    u = np.array([[0.0, 0.0, 0.0], S])
    np.testing.assert_allclose(dl.loss_curve(S, u), [0.5 * np.sum(S**2), 0.0])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: dl.mode_trajectory([-1.0], 0.1, [0.0]), "positive"),
        (lambda: dl.mode_trajectory([1.0], 2.0, [0.0]), "below"),
        (lambda: dl.mode_trajectory([1.0], 0.1, [-1.0]), "times"),
        (lambda: dl.mode_trajectory([1.0], 0.1, [1.0], depth=0), "depth"),
        (lambda: dl.learning_time([1.0], 0.9, 2), "already past"),
        (lambda: dl.mode_trajectory_discrete([1.0], 0.1, 5, math.nan), "lr"),
        (lambda: dl.whitened_task([1.0, 2.0], 1, 3, 10), "rank"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(UserError, match=match):
        call()


def test_fit_modes_follows_the_exact_discrete_map_and_the_control_breaks_it() -> None:
    import numpy as np
    import torch

    from learnmech.nets.deep_linear import DeepLinear
    from learnmech.theory import deep_linear as dl

    s, steps, lr = [2.0, 1.0], 300, 0.05
    rec = np.arange(0, steps + 1, 30)
    errs = []
    for anis in (1.0, 4.0):
        task = dl.whitened_task(s, 4, 3, 32, seed=0, anisotropy=anis)
        net = DeepLinear([4, 5, 3], seed=0)
        net.align_(task["U"], task["V"], 1e-2, seed=0)
        X, Y = torch.from_numpy(task["X"]), torch.from_numpy(task["Y"])
        S, losses = net.fit_modes(X, Y, task["U"], task["V"], lr, steps, rec)
        th = dl.mode_trajectory_discrete(np.array(s), 1e-2, steps, lr, 2, rec)
        errs.append(float(np.max(np.abs(S - th))))
        assert len(losses) == rec.size
    assert errs[0] < 1e-12 and errs[1] > 1e-3
    sharp = dl.staircase_sharpness(rec.astype(float), S, s)
    assert np.isfinite(sharp)
