"""optimal_lr and transfer_exponent against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.hparams import optimal_lr, transfer_exponent


def test_parabola_vertex_is_exact_for_a_quadratic_in_log_lr():
    lrs = 2.0 ** np.arange(-10, -2)
    loss = 0.3 + 0.05 * (np.log2(lrs) + 6.3) ** 2
    o = optimal_lr(lrs, loss)
    assert o.log2_lr == pytest.approx(-6.3, abs=1e-12)
    assert o.best_grid_lr == 2.0**-6 and not o.at_edge


def test_diverged_runs_count_as_worst_and_edges_are_flagged():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1]
    o = optimal_lr(lrs, [0.5, 0.4, np.nan, np.inf])
    assert o.best_grid_lr == 1e-3
    e = optimal_lr(lrs, [0.1, 0.2, 0.3, 0.4])
    assert e.at_edge and e.lr == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="every run diverged"):
        optimal_lr(lrs, [np.nan] * 4)
    with pytest.raises(ValueError, match="at least three"):
        optimal_lr([1e-3, 1e-2], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        optimal_lr([-1.0, 1e-3, 1e-2], [1.0, 2.0, 3.0])


def test_transfer_exponent_recovers_a_planted_slope_within_its_se():
    rng = np.random.default_rng(0)
    widths = np.array([64, 128, 256, 512, 1024], float)
    hits = 0
    for _ in range(200):
        noise = rng.normal(0, 0.2, widths.size)
        y = -5.0 - 0.5 * np.log2(widths / 64) + noise
        fit = transfer_exponent(widths, y, np.full(widths.size, 0.2))
        hits += abs(fit.exponent + 0.5) < 2 * fit.exponent_se
    # coverage of a ±2 SE interval is 95 %; binomial SE over 200 draws is 1.5 %
    assert abs(hits / 200 - 0.954) < 3 * math.sqrt(0.954 * 0.046 / 200)
    fit = transfer_exponent(widths, -5.0 - 0.5 * np.log2(widths / 64))
    assert fit.exponent == pytest.approx(-0.5) and fit.shift_log2 == pytest.approx(-2.0)
