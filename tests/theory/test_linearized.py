"""Linearized dynamics vs explicit ODE integration, explicit GD, and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from learnmech.theory import linearized
from learnmech.theory.kernels import mlp_kernels


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    xt = rng.standard_normal((5, 3))
    y = np.sin(x[:, :2])  # two outputs
    kw = dict(depth=2, w_std=1.3, b_std=0.2)
    k = mlp_kernels(x, **kw)
    ks = mlp_kernels(xt, x, **kw)
    kss = mlp_kernels(xt, **kw)
    f0 = rng.standard_normal((12, 2)) * 0.3
    f0t = rng.standard_normal((5, 2)) * 0.3
    return dict(x=x, y=y, k=k, ks=ks, kss=kss, f0=f0, f0t=f0t)


def test_gradient_flow_matches_ode(problem):
    p = problem
    K, Ks, y = p["k"].ntk, p["ks"].ntk, p["y"]
    lr, n = 0.7, 12
    times = np.array([0.0, 0.1, 0.5, 2.0, 7.0])
    pred = linearized.predict(
        K, y, times, lr=lr, k_test_train=Ks, f0_train=p["f0"], f0_test=p["f0t"], loss="mean"
    )

    def rhs(_t, z):
        f = z[: n * 2].reshape(n, 2)
        r = f - y
        # mean loss ½·mean_i |f_i − y_i|²: dθ/dt = −η∇L gives df/dt = −(η/n) Θ r
        return np.concatenate([(-(lr / n) * K @ r).ravel(), (-(lr / n) * Ks @ r).ravel()])

    z0 = np.concatenate([p["f0"].ravel(), p["f0t"].ravel()])
    sol = solve_ivp(rhs, (0, times[-1]), z0, t_eval=times, rtol=1e-12, atol=1e-13, method="DOP853")
    for i in range(len(times)):
        np.testing.assert_allclose(
            pred.train[i], sol.y[:24, i].reshape(12, 2), rtol=1e-8, atol=1e-10
        )
        np.testing.assert_allclose(pred.test[i], sol.y[24:, i].reshape(5, 2), rtol=1e-8, atol=1e-10)


def test_discrete_gd_matches_iteration(problem):
    p = problem
    K, Ks, y = p["k"].ntk, p["ks"].ntk, p["y"]
    lr = 0.9 / np.linalg.eigvalsh(K)[-1]
    steps = np.arange(0, 31)
    pred = linearized.predict(
        K, y, steps, lr=lr, k_test_train=Ks, f0_train=p["f0"], f0_test=p["f0t"], discrete=True
    )
    f, ft = p["f0"].copy(), p["f0t"].copy()
    for s in steps:
        np.testing.assert_allclose(pred.train[s], f, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(pred.test[s], ft, rtol=1e-10, atol=1e-12)
        r = f - y
        f, ft = f - lr * K @ r, ft - lr * Ks @ r


def test_ensemble_mean_variance_and_loss_against_monte_carlo(problem):
    """Draw f₀ ~ GP(0, NNGP) jointly on train+test, evolve the linear model, compare."""
    p = problem
    K, Ks, y = p["k"].ntk, p["ks"].ntk, p["y"][:, :1]
    S, Ss, Sss = p["k"].nngp, p["ks"].nngp, p["kss"].nngp
    lr, t = 0.5 / np.linalg.eigvalsh(K)[-1], np.array([0.0, 3.0, 40.0])
    pred = linearized.predict(
        K,
        y,
        t,
        lr=lr,
        k_test_train=Ks,
        y_test=np.zeros((5, 1)),
        discrete=True,
        nngp_train=S,
        nngp_test_train=Ss,
        nngp_test_diag=np.diag(Sss),
    )
    joint = np.block([[S, Ss.T], [Ss, Sss]])
    rng = np.random.default_rng(7)
    N = 20000
    L = np.linalg.cholesky(joint + 1e-12 * np.eye(17))
    draws = (L @ rng.standard_normal((17, N))).T  # (N, 17)
    f0, f0t = draws[:, :12], draws[:, 12:]
    for i, steps in enumerate(t.astype(int)):
        e = np.linalg.matrix_power(np.eye(12) - lr * K, steps)
        gain = Ks @ np.linalg.solve(K, np.eye(12) - e)
        ft = f0t + (y[:, 0] - f0) @ gain.T  # (N, 5)
        mean, var = ft.mean(0), ft.var(0, ddof=1)
        se_mean = np.sqrt(var / N)
        se_var = var * math.sqrt(2 / (N - 1))
        assert np.all(np.abs(mean - pred.test[i, :, 0]) < 4 * se_mean)
        assert np.all(np.abs(var - pred.test_var[i]) < 4 * se_var)
        ftr = y[:, 0] + (f0 - y[:, 0]) @ e.T
        loss = 0.5 * np.mean(ftr**2 - 2 * ftr * y[:, 0] + y[:, 0] ** 2, axis=1)
        assert abs(loss.mean() - pred.expected_train_loss[i]) < 4 * loss.std(ddof=1) / math.sqrt(N)
        tl = 0.5 * np.mean(ft**2, axis=1)  # y_test = 0
        assert abs(tl.mean() - pred.expected_test_loss[i]) < 4 * tl.std(ddof=1) / math.sqrt(N)


def test_spectral_bias_mode_decay(problem):
    K = problem["k"].ntk
    lam, v = np.linalg.eigh(K)
    y = v[:, [-1]] + v[:, [0]]  # one fast and one slow mode
    pred = linearized.predict(K, y, [1.0], lr=1.0)
    resid = v.T @ (pred.train[0] - y)
    np.testing.assert_allclose(resid[-1, 0], -math.exp(-lam[-1]), rtol=1e-9)
    np.testing.assert_allclose(resid[0, 0], -math.exp(-lam[0]), rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(k_train=np.ones((3, 2)), y_train=np.ones(3), times=[1.0]), "square"),
        (dict(k_train=np.eye(3), y_train=np.ones(4), times=[1.0]), "rows"),
        (dict(k_train=np.eye(3), y_train=np.ones(3), times=[-1.0]), "times"),
        (dict(k_train=np.eye(3), y_train=np.ones(3), times=[]), "times"),
        (dict(k_train=np.eye(3), y_train=[1, np.nan, 2], times=[1.0]), "NaN"),
        (dict(k_train=np.eye(3), y_train=np.ones(3), times=[1.0], lr=0.0), "lr"),
        (
            dict(k_train=np.eye(3), y_train=np.ones(3), times=[1.0], k_test_train=np.ones((2, 4))),
            "k_test_train",
        ),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linearized.predict(**kwargs)


def test_response_operators_reproduce_a_linear_model_trained_by_gd() -> None:
    rng = np.random.default_rng(0)
    J, Jt = rng.standard_normal((6, 20)), rng.standard_normal((3, 20))
    K, Kt = J @ J.T, Jt @ J.T
    y, f0, f0t = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(3)
    lr = 0.5 / np.linalg.eigvalsh(K)[-1]
    gain, resid = linearized.response_operators(K, Kt, [0, 7, 40], lr)
    # a linear model f = f0 + J θ trained by GD on ½‖f − y‖² from θ = 0
    theta = np.zeros(20)
    for t in range(41):
        if t in (7, 40):
            k = [0, 7, 40].index(t)
            assert np.allclose(f0t + Jt @ theta - f0t, gain[k] @ (y - f0), atol=1e-10)
            assert np.allclose(f0 + J @ theta - y, resid[k] @ (f0 - y), atol=1e-10)
        theta -= lr * J.T @ (f0 + J @ theta - y)
