"""Small estimators in learnmech.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.stats import crossing_time, debiased_mean_square, r_squared


def test_crossing_time_interpolates_between_records() -> None:
    t = np.array([0.0, 10.0, 20.0])
    u = np.array([0.0, 1.0, 3.0])
    assert crossing_time(t, u, 2.0) == pytest.approx(15.0)
    assert crossing_time(t, u, 0.0) == 0.0
    assert math.isnan(crossing_time(t, u, 4.0))


def test_r_squared_is_one_for_a_perfect_prediction_and_zero_for_the_mean() -> None:
    y = np.array([[1.0, 2.0], [3.0, 5.0], [4.0, 0.0]])
    assert r_squared(y, y) == 1.0
    assert r_squared(y, np.broadcast_to(y.mean(0), y.shape)) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(r_squared(np.ones((3, 1)), np.zeros((3, 1))))


def test_debiased_mean_square_is_unbiased_for_pure_noise() -> None:
    rng = np.random.default_rng(0)
    # E d = 0: the plain ‖mean‖² averages σ²/S = 0.25; the debiased one averages 0
    est = [debiased_mean_square(rng.standard_normal((4, 50))) for _ in range(4000)]
    se = np.std(est) / math.sqrt(len(est))
    assert abs(np.mean(est)) < 4 * se
    shifted = [debiased_mean_square(1.0 + rng.standard_normal((4, 50))) for _ in range(4000)]
    assert abs(np.mean(shifted) - 1.0) < 4 * np.std(shifted) / math.sqrt(len(shifted))
    assert debiased_mean_square(np.full((1, 3), 2.0)) == 4.0
