"""Per-example gradients and gradient noise scales against closed forms and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.gradients import (
    GradientNoiseProbe,
    noise_scale,
    per_example_gradients,
    two_batch_noise_scale,
)
from learnmech.train.recorder import Recorder


def _linreg(n: int = 64, d: int = 5, seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    model = nn.Linear(d, 1, bias=False).double()

    def loss(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z[:, 0] - t) ** 2).mean()

    return model, loss, X, y


def test_per_example_gradients_closed_form_and_mean():
    model, loss, X, y = _linreg()
    G = per_example_gradients(model, loss, X, y, chunk=10)
    w = model.weight.detach()[0]
    want = (X @ w - y)[:, None] * X  # ∇_w ½(w·x − y)² = (w·x − y)x
    torch.testing.assert_close(G, want, rtol=1e-12, atol=1e-12)
    model.zero_grad()
    loss(model(X), y).backward()
    torch.testing.assert_close(G.mean(0), model.weight.grad[0], rtol=1e-12, atol=1e-12)


def test_noise_scale_pieces_and_b_noise_for_a_quadratic():
    model, loss, X, y = _linreg(n=200, seed=1)
    ns = noise_scale(model, loss, X, y, hessian_samples=200, seed=0)
    G = per_example_gradients(model, loss, X, y)
    mean = G.mean(0)
    tr = float(((G - mean) ** 2).sum(1).mean()) * 200 / 199
    assert ns.trace_sigma == pytest.approx(tr, rel=1e-12)
    assert ns.grad_sq == pytest.approx(float(mean @ mean) - tr / 200, rel=1e-12)
    assert ns.b_simple == pytest.approx(ns.trace_sigma / ns.grad_sq, rel=1e-12)
    # B_noise = tr(HΣ)/GᵀHG with H = XᵀX/n exactly (quadratic loss); the sampled
    # numerator is within 3 SE of the exact one
    H = X.T @ X / 200
    dev = G - mean
    trh = float(torch.einsum("ij,jk,ik->", dev, H, dev)) / 199
    exact = trh / float(mean @ H @ mean)
    assert abs(ns.b_noise - exact) <= 3 * ns.b_noise_se


@pytest.mark.parametrize("entries", [5, 35, 10**9])  # chunks of 1, 7 (200 = 28·7 + 4), all
def test_noise_scale_streams_chunks_with_the_one_matrix_result(monkeypatch, entries):
    """noise_scale never holds all n × P gradients: chunk means and squared deviations are
    combined exactly (Chan, Golub & LeVeque 1983), so any chunking gives the one-matrix
    statistics to float64 rounding, B_noise's sampled rows included."""
    import learnmech.measure.gradients as mg

    model, loss, X, y = _linreg(n=200, d=5, seed=2)
    monkeypatch.setattr(mg, "_NOISE_CHUNK_ENTRIES", entries)
    ns = noise_scale(model, loss, X, y, hessian_samples=16, seed=3)
    G = per_example_gradients(model, loss, X, y)
    mean = G.mean(0)
    dev = G - mean
    tr = float(dev.square().sum(1).mean()) * 200 / 199
    assert ns.trace_sigma == pytest.approx(tr, rel=1e-12)
    assert ns.grad_sq == pytest.approx(float(mean @ mean) - tr / 200, rel=1e-12)
    H = X.T @ X / 200  # the sampled rows: the same picks as a direct computation's
    pick = torch.randint(0, 200, (16,), generator=torch.Generator().manual_seed(3))
    q = torch.stack([dev[i] @ H @ dev[i] for i in pick]) * 200 / 199
    assert ns.b_noise == pytest.approx(float(q.mean()) / float(mean @ H @ mean), rel=1e-10)


def test_two_batch_estimator_is_unbiased_for_b_simple():
    """Squared norms of minibatch-mean gradients at B = 4 and 64, averaged over 400 draws
    each (with replacement, so the per-example covariance is exactly Σ̂(n−1)/n); the
    recovered tr Σ and |G|² match the per-example values within 3 SE."""
    model, loss, X, y = _linreg(n=256, seed=2)
    G = per_example_gradients(model, loss, X, y)
    rng = np.random.default_rng(0)
    sq = {}
    se = {}
    for b in (4, 64):
        vals = np.array(
            [float(G[rng.integers(0, 256, b)].mean(0).square().sum()) for _ in range(400)]
        )
        sq[b], se[b] = vals.mean(), vals.std(ddof=1) / math.sqrt(vals.size)
    _, tr2, g22 = two_batch_noise_scale(sq[4], 4, sq[64], 64)
    mean = G.mean(0)
    tr_pop = float(((G - mean) ** 2).sum(1).mean())  # with replacement: the plug-in Σ
    g2_pop = float(mean @ mean)
    # tr = (s4 − s64)/(1/4 − 1/64): propagate the two SEs
    tr_se = math.hypot(se[4], se[64]) / (1 / 4 - 1 / 64)
    g2_se = math.hypot(64 * se[64], 4 * se[4]) / 60
    assert abs(tr2 - tr_pop) <= 3 * tr_se
    assert abs(g22 - g2_pop) <= 3 * g2_se
    with pytest.raises(UserError, match="b_small"):
        two_batch_noise_scale(1.0, 8, 1.0, 4)


def test_gradient_noise_probe_in_a_recorder():
    model, loss, X, y = _linreg(n=32, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, [GradientNoiseProbe(loss, X, y, every=2)]) as rec:
        for step in range(5):
            opt.zero_grad()
            loss(model(X), y).backward()
            opt.step()
            rec.step(step)
    steps, b = rec.series("b_simple")
    assert steps == [0, 2, 4]
    assert b[-1] == pytest.approx(noise_scale(model, loss, X, y).b_simple, rel=1e-12)
    # the noise scale grows as the full gradient shrinks toward the optimum
    assert b[-1] > b[0]
