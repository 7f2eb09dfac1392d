"""The catapult map (Lewkowycz et al. 2020, eq. 1 of theory.catapult) and phase rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnmech.theory.catapult import catapult_map, classify_run, predicted_phase


def _gd(width: int, ratio: float, steps: int, seed: int = 0):
    """GD of the two-layer linear net vᵀUx/√n on one unit-norm example, y = 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, generator=g, dtype=torch.float64)
    x /= x.norm()
    U = torch.randn(width, 8, generator=g, dtype=torch.float64).requires_grad_(True)
    v = torch.randn(width, generator=g, dtype=torch.float64).requires_grad_(True)
    with torch.no_grad():
        lam0 = float(((v**2).sum() + ((U @ x) ** 2).sum()) / width)  # the NTK, closed form
    eta, fs, lams = ratio / lam0, [], []
    for _ in range(steps + 1):
        f = (U @ x) @ v / math.sqrt(width)
        with torch.no_grad():
            fs.append(f.item())
            lams.append(float(((v**2).sum() + ((U @ x) ** 2).sum()) / width))
        gu, gv = torch.autograd.grad(0.5 * (f - 1.0) ** 2, (U, v))
        with torch.no_grad():
            U -= eta * gu
            v -= eta * gv
    return lam0, eta, np.array(fs), np.array(lams)


@pytest.mark.parametrize("ratio", [0.5, 3.0])
def test_the_map_is_gradient_descent_exactly(ratio):
    """Eq. (1) iterated from (f₀, λ₀) reproduces the network's own f_t and NTK λ_t to
    round-off, through the catapult's rise and fall (an independent integration)."""
    lam0, eta, fs, lams = _gd(512, ratio, 40)
    f_map, lam_map = catapult_map(fs[0], lam0, 1.0, 512, eta, 40)
    scale = np.maximum(1.0, np.abs(fs))
    np.testing.assert_allclose(f_map / scale, fs / scale, atol=1e-9)
    np.testing.assert_allclose(lam_map, lams, rtol=1e-9)


def test_the_three_phases_of_the_map_at_large_width():
    """At width 10⁶ from f₀ = 0: the residual contracts below 2/λ₀; between 2/λ₀ and 4/λ₀
    the loss rises (to g² ~ n) and the run ends with ηλ < 2; above 4/λ₀ it blows up."""
    n, lam0 = 1_000_000, 2.0
    for ratio, phase in [
        (1.0, "lazy"),
        (1.9, "lazy"),
        (2.5, "catapult"),
        (3.6, "catapult"),
        (4.4, "divergent"),
    ]:
        f, lam = catapult_map(1e-3, lam0, 1.0, n, ratio / lam0, 400)
        loss = 0.5 * (f - 1.0) ** 2
        assert classify_run(loss) == phase == predicted_phase(ratio / lam0, lam0), ratio
        if phase == "catapult":
            assert loss.max() > 1e-3 * n  # the peak is at g² ~ n
            assert ratio / lam0 * lam[-1] < 2
        if phase == "lazy":
            assert lam[-1] == pytest.approx(lam0, rel=1e-4)


def test_classify_run_reads_the_curve():
    assert classify_run([1.0, 0.5, 0.1]) == "lazy"
    assert classify_run([1.0, 5.0, 0.1]) == "catapult"
    assert classify_run([1.0, 5.0, 2.0]) == "divergent"  # ends no lower than it began
    assert classify_run([1.0, 1e9]) == "divergent"
    assert classify_run([1.0, math.inf]) == "divergent"
    with pytest.raises(ValueError, match="at least two steps"):
        classify_run([1.0])
    with pytest.raises(ValueError, match="finite loss > 0"):
        classify_run([0.0, 1.0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: predicted_phase(-1.0, 1.0), "eta must be"),
        (lambda: predicted_phase(1.0, math.nan), "lam0 must be"),
        (lambda: catapult_map(0.0, 1.0, 1.0, 0, 0.1, 5), "width must be"),
        (lambda: catapult_map(0.0, 1.0, 1.0, 8, 0.1, -1), "steps must be"),
        (lambda: catapult_map(math.inf, 1.0, 1.0, 8, 0.1, 5), "finite"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
