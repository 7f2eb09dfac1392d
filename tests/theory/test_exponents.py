"""A-priori exponents: the local exponent of eigenlearning tends to min(β − 1, 2α)."""

from __future__ import annotations

import pytest

from learnmech.errors import UserError
from learnmech.theory.exponents import (
    asymptotic_exponent,
    asymptotic_model_exponent,
    local_exponent,
    projection_error,
)
from learnmech.theory.spectra import power_law_spectrum


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 1.5), (1.2, 2.0), (1.5, 5.0)])
def test_local_exponent_converges_to_the_asymptotic_one(alpha, beta):
    """At n = 10³ the local exponent differs from min(β − 1, 2α) by the spectrum's cutoff at
    M modes (and O(1/n) terms): the difference shrinks as M grows and is < 5% at M = 4·10⁶."""
    target = asymptotic_exponent(alpha, beta)
    errs = []
    for modes in (250_000, 1_000_000, 4_000_000):
        s = power_law_spectrum(modes, alpha, beta)
        errs.append(abs(float(local_exponent(s.eigenvalues, s.target_coeffs, 1e3)) - target))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.05 * target


def test_asymptotic_exponent_regimes_and_errors():
    assert asymptotic_exponent(1.5, 1.2) == pytest.approx(0.2)  # target-limited
    assert asymptotic_exponent(1.1, 4.0) == pytest.approx(2.2)  # kernel-limited (saturation)
    with pytest.raises(UserError, match="alpha"):
        asymptotic_exponent(0.9, 2.0)
    with pytest.raises(UserError, match="beta"):
        asymptotic_exponent(2.0, 1.0)


def test_projection_error_matches_random_features_with_unlimited_data():
    """Best fit on P random features (population least squares), 40 draws: within 3 SE plus
    the deterministic-equivalent bound 1/P relative."""
    import numpy as np

    s = power_law_spectrum(1500, 1.5, 2.0)
    lam, v = s.eigenvalues, s.target_coeffs
    rng = np.random.default_rng(0)
    for P in (16, 64, 256):
        errs = []
        for _ in range(40):
            G = rng.standard_normal((P, lam.size)) * np.sqrt(lam)
            w = np.linalg.solve(G @ G.T, G @ v)
            errs.append(np.sum((G.T @ w - v) ** 2))
        m, se = np.mean(errs), np.std(errs, ddof=1) / np.sqrt(40)
        pred = float(projection_error(lam, v, P))
        assert abs(m - pred) <= 3 * se + pred / P


def test_model_exponent_differs_from_the_data_exponent():
    assert asymptotic_model_exponent(1.5, 3.5) == pytest.approx(1.5)
    assert asymptotic_exponent(1.5, 3.5) == pytest.approx(2.5)
