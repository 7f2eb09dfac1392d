"""The saddle-to-saddle study's ensemble and its escape-time predictor."""

from __future__ import annotations

import numpy as np
import pytest

from learnmech.studies.saddle_to_saddle import (
    ESCAPE,
    SaddleToSaddle,
    SaddleToSaddleConfig,
    _escape_times,
)
from learnmech.theory import deep_linear as dl


@pytest.mark.parametrize("act", ["linear", "tanh", "relu"])
def test_each_member_of_the_stack_trains_as_if_alone(act):
    """Plain SGD is elementwise and each member's loss reaches only its own weights, so a
    seed's curves do not depend on the other seeds in its stack (float64 round-off)."""
    st = SaddleToSaddle()
    cfg = SaddleToSaddleConfig(steps=40, samples=64)
    alone = st.measure(cfg, {"act": act}, [2], "cpu")[2]
    stacked = st.measure(cfg, {"act": act}, [0, 2], "cpu")
    for a, b in zip(alone, stacked[2], strict=True):
        assert (a.observable, a.series) == (b.observable, b.series)
        np.testing.assert_allclose(b.values, a.values, rtol=1e-10, atol=1e-14)
    assert not np.allclose(stacked[0][1].values, stacked[2][1].values)


def test_escape_times_follow_gradient_flow_as_the_step_shrinks_and_need_a_saddle():
    """The discrete map's escape step tends to the gradient-flow time τ/(2s)·Δlogit as
    η → 0 (first order in ηs); ReLU's halved rate doubles it; a mode that starts above
    s/8 has no escape to predict (NaN)."""
    s, u0 = np.array([2.0, 1.0]), np.array([1e-6, 1e-6])
    for lr in (1e-3, 1e-4):
        cfg = SaddleToSaddleConfig(singular_values=list(s), lr=lr, steps=int(40 / lr))
        flow = dl.learning_time(s, u0, 2, tau=1 / lr, fraction=ESCAPE)
        disc = _escape_times(s, u0, "linear", cfg)
        assert np.all(np.abs(disc - flow) / flow <= 2 * lr * s.max() + 1e-3 * lr)
        relu = _escape_times(s, u0, "relu", cfg)
        half = dl.learning_time(s / 2, u0, 2, tau=1 / lr, fraction=4 * ESCAPE)
        np.testing.assert_allclose(relu, half, rtol=2 * lr * s.max() + 1e-3)
    cfg = SaddleToSaddleConfig(singular_values=list(s))
    assert np.isnan(_escape_times(s, np.array([0.5, 1e-6]), "linear", cfg)[0])
