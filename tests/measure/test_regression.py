"""Exact test errors of linear learners: closed-form limits in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.measure import regression as rr


def _spectrum(M: int = 12) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, M + 1, dtype=np.float64)
    return k**-1.5, k**-1.0


def test_ridgeless_kernel_regression_recovers_the_target_with_more_samples_than_modes() -> None:
    lam, v = _spectrum()
    Z, y = rr.gaussian_task(v, 40, 0.0, np.random.default_rng(0))
    (err,) = rr.kernel_ridge_error(lam, v, Z, y, [0.0])
    assert err == pytest.approx(0.0, abs=1e-20)


def test_an_infinite_ridge_learns_nothing() -> None:
    lam, v = _spectrum()
    Z, y = rr.gaussian_task(v, 20, 0.3, np.random.default_rng(1))
    (err,) = rr.kernel_ridge_error(lam, v, Z, y, [1e12], noise_var=0.3)
    assert err == pytest.approx(float(v @ v) + 0.3, rel=1e-9)


def test_kernel_ridge_equals_the_primal_ridge_solution() -> None:
    lam, v = _spectrum()
    n, ridge = 8, 1e-2
    Z, y = rr.gaussian_task(v, n, 0.1, np.random.default_rng(2))
    X = Z * np.sqrt(lam)  # features Λ^{1/2} z
    beta = np.linalg.solve(X.T @ X + ridge * n * np.eye(lam.size), X.T @ y)
    expect = float(np.sum((np.sqrt(lam) * beta - v) ** 2) + 0.1)
    (err,) = rr.kernel_ridge_error(lam, v, Z, y, [ridge], noise_var=0.1)
    assert err == pytest.approx(expect, rel=1e-10)


def test_as_many_random_features_as_modes_fit_the_target_exactly() -> None:
    lam, v = _spectrum()
    G = rr.random_features(lam.size, lam, np.random.default_rng(3))
    assert rr.feature_error(G, v) == pytest.approx(0.0, abs=1e-18)
    few = rr.random_features(3, lam, np.random.default_rng(3), normalize=True)
    # three features span at most three directions: the error cannot vanish
    assert 0.0 < rr.feature_error(few, v) < float(v @ v)


def test_feature_ridge_regression_matches_its_normal_equations() -> None:
    lam, v = _spectrum()
    rng = np.random.default_rng(4)
    G = rr.random_features(5, lam, rng, normalize=True)
    Z, y = rr.gaussian_task(v, 30, 0.0, rng)
    Phi = Z @ G.T
    c = np.linalg.solve(Phi.T @ Phi + 0.1 * 30 * np.eye(5), Phi.T @ y)
    expect = float(np.sum((G.T @ c - v) ** 2))
    assert rr.feature_error(G, v, 0.0, Z, y, ridge=0.1) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(ValueError, match="targets"):
        rr.feature_error(G, v, 0.0, Z)


def test_population_regression_interpolates_its_own_population() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((10, 30))
    K = X @ X.T  # full rank: 10 points in 30 dimensions
    Y = rng.standard_normal((10, 2))
    (err,) = rr.population_kernel_ridge_error(K, Y, np.arange(10), [0.0])
    assert err == pytest.approx(0.0, abs=1e-18)
    half = rr.population_kernel_ridge_error(K, Y, np.arange(5), [0.0, 1e9])
    assert half[1] == pytest.approx(float(np.mean(Y**2)), rel=1e-6)
    assert math.isfinite(half[0])


def test_one_eigendecomposition_solves_every_ridge_like_lstsq_and_solve() -> None:
    """The shared eigendecomposition gives lstsq's minimum-norm solution at δ = 0 (on a
    rank-deficient Gram matrix too) and ``solve``'s at δ > 0, to float64 rounding."""
    rng = np.random.default_rng(3)
    for rank in (40, 25):
        A = rng.standard_normal((40, rank))
        K, y = A @ A.T, rng.standard_normal(40)
        a0, a1 = rr._ridge_solves(K, y, [0.0, 0.4])
        ref0 = np.linalg.lstsq(K, y, rcond=None)[0]
        ref1 = np.linalg.solve(K + 0.4 * np.eye(40), y)
        cond = np.linalg.cond(K + 0.4 * np.eye(40))
        assert np.abs(a0 - ref0).max() <= 1e-8 * np.abs(ref0).max()
        assert np.abs(a1 - ref1).max() <= 40 * cond * 1e-16 * np.abs(ref1).max()
