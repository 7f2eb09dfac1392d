"""Scored claims: bounds, degenerate input, error rates at the boundary, fits, the hash."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from learnmech.claims import (
    Estimate,
    above,
    below,
    claims_hash,
    equivalent,
    exact,
    fit_slope,
    lack_of_fit,
    quantile,
    reported,
    slope,
    within,
    within_every,
)
from learnmech.records import Metric, verdict_of


def test_bound_uses_student_t_with_the_estimates_degrees_of_freedom():
    est = Estimate.of([1.0, 2.0, 3.0])  # mean 2, SE 1/√3, df 2
    assert est.df == 2 and est.se == pytest.approx(1 / math.sqrt(3))
    m = below("x", est, 10.0)
    assert m.bound == pytest.approx(2 + stats.t.ppf(0.95, 2) / math.sqrt(3), rel=1e-12)
    m = above("x", est, 0.0, level=0.99)
    assert m.bound == pytest.approx(2 - stats.t.ppf(0.99, 2) / math.sqrt(3), rel=1e-12)
    assert quantile(0.95) == pytest.approx(stats.norm.ppf(0.95))


def test_a_noisier_estimate_passes_less_easily_never_more():
    """The old rule passed on the point estimate: noise could only help it. Here the same
    mean with a larger SE (or fewer seeds) moves the bound against the claim."""
    for se in (0.01, 0.05, 0.2):
        tight = within("w", Estimate(1.02, se, 10), 1.0, 0.1)
        loose = within("w", Estimate(1.02, 2 * se, 10), 1.0, 0.1)
        assert loose.bound > tight.bound
        few = within("w", Estimate(1.02, se, 2), 1.0, 0.1)
        assert few.bound > tight.bound
    assert within("w", Estimate(1.02, 0.01, 10), 1.0, 0.1).passed
    assert not within("w", Estimate(1.02, 0.1, 10), 1.0, 0.1).passed


@pytest.mark.parametrize(
    "est",
    [
        Estimate(math.nan, 0.1, 5),
        Estimate(1.0, math.nan, 5),
        Estimate(1.0, math.inf, 5),
        Estimate.of([0.5]),  # one seed: no standard error
        Estimate.of([]),
        Estimate.of([1.0, math.inf]),  # a diverged seed: NaN spread, quietly (no warning)
    ],
)
def test_non_finite_or_one_seed_fails_every_scored_kind(est):
    for m in (
        within("a", est, 0.0, 10.0),
        equivalent("b", est, 10.0),
        below("c", est, 10.0),
        above("d", est, -10.0),
    ):
        assert m.passed is False, m
        assert "not finite" in m.description


def test_zero_standard_error_is_an_exact_value_whatever_the_sign():
    assert below("a", Estimate.exact(-1.0), 0.0).passed
    assert not below("a", Estimate.exact(1.0), 0.0).passed  # SE 0 never passes a wrong sign
    assert not below("a", Estimate.exact(0.0), 0.0, strict=True).passed
    assert above("a", Estimate.exact(1.0), 0.0).passed
    assert exact("n", 0, 0).passed and not exact("n", 1, 0).passed
    assert math.isinf(Estimate.exact(1.0).z) and Estimate.exact(0.0).z == 0


def test_reported_numbers_do_not_enter_the_verdict():
    assert reported("r", Estimate(1.0, 0.1)).passed is None
    assert verdict_of([reported("r", 1.0)]) == "n/a"
    assert verdict_of([reported("r", 1.0), exact("n", 0, 0)]) == "pass"
    assert verdict_of([exact("n", 0, 0), exact("m", 2, 0)]) == "fail"


def test_bad_tolerances_are_refused():
    with pytest.raises(ValueError, match="tolerance"):
        within("w", 1.0, 1.0, math.nan)
    with pytest.raises(ValueError, match="threshold"):
        below("b", 1.0, math.inf)
    with pytest.raises(ValueError, match="level"):
        below("b", Estimate(1.0, 0.1, 3), 2.0, level=1.0)
    with pytest.raises(ValueError, match="kind"):
        Metric("m", 1.0, 1.0, kind="maybe")


N_SIM = 4000


def _pass_rate(claim, mu: float, n: int, rng: np.random.Generator) -> tuple[float, float]:
    hits = sum(bool(claim(Estimate.of(rng.normal(mu, 1.0, n))).passed) for _ in range(N_SIM))
    p = hits / N_SIM
    return p, math.sqrt(0.05 * 0.95 / N_SIM)


@pytest.mark.parametrize("n", [3, 8])
def test_false_pass_rate_at_the_boundary_is_the_level(n):
    """With the true mean exactly on the threshold (or the equivalence margin), a claim
    passes by chance at rate α = 1 − level (t bounds are exact for normal samples; TOST
    at most α). Checked by simulation: |rate − α| ≤ 4 simulation SE (TOST: ≤ α + 4 SE)."""
    rng = np.random.default_rng(n)
    p, se = _pass_rate(lambda e: below("b", e, 0.0), 0.0, n, rng)
    assert abs(p - 0.05) <= 4 * se, p
    p, se = _pass_rate(lambda e: above("a", e, 0.0), 0.0, n, rng)
    assert abs(p - 0.05) <= 4 * se, p
    p, se = _pass_rate(lambda e: equivalent("e", e, 0.5), 0.5, n, rng)
    assert p <= 0.05 + 4 * se, p


def test_equivalence_has_power_when_the_effect_is_truly_small():
    """TOST with 30 samples, margin 1 SD, true effect 0: passes nearly always."""
    rng = np.random.default_rng(1)
    hits = sum(
        bool(equivalent("e", Estimate.of(rng.normal(0, 1, 30)), 1.0).passed) for _ in range(500)
    )
    assert hits / 500 > 0.95


def test_estimate_arithmetic_welch_and_paired():
    a = Estimate(1.0, 0.3, 4)
    b = Estimate(0.5, 0.4, 9)
    d = a - b
    assert d.value == 0.5 and d.se == pytest.approx(0.5)
    welch = (0.09 + 0.16) ** 2 / (0.09**2 / 4 + 0.16**2 / 9)
    assert d.df == pytest.approx(welch)
    assert (a + 1.0).se == 0.3 and (a + 1.0).df == 4
    x = np.array([1.0, 2.0, 4.0, 3.0])
    y = x - np.array([0.1, 0.2, 0.1, 0.2])
    p = Estimate.paired(x, y)
    assert p.value == pytest.approx(0.15) and p.df == 3
    assert p.se == pytest.approx(np.std([0.1, 0.2, 0.1, 0.2], ddof=1) / 2)
    lg = Estimate(2.0, 0.2, 5).log()
    assert lg.value == pytest.approx(math.log(2)) and lg.se == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shape"):
        Estimate.paired([1, 2], [1, 2, 3])


def test_slope_fit_uses_stated_errors_only_and_lack_of_fit_is_its_own_claim():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = 3.0 * x**-0.5
    se = 0.01 * y
    fit = fit_slope(x, y, se)
    assert fit.exponent.value == pytest.approx(-0.5, abs=1e-12)
    # SE from the weights alone: σ_log = 0.01 at every point
    lx = np.log(x)
    expected_se = 0.01 / math.sqrt(np.sum((lx - lx.mean()) ** 2))
    assert fit.exponent.se == pytest.approx(expected_se, rel=1e-10)
    assert slope("s", x, y, se, expected=-0.5, tol=0.05).passed
    # a curved law: the SE is *not* widened by the misfit, and the misfit fails on its own
    bent = y * np.exp(0.05 * lx**2)
    fb = fit_slope(x, bent, 0.01 * bent)
    assert fb.exponent.se == pytest.approx(expected_se, rel=1e-10)
    assert not lack_of_fit("f", fb.chi2, fb.dof).passed
    assert lack_of_fit("f", fit.chi2 + 1.0, fit.dof).passed
    assert not fit_slope(x, -y).exponent.finite  # non-positive values: no fit


def test_claims_hash_sees_tolerances_not_values():
    a = [within("w", Estimate(1.0, 0.1, 5), 1.0, 0.2), below("b", 0.3, 1.0)]
    b = [within("w", Estimate(1.5, 0.3, 5), 1.0, 0.2), below("b", 0.9, 1.0)]
    c = [within("w", Estimate(1.0, 0.1, 5), 1.0, 0.25), below("b", 0.3, 1.0)]
    assert claims_hash(a) == claims_hash(b)
    assert claims_hash(a) != claims_hash(c)


def test_within_every_is_one_claim_over_all_cells_with_a_stable_claim_set():
    cells = [("n=8", Estimate(1.02, 0.01, 9), 1.0, 0.1), ("n=16", Estimate(0.5, 0.01, 9), 0.6, 0.2)]
    m = within_every("curve", cells)
    q = stats.t.ppf(0.95, 9)
    worst = max((0.02 + q * 0.01) / 0.1, (0.1 + q * 0.01) / 0.2)
    assert m.passed and m.value == pytest.approx(worst) and "n=16" in m.description
    moved = [("n=8", Estimate(1.09, 0.01, 9), 1.0, 0.1), cells[1]]
    m2 = within_every("curve", moved)
    assert not m2.passed and "n=8" in m2.description
    assert claims_hash([m]) == claims_hash([m2])  # the worst cell does not enter the hash
    assert not within_every("curve", []).passed
    assert not within_every("curve", [*cells, ("n=32", Estimate.of([1.0]), 1.0, 0.1)]).passed


def test_claims_list_methods_equal_the_builders():
    from learnmech.claims import Claims

    c = Claims()
    e = Estimate(0.1, 0.02, 7)
    got = [
        c.within("w", e, 0.0, 0.2),
        c.equivalent("q", e, 0.2),
        c.below("b", e, 0.5, strict=True),
        c.above("a", e, 0.0),
        c.exact("x", 3, 5),
        c.reported("r", e, description="context"),
        c.within_every("every", [("k=1", e, 0.1, 0.1)]),
        c.lack_of_fit("fit", 3.0, 4),
    ]
    want = [
        within("w", e, 0.0, 0.2),
        equivalent("q", e, 0.2),
        below("b", e, 0.5, strict=True),
        above("a", e, 0.0),
        exact("x", 3, 5),
        reported("r", e, description="context"),
        within_every("every", [("k=1", e, 0.1, 0.1)]),
        lack_of_fit("fit", 3.0, 4),
    ]
    assert list(c) == got
    assert [m.as_dict() for m in c] == [m.as_dict() for m in want]
    assert isinstance(c, list) and claims_hash(c) == claims_hash(want)


def test_a_slope_through_points_at_one_x_is_undefined():
    """All points at one x: no slope, with or without stated errors (was a LinAlgError
    with errors and an arbitrary minimum-norm value without)."""
    for se in (None, [0.1, 0.1, 0.1]):
        fit = fit_slope([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], se)
        assert math.isnan(fit.exponent.value) and fit.dof == 0
