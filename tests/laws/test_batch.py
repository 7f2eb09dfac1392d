"""The S–E hyperbola of McCandlish et al. (2018) fitted to steps-to-target."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t

from learnmech.laws import fit_batch_tradeoff


def test_exact_hyperbola_is_recovered() -> None:
    B = [4, 16, 64, 256]
    S = [np.array([100 + 6400 / b] * 3) for b in B]
    fit = fit_batch_tradeoff(B, S)
    assert fit.s_min == pytest.approx(100, rel=1e-10)
    assert fit.e_min == pytest.approx(6400, rel=1e-10)
    assert fit.b_crit == pytest.approx(64, rel=1e-10)
    assert fit.chi2 == pytest.approx(0, abs=1e-12) and fit.dof == 2
    assert fit.steps_at(64) == pytest.approx(200, rel=1e-10)


def test_noisy_hyperbola_covers_the_truth_within_its_standard_error() -> None:
    rng = np.random.default_rng(0)
    B = [2, 8, 32, 128, 512]
    hits = 0
    for _ in range(200):
        S = [100 + 6400 / b + rng.normal(0, 5, size=8) for b in B]
        fit = fit_batch_tradeoff(B, S)
        hits += abs(fit.b_crit - 64) <= t.ppf(0.975, fit.df) * fit.b_crit_se
    # a 95% t-interval (df = seeds − 1, as the claims use) from a correct model covers
    # ≈ 95%; 200 draws: SE of the rate ≈ 1.5%, so 3 SE either side
    assert 0.90 <= hits / 200 <= 1.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="three"):
        fit_batch_tradeoff([1, 2], [np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match="finite"):
        fit_batch_tradeoff([1, 2, 4], [np.ones(2), np.array([np.inf]), np.ones(2)])
