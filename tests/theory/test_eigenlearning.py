"""Eigenlearning against identities, closed forms, the BCP form and Gaussian-design simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.errors import UserError
from learnmech.theory import eigenlearning as el


def _power_law(M: int, a: float = 1.5, b: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, M + 1, dtype=np.float64)
    v = k ** (-b / 2)
    return k**-a, v / np.linalg.norm(v)


def test_sum_of_learnabilities_is_n_at_zero_ridge_over_30_decades():
    lam = np.geomspace(1.0, 1e-30, 5000)
    rng = np.random.default_rng(0)
    lam = rng.permutation(lam)  # order must not matter
    ns = np.array([1.0, 2.5, 10, 100, 1000, 4999])
    p = el.predict(lam, np.ones_like(lam), ns)
    np.testing.assert_allclose(p.dof, ns, rtol=1e-10)
    np.testing.assert_allclose(p.learnability().sum(-1), ns, rtol=1e-10)
    np.testing.assert_array_equal(p.train_mse, 0.0)


def test_dof_plus_ridge_over_kappa_is_n():
    lam, v = _power_law(3000)
    ns = np.array([[4.0], [64.0], [512.0]])
    ridges = np.array([[1e-8, 1e-3, 1.0, 100.0]])
    p = el.predict(lam, v, ns, ridges)
    assert p.kappa.shape == (3, 4)
    np.testing.assert_allclose(p.dof + p.ridge / p.kappa, p.n, rtol=1e-10)


def test_flat_spectrum_closed_form_and_the_limit_beyond_m_modes():
    M = 500
    lam = np.full(M, 0.37)
    v = np.full(M, 1 / math.sqrt(M))
    ns = np.array([1.0, 50, 250, 499])
    p = el.predict(lam, v, ns)
    np.testing.assert_allclose(p.test_mse, 1 - ns / M, rtol=1e-10)
    # n ≥ M, ridgeless: κ = 0, E₀ = n/(n − M): least squares with more samples than features
    q = el.predict(lam, v, [500.0, 600.0, 1000.0], noise_var=0.2)
    np.testing.assert_array_equal(q.kappa, 0.0)
    assert math.isinf(q.test_mse[0])
    np.testing.assert_allclose(q.test_mse[1:], 0.2 * np.array([6.0, 2.0]), rtol=1e-14)
    # train MSE of least squares: (1 − M/n)·ε²
    np.testing.assert_allclose(q.train_mse[1:], 0.2 * (1 - M / np.array([600.0, 1000.0])))
    # the ridgeless limit is the δ → 0 limit
    r = el.predict(lam, v, 600.0, 1e-9, 0.2)
    np.testing.assert_allclose([r.test_mse, r.train_mse], [q.test_mse[1], q.train_mse[1]], 1e-6)


def test_zero_eigenvalues_keep_their_target_power_as_bias():
    lam = np.array([1.0, 0.5, 0.0, 0.0])
    v = np.array([1.0, 1.0, 0.5, 0.5])
    p = el.predict(lam, v, 10.0)
    assert p.kappa == 0
    np.testing.assert_allclose(p.bias, 0.5 * 10 / 8)


def test_agrees_with_bordelon_canatar_pehlevan_form():
    lam, v = _power_law(2000)
    for n, ridge, noise in [(10, 0.0, 0.0), (100, 0.0, 0.3), (300, 1e-3, 0.1), (50, 2.0, 0.0)]:
        k_bcp, eg = el.bcp_generalization_error(lam, v, n, ridge, noise)
        p = el.predict(lam, v, n, ridge, noise)
        np.testing.assert_allclose(k_bcp / n, p.kappa, rtol=1e-10)
        np.testing.assert_allclose(eg + noise, p.test_mse, rtol=1e-10)


def _mp_risk(gamma: float, lam: float, r2: float, s2: float) -> float:
    """Excess ridge risk for isotropic features (Hastie et al. 2022, Thm 5 / Dobriban &
    Wager 2018): r²λ²m'(−λ) + σ²γ(m(−λ) − λm'(−λ)), m the Marchenko–Pastur Stieltjes
    transform at ratio γ."""
    a = 1 - gamma + lam
    D = math.sqrt(a * a + 4 * gamma * lam)
    m = (-a + D) / (2 * gamma * lam)
    dm_dlam = ((-1 + (a + 2 * gamma) / D) * 2 * gamma * lam - (-a + D) * 2 * gamma) / (
        2 * gamma * lam
    ) ** 2
    mp = -dm_dlam  # d/dz at z = −λ
    return r2 * lam**2 * mp + s2 * gamma * (m - lam * mp)


@pytest.mark.parametrize("gamma", [0.25, 0.8, 1.5, 4.0])
def test_isotropic_linear_regression_matches_hastie_closed_forms(gamma):
    d, r2, s2 = 400, 2.0, 0.5
    n = d / gamma
    lam, v = np.ones(d), np.full(d, math.sqrt(r2 / d))
    # ridgeless (Hastie et al. 2022, Thm 1–2)
    excess = s2 * gamma / (1 - gamma) if gamma < 1 else r2 * (1 - 1 / gamma) + s2 / (gamma - 1)
    p0 = el.predict(lam, v, n, 0.0, s2)
    np.testing.assert_allclose(p0.test_mse - s2, excess, rtol=1e-10)
    # ridge λ (their objective (1/n)‖y − Xβ‖² + λ‖β‖², i.e. δ = nλ)
    for lam_r in (0.01, 0.3, 2.0):
        p = el.predict(lam, v, n, n * lam_r, s2)
        np.testing.assert_allclose(p.test_mse - s2, _mp_risk(gamma, lam_r, r2, s2), rtol=1e-9)
    # optimal ridge λ* = σ²γ/r², i.e. δ* = σ²d/r² (golden-section accuracy 1e-6 in log δ)
    delta, best = el.optimal_ridge(lam, v, n, s2)
    np.testing.assert_allclose(delta, s2 * d / r2, rtol=1e-5)
    np.testing.assert_allclose(
        best.test_mse - s2, _mp_risk(gamma, s2 * gamma / r2, r2, s2), rtol=1e-9
    )


def test_optimal_ridge_is_zero_without_noise_for_a_flat_target():
    lam = np.full(100, 1.0)
    delta, _ = el.optimal_ridge(lam, np.full(100, 0.1), [10.0, 50.0])
    np.testing.assert_array_equal(delta, 0.0)


def _simulate(M: int, n: int, delta: float, noise: float, draws: int, seed: int):
    """Gaussian design: φ_k(x) = z_k ~ N(0, 1), linear kernel Σ λ_k z_k z'_k, exact test MSE."""
    rng = np.random.default_rng(seed)
    lam, v = _power_law(M)
    mse, kares = [], []
    for _ in range(draws):
        Z = rng.standard_normal((n, M))
        y = Z @ v + math.sqrt(noise) * rng.standard_normal(n)
        K = (Z * lam) @ Z.T
        w = lam * (Z.T @ np.linalg.solve(K + delta * np.eye(n), y))
        mse.append(np.sum((w - v) ** 2) + noise)  # E over fresh noisy test labels
        kares.append(float(el.kare(K, y, delta)))
    return lam, v, np.array(mse), np.array(kares)


