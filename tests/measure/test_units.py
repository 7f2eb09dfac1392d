"""Units-of-learning measurements on planted signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learnmech.measure.units import (
    effective_rank,
    fourier_power,
    frequency_components,
    frequency_fit,
    neuron_frequencies,
    onset_times,
    rank_jumps,
    restricted_excluded_loss,
    subtask_curves,
    update_ranks,
)

P = 23


def test_fourier_power_finds_a_planted_frequency_and_keeps_the_norm():
    rng = np.random.default_rng(0)
    a = np.arange(P)
    u, v = rng.standard_normal(8), rng.standard_normal(8)
    emb = np.cos(2 * np.pi * 5 * a / P)[:, None] * u + np.sin(2 * np.pi * 5 * a / P)[:, None] * v
    pw = fourier_power(emb)
    assert pw.shape == (P // 2 + 1,)
    assert pw.argmax() == 5 and pw[5] / pw.sum() > 1 - 1e-12
    noise = rng.standard_normal((P, 8))
    assert fourier_power(noise).sum() == pytest.approx((noise**2).sum(), rel=1e-12)  # Parseval
    assert fourier_power(noise.T, axis=1).sum() == pytest.approx((noise**2).sum(), rel=1e-12)


def test_neuron_frequencies_of_the_analytic_solution_and_of_noise():
    rng = np.random.default_rng(1)
    a = np.arange(P)
    ks = rng.integers(1, P // 2 + 1, size=40)
    phases = rng.uniform(0, 2 * np.pi, size=40)
    w = np.cos(2 * np.pi * np.outer(a, ks) / P + phases)
    nf = neuron_frequencies(w)
    assert np.array_equal(nf.frequency, ks)
    np.testing.assert_allclose(nf.concentration, 1.0, atol=1e-12)
    noise = neuron_frequencies(rng.standard_normal((P, 400)))
    # chance level: the largest of 11 frequency powers, each a χ²₂ share — well below 1
    assert noise.concentration.mean() < 0.5


def test_restricted_and_excluded_loss_of_planted_logits():
    a, b, c = np.meshgrid(np.arange(P), np.arange(P), np.arange(P), indexing="ij")
    keys = [3, 7, 10]
    logits = 4.0 * sum(np.cos(2 * np.pi * k * (a + b - c) / P) for k in keys)
    y = (a[:, :, 0] + b[:, :, 0]) % P
    z = logits - logits.max(-1, keepdims=True)
    full = float(
        -(np.take_along_axis(z, y[:, :, None], -1)[..., 0] - np.log(np.exp(z).sum(-1))).mean()
    )
    restricted, excluded = restricted_excluded_loss(logits, P, keys)
    assert restricted == pytest.approx(full, rel=1e-10)  # everything lives on the keys
    assert excluded == pytest.approx(math.log(P), rel=1e-10)  # nothing else: uniform
    # a key missing from the list: restricted loses that part, excluded keeps it
    r2, e2 = restricted_excluded_loss(logits, P, keys[:2])
    assert r2 > restricted and e2 < excluded
    with pytest.raises(ValueError, match="shape"):
        restricted_excluded_loss(logits[:, :, :5], P, keys)


def test_effective_rank():
    assert effective_rank(np.outer(np.ones(4), np.arange(1.0, 6.0))) == pytest.approx(1.0)
    assert effective_rank(np.eye(5)) == pytest.approx(5.0)
    assert effective_rank(np.zeros((3, 3))) == 0.0


def test_rank_jumps_of_a_planted_staircase():
    """ΔW_t = Σ_i S_i σ((t − t_i)/τ) u_i v_iᵀ: mode i counts once S_i σ > 0.1·S_max, i.e.
    at t_i + τ·logit(0.1·S_max/S_i) — the jumps are predicted in closed form."""
    rng = np.random.default_rng(2)
    u, _ = np.linalg.qr(rng.standard_normal((12, 3)))
    v, _ = np.linalg.qr(rng.standard_normal((9, 3)))
    strengths, times, tau = np.array([2.0, 1.5, 1.0]), np.array([20.0, 50.0, 80.0]), 3.0
    w0 = 1e-3 * rng.standard_normal((12, 9))
    steps = np.arange(0, 121)

    def sig(t):
        return 1 / (1 + np.exp(-t))

    ws = [w0 + (u * (strengths * sig((t - times) / tau))) @ v.T for t in steps]
    traj = update_ranks(ws, steps, rel_threshold=0.1)
    jumps = rank_jumps(traj)
    s_max = strengths.max() * sig((120 - times[0]) / tau)
    frac = 0.1 * s_max / strengths
    predicted = times + tau * np.log(frac / (1 - frac))
    assert [j[1] for j in jumps] == [1, 2, 3]
    np.testing.assert_allclose([j[0] for j in jumps], np.ceil(predicted), atol=1.0)
    assert traj.effective[0] < 1.5 or traj.count[0] == 0
    assert traj.count[-1] == 3


def test_subtask_curves_and_onset_times_of_planted_sigmoids():
    rng = np.random.default_rng(3)
    n_tasks, tau = 4, 5.0
    onsets = np.array([10.0, 30.0, 55.0, 90.0])
    steps = np.arange(0, 121, dtype=float)
    task = rng.integers(0, n_tasks, size=400)
    curve = 1 - 0.9 / (1 + np.exp(-(steps[:, None] - onsets[None]) / tau))  # (T, tasks)
    losses = curve[:, task]  # every example of a task follows its task's curve
    sc = subtask_curves(losses, task)
    np.testing.assert_allclose(sc, curve, rtol=1e-12)
    t_half = onset_times(sc, steps, 0.5)
    predicted = onsets + tau * np.log((1 - 0.5) / 0.9 / (1 - (1 - 0.5) / 0.9))
    # linear interpolation between unit-spaced checkpoints of a sigmoid of scale 5
    np.testing.assert_allclose(t_half, predicted, atol=0.02)
    assert np.isnan(onset_times(sc, steps, 0.01)).all()  # never that low
    with pytest.raises(ValueError, match="integer ids"):
        subtask_curves(losses, task.astype(float))


def test_update_ranks_on_a_huggingface_gpt2_step():
    """On a real model: one SGD step on a single sequence of T tokens changes a linear
    layer by a sum of T outer products (one per position), so ΔW has rank ≤ T — the
    count and the effective rank of the measured update obey that bound, and a second
    sequence raises neither above 2T."""
    import torch

    from tests.real_models import gpt2, lm_loss, tokens

    model = gpt2(dropout=0.0)
    w = model.transformer.h[0].mlp.c_fc.weight  # (16, 64) Conv1D weight
    snaps = [w.detach().clone()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for seed in (1, 2):
        ids = tokens(1, 3, seed=seed)
        opt.zero_grad()
        lm_loss(model(ids).logits, ids).backward()
        opt.step()
        snaps.append(w.detach().clone())
    traj = update_ranks(snaps, [0, 1, 2], rel_threshold=1e-6)
    assert 1 <= traj.count[1] <= 3 and traj.effective[1] <= 3
    assert traj.count[2] <= 6 and traj.effective[2] <= 6
    assert rank_jumps(traj)[0][0] == 1


def test_frequency_fit_reads_planted_fractions_of_each_frequency():
    """Outputs that carry 0.3 of the target's frequency-1 part, all of frequency 4 and
    noise at a frequency the target lacks read (0.3, 1); a stack reads row by row."""
    from learnmech.data.algorithmic import fourier_template_task

    t = fourier_template_task(13, [1, 4], [1.0, 0.6], seed=0)
    y = t.y.numpy()
    parts = frequency_components(y, [1, 4])
    np.testing.assert_allclose(parts.sum(0), y, atol=1e-12)  # zero mean: they add up
    stray = frequency_components(np.roll(np.eye(13), 0, 1)[t.pairs[:, 0].numpy()], [2])[0]
    out = 0.3 * parts[0] + parts[1] + 5.0 * stray
    np.testing.assert_allclose(frequency_fit(out, y, [1, 4]), [0.3, 1.0], atol=1e-12)
    stack = np.stack([out, np.zeros_like(out)])
    np.testing.assert_allclose(frequency_fit(stack, y, [1, 4]), [[0.3, 1.0], [0, 0]], atol=1e-12)
    with pytest.raises(ValueError, match="no power at frequencies \\[2\\]"):
        frequency_fit(out, y, [1, 2])
    with pytest.raises(ValueError, match="do not match"):
        frequency_fit(out[:, :12], y, [1])
    with pytest.raises(ValueError, match=r"integers in 1\.\.6"):
        frequency_fit(out, y, [7])
