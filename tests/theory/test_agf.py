"""AGF's dormant phase for the quadratic network on templated modular addition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnmech.data.algorithmic import fourier_template_task
from learnmech.theory import agf


@pytest.fixture
def task():
    return fourier_template_task(11, [1, 3, 4], [1.0, 0.7, 0.5], seed=2)


def test_utility_in_fourier_form_equals_the_direct_sum(task):
    """Eq. (1)–(2): Σ_k c_k r_u r_v r_w cos Φ equals (1/p²)Σ_{a,b}⟨x_{a+b}, f_i(a, b)⟩
    summed over all p² pairs, for random (not small, not single-frequency) units."""
    rng = np.random.default_rng(0)
    p = task.p
    u, v, w = (rng.standard_normal((p, 7)) for _ in range(3))
    direct = agf.utility(u, v, w, task.template)
    c = agf.utility_coefficients(task.template)
    fourier = np.zeros(7)
    for k in range(1, (p - 1) // 2 + 1):
        ru, rv, rw, phase = agf.neuron_states(u, v, w, task.template, k)
        fourier += c[k] * ru * rv * rw * np.cos(phase)
    np.testing.assert_allclose(fourier, direct, rtol=1e-10, atol=1e-12)


def test_utility_coefficients_follow_the_template_magnitudes(task):
    """|x̂_k| = √p·m_k, so c_k = √2·m_k³; zero where the template has no power."""
    c = agf.utility_coefficients(task.template)
    np.testing.assert_allclose(c[task.frequencies], math.sqrt(2) * task.magnitudes**3, rtol=1e-12)
    np.testing.assert_allclose(np.delete(c, task.frequencies), 0.0, atol=1e-12)


def test_escape_time_balanced_and_aligned_is_the_closed_form():
    """r' = c r² from r₀ reaches r_stop at (1/r₀ − 1/r_stop)/c."""
    for r0, c, stop in [(0.01, 2.0, 1.0), (1e-4, 0.3, 0.5), (0.2, 5.0, 3.0)]:
        t = agf.escape_time(r0, r0, r0, 0.0, c, stop)
        assert t == pytest.approx((1 / r0 - 1 / stop) / c, rel=1e-6)
    # the fastest of several units decides; a misaligned unit is slower than an aligned one
    t = agf.escape_time([0.01, 0.02], [0.01, 0.02], [0.01, 0.02], [0.0, 2.5], 1.0)
    assert t > (1 / 0.02 - 1) and t < (1 / 0.01 - 1)
    assert agf.escape_time(0.01, 0.01, 0.01, 3 * math.pi / 4, 1.0) > 99.0


def test_escape_time_matches_gradient_flow_on_the_direct_utility(task):
    """An independent integration: one unit whose u, v, w carry only frequency k, moved by
    explicit Euler steps along the autograd gradient of the direct-sum utility (no Fourier
    algebra), reaches unit norm when the reduced (r, Φ) flow says. Unbalanced norms and a
    misaligned phase exercise every term of the reduced equations."""
    p, k = task.p, 3
    n = torch.arange(p, dtype=torch.float64)
    shifted = torch.stack([torch.roll(torch.from_numpy(task.template), a) for a in range(p)])
    idx = torch.arange(p)

    def unit(r: float, phi: float) -> torch.Tensor:
        return r * math.sqrt(2 / p) * torch.cos(2 * math.pi * k * n / p + phi)

    u, v, w = unit(0.05, 0.3), unit(0.03, -1.0), unit(0.04, 2.0)
    ru, rv, rw, phase = agf.neuron_states(
        u[:, None].numpy(), v[:, None].numpy(), w[:, None].numpy(), task.template, k
    )
    np.testing.assert_allclose([ru[0], rv[0], rw[0]], [0.05, 0.03, 0.04], rtol=1e-12)
    c = agf.utility_coefficients(task.template)[k]
    predicted = agf.escape_time(ru, rv, rw, phase, c)

    theta = torch.stack([u, v, w]).requires_grad_(True)

    def utility(th: torch.Tensor) -> torch.Tensor:
        hu, hv, hw = shifted @ th[0], shifted @ th[1], shifted @ th[2]
        h = hu[:, None] + hv[None, :]  # (a, b)
        return (hw[(idx[:, None] + idx[None, :]) % p] * h**2).sum() / p**2

    dt, t = predicted / 20_000, 0.0
    while True:
        (g,) = torch.autograd.grad(utility(theta), theta)
        with torch.no_grad():
            theta += dt * g
        t += dt
        if float(theta.detach().norm(dim=1).min()) >= 1.0:
            break
    # Euler's error is O(dt) relative: 20,000 steps put it well under 1%
    assert t == pytest.approx(predicted, rel=0.01)


def test_predict_onsets_scales_with_the_learning_rate(task):
    rng = np.random.default_rng(1)
    w = [1e-2 * rng.standard_normal((task.p, 16)) for _ in range(3)]
    a = agf.predict_onsets(*w, task.template, task.frequencies, 0.05)
    b = agf.predict_onsets(*w, task.template, task.frequencies, 0.1)
    np.testing.assert_allclose(a, 2 * b, rtol=1e-6)
    assert np.all(np.isfinite(a)) and np.all(a > 0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda t, w: agf.utility_coefficients(t.template + 1.0), "zero mean"),
        (lambda t, w: agf.utility_coefficients([1.0, -1.0]), "length p >= 3"),
        (lambda t, w: agf.predict_onsets(*w, t.template, [2], 0.1), "not one the template"),
        (lambda t, w: agf.predict_onsets(*w, t.template, [1], 0.0), "lr must be"),
        (lambda t, w: agf.neuron_states(*w, t.template, 6), "k must be"),
        (lambda t, w: agf.neuron_states(w[0][:5], *w[1:], t.template, 1), r"\(p=11, width\)"),
        (lambda t, w: agf.escape_time(0.0, 1e-2, 1e-2, 0.0, 1.0), "norms must be > 0"),
        (lambda t, w: agf.escape_time(1e-2, 1e-2, 1e-2, math.nan, 1.0), "finite"),
        (lambda t, w: agf.escape_time(1e-2, 1e-2, 1e-2, 0.0, -1.0), "positive and finite"),
    ],
)
def test_bad_input_names_what_is_wrong(task, call, match):
    w = [np.full((task.p, 2), 0.01) for _ in range(3)]
    with pytest.raises(ValueError, match=match):
        call(task, w)
