"""The quantization model's a-priori exponents against exact sums over Zipf quanta."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.data.algorithmic import zipf_frequencies
from learnmech.theory.quanta import (
    loss_after_learning,
    quanta_learned_from_data,
    scaling_exponents,
)


def test_exponents():
    e = scaling_exponents(0.5)
    assert e["params"] == 0.5 and e["data"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="alpha"):
        scaling_exponents(0.0)


@pytest.mark.parametrize("alpha", [0.3, 0.6, 1.0])
def test_loss_tail_follows_n_to_the_minus_alpha(alpha):
    """ζ(α+1, n+1) = n^−α/α − n^−α−1/2 + … (Euler–Maclaurin), so the local log–log slope
    of L(n) is −α·(1 + O(1/n)): over n = 10³ … 10⁵ the fitted slope is −α within
    (α+1)/n_min."""
    n = np.geomspace(1e3, 1e5, 9)
    loss = loss_after_learning(n, alpha=alpha)
    slope = np.polyfit(np.log(n), np.log(loss), 1)[0]
    assert slope == pytest.approx(-alpha, abs=(alpha + 1) / 1e3)
    assert loss_after_learning(0, alpha=alpha) == pytest.approx(math.log(2))


def test_finite_list_is_the_exact_sum():
    p = zipf_frequencies(50, 0.7)
    for n in (0, 3, 49, 50):
        assert loss_after_learning(n, p) == pytest.approx(math.log(2) * p[n:].sum(), abs=1e-15)
    assert loss_after_learning(2.5, p) == pytest.approx(
        math.log(2) * (p[2:].sum() + p[3:].sum()) / 2
    )


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_data_scaling_exponent(alpha):
    """Quanta learned after D samples grow as D^{1/(α+1)}, so L ∝ D^−α/(α+1); D is chosen
    so that n ≥ 10³ (integer rounding and the O(1/n) tail correction below 2e-3)."""
    d = np.geomspace(1e6, 1e9, 7) * 10 ** (3 * (alpha + 1) - 4)
    n = quanta_learned_from_data(d, alpha=alpha, threshold=1.0)
    assert n.min() >= 1e3
    slope_n = np.polyfit(np.log(d), np.log(n), 1)[0]
    assert slope_n == pytest.approx(1 / (alpha + 1), abs=2e-3)
    slope_l = np.polyfit(np.log(d), np.log(loss_after_learning(n, alpha=alpha)), 1)[0]
    assert slope_l == pytest.approx(-scaling_exponents(alpha)["data"], abs=(alpha + 1) / 1e3 + 2e-3)
    p = zipf_frequencies(10**5, alpha)  # the finite-list form agrees where n ≪ N
    assert quanta_learned_from_data(1e7, p, threshold=10.0) > 0


def test_uniform_frequencies_give_no_power_law():
    """The quanta study's control: uniform frequencies make L(n) linear in n, whose
    log–log slope steepens without bound near n = N (no single exponent)."""
    p = zipf_frequencies(1000, -1.0)
    n = np.array([10, 100, 500, 900, 990])
    loss = loss_after_learning(n, p)
    local = np.diff(np.log(loss)) / np.diff(np.log(n))
    assert local[0] > -0.1 and local[-1] < -3