@pytest.mark.parametrize("n,delta", [(64, 1e-2), (256, 0.0), (256, 1.0)])
def test_gaussian_design_simulation_within_standard_error(n, delta):
    """Tolerance: 3 SE of the simulated mean plus the deterministic-equivalent error bound,
    taken as 1/n relative (the finite-n correction is O(1/n) for Gaussian design; Cheng &
    Montanari 2022, Thm 1)."""
    draws = 200
    lam, v, mse, kares = _simulate(1000, n, delta, 0.1, draws, seed=n)
    pred = float(el.predict(lam, v, n, delta, 0.1).test_mse)
    for sample in (mse, kares):
        se = sample.std(ddof=1) / math.sqrt(draws)
        assert abs(sample.mean() - pred) <= 3 * se + pred / n


def test_learnability_and_function_learnability():
    lam, v = _power_law(200)
    p = el.predict(lam, v, np.array([5.0, 50.0]))
    L = p.learnability()
    assert L.shape == (2, 200)
    assert np.all(np.diff(L, axis=1) <= 0)  # spectral bias: larger λ, better learned
    fl = p.function_learnability()
    np.testing.assert_allclose(fl, (L * v**2).sum(1))
    assert fl[0] < fl[1] < 1


def test_many_modes_and_sample_sizes_at_once():
    lam, v = _power_law(200_000, a=2.0)
    ns = np.geomspace(1, 1e5, 100)
    p = el.predict(lam, v, ns, 0.0, 0.0)
    np.testing.assert_allclose(p.dof, ns, rtol=1e-10)
    for i in (0, 50, 99):
        _, eg = el.bcp_generalization_error(lam, v, ns[i])
        np.testing.assert_allclose(p.test_mse[i], eg, rtol=1e-10)


def test_kare_ridgeless_limit_and_errors():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 50))
    K = X @ X.T
    y = rng.standard_normal(30)
    np.testing.assert_allclose(el.kare(K, y, 0.0), el.kare(K, y, 1e-10), rtol=1e-6)
    with pytest.raises(UserError, match="square"):
        el.kare(np.ones((3, 4)), np.ones(3), 1.0)
    with pytest.raises(UserError, match="rows"):
        el.kare(K, np.ones(5), 1.0)


@pytest.mark.parametrize(
    "args,match",
    [
        (([1.0, -1.0], [1.0, 1.0], 1), "non-negative"),
        (([1.0, np.nan], [1.0, 1.0], 1), "NaN"),
        (([], [], 1), "non-empty"),
        (([1.0, 1.0], [1.0], 1), "one row per eigenvalue"),
        (([1.0, 1.0], [1.0, 1.0], 0), "n must be positive"),
        (([1.0, 1.0], [1.0, 1.0], -3), "n must be positive"),
        (([1.0, 1.0], [1.0, 1.0], [1, 2, 3], [0.1, 0.2]), "broadcast"),
    ],
)
def test_bad_input_is_named(args, match):
    with pytest.raises(UserError, match=match):
        el.predict(*args)


def test_bad_ridge_and_noise():
    with pytest.raises(UserError, match="ridge"):
        el.predict([1.0], [1.0], 1, -1.0)
    with pytest.raises(UserError, match="noise_var"):
        el.predict([1.0], [1.0], 1, 0.0, float("nan"))
