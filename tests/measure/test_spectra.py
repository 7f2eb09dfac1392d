"""Spectral statistics on synthetic matrices and samples with known spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.errors import UserError
from learnmech.measure.spectra import (
    effective_rank,
    eigenspectrum,
    marchenko_pastur_cdf,
    marchenko_pastur_fit,
    participation_ratio,
    powerlaw_exponent,
    stable_rank,
    tail_exponent,
)


def test_exact_power_law_is_recovered_exactly():
    lam = 3.0 * np.arange(1, 201) ** -1.7
    fit = powerlaw_exponent(lam[::-1])  # any order
    assert fit.exponent == pytest.approx(1.7, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    sub = powerlaw_exponent(lam, (10, 50))
    assert (sub.k_min, sub.k_max) == (10, 50)
    assert sub(np.array([10.0]))[0] == pytest.approx(lam[9], rel=1e-12)


def test_sample_covariance_exponent_within_se_plus_first_order_bias():
    """Gaussian data with population spectrum k^−1.5 (d = 100, n = 20,000), fit over ranks
    1–30, 10 seeds. The tolerance is 3 SE over seeds plus the first-order sample-eigenvalue
    bias: E λ̂_k = λ_k(1 + (1/n)Σ_{j≠k} λ_j/(λ_k − λ_j)) (Anderson 1963), whose fitted
    exponent differs from 1.5 by |a_pred − 1.5|."""
    a, d, n = 1.5, 100, 20_000
    lam = np.arange(1, d + 1, dtype=np.float64) ** -a
    est = []
    for seed in range(10):
        X = np.random.default_rng(seed).standard_normal((n, d)) * np.sqrt(lam)
        est.append(powerlaw_exponent(eigenspectrum(X), (1, 30)).exponent)
    e = np.array(est)
    diff = lam[:, None] - lam[None, :]
    np.fill_diagonal(diff, np.inf)
    pred = lam * (1 + (lam[None, :] / diff).sum(1) / n)
    bias = abs(powerlaw_exponent(pred, (1, 30)).exponent - a)
    se = e.std(ddof=1) / math.sqrt(e.size)
    assert abs(e.mean() - a) <= 3 * se + bias


def test_eigenspectrum_of_data_and_of_a_gram_matrix_agree():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 8)) @ np.diag([4, 3, 2, 1, 1, 0.5, 0.2, 0.1])
    ev = eigenspectrum(X)
    Xc = X - X.mean(0)
    ev_g = eigenspectrum(Xc @ Xc.T, gram=True)
    np.testing.assert_allclose(ev_g[:8], ev, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ev_g[8:], 0, atol=1e-12)
    assert np.all(np.diff(ev) <= 0)


def test_effective_dimension_statistics():
    for r in (1, 5, 37):
        assert effective_rank(np.ones(r)) == pytest.approx(r, rel=1e-12)
        assert participation_ratio(np.r_[np.ones(r), np.zeros(4)]) == pytest.approx(r)
    # two unequal values: closed forms
    p = np.array([0.8, 0.2])
    assert effective_rank(p) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert participation_ratio(p) == pytest.approx(1 / (0.64 + 0.04))
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    assert stable_rank(Q[:, :7] * 5.0) == pytest.approx(7.0, rel=1e-12)
    assert stable_rank(np.outer(rng.standard_normal(9), rng.standard_normal(4))) == pytest.approx(
        1.0, rel=1e-12
    )


def test_marchenko_pastur_cdf_matches_closed_form_moments():
    """MP moments: mean σ², second moment σ⁴(1 + q)."""
    s2, q = 0.49, 0.3
    lp = s2 * (1 + math.sqrt(q)) ** 2
    x = np.linspace(0, lp, 200_001)
    F = marchenko_pastur_cdf(x, s2, q)
    pdf_mass = np.diff(F)
    mid = 0.5 * (x[1:] + x[:-1])
    assert float((mid * pdf_mass).sum()) == pytest.approx(s2, rel=1e-5)
    assert float((mid**2 * pdf_mass).sum()) == pytest.approx(s2**2 * (1 + q), rel=1e-5)


def test_marchenko_pastur_fit_pure_noise_and_planted_spikes():
    """σ² within eigenvalue rigidity, log(M)/M relative (Erdős, Yau & Yin 2012); no
    outliers for pure noise; two planted spikes above the BBP threshold found as two."""
    N, M, sigma = 1000, 300, 0.7
    tol = math.log(M) / M
    for seed in range(3):
        rng = np.random.default_rng(seed)
        W = sigma * rng.standard_normal((N, M))
        f = marchenko_pastur_fit(W)
        assert abs(f.sigma2 / sigma**2 - 1) <= tol
        assert f.n_outliers == 0
        assert f.ks <= tol
        assert f.q == pytest.approx(M / N)
        u = np.linalg.qr(rng.standard_normal((N, 2)))[0]
        v = np.linalg.qr(rng.standard_normal((M, 2)))[0]
        # spike strengths θ·σ·√N with θ = 3, 2 > q^{1/4} = 0.74 (BBP): they separate
        spikes = W + sigma * math.sqrt(N) * (u * np.array([3.0, 2.0])) @ v.T
        g = marchenko_pastur_fit(spikes.T)  # orientation does not matter
        assert g.n_outliers == 2
        assert abs(g.sigma2 / sigma**2 - 1) <= tol + 2 / M


def test_tail_exponent_recovers_pareto_tail_with_a_uniform_body():
    """Body uniform on [0.1, 1), Pareto tail from 1 with density exponent 2.5: α̂ within
    3 SE (eq. 3.2) for every seed, and the KS-chosen x_min excludes the body."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x = np.r_[rng.uniform(0.1, 1, 3000), (1 - rng.random(3000)) ** (-1 / 1.5)]
        t = tail_exponent(x)
        assert abs(t.alpha - 2.5) <= 3 * t.stderr
        assert t.xmin >= 0.9
        fixed = tail_exponent(x, xmin=1.0)
        assert abs(fixed.alpha - 2.5) <= 3 * fixed.stderr


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: powerlaw_exponent([]), "empty"),
        (lambda: powerlaw_exponent([1.0, np.nan, 0.5]), "NaN"),
        (lambda: powerlaw_exponent(np.ones(10), (5, 3)), "fit_range"),
        (lambda: effective_rank([1.0, -1.0]), "non-negative"),
        (lambda: participation_ratio([0.0, 0.0]), "all zeros"),
        (lambda: tail_exponent([1.0, 2.0, -3.0] * 10), "positive"),
        (lambda: tail_exponent([1.0, 2.0]), "more than"),
        (lambda: marchenko_pastur_fit(np.ones(5)), "2-D"),
        (lambda: eigenspectrum(np.ones((3, 4)), gram=True), "square"),
        (lambda: stable_rank(np.zeros((3, 3))), "all zeros"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(UserError, match=match):
        call()
