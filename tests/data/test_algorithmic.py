"""Deterministic algorithmic tasks: modular arithmetic, multitask sparse parity, planted
singular structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from learnmech.data.algorithmic import (
    fourier_template_task,
    modular_arithmetic,
    multitask_sparse_parity,
    planted_singular_task,
    zipf_frequencies,
)


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_modular_arithmetic_covers_every_pair_once(op):
    t = modular_arithmetic(13, op=op, train_fraction=0.3, seed=2)
    x = torch.cat([t.x_train, t.x_test])
    y = torch.cat([t.y_train, t.y_test])
    assert len({(int(a), int(b)) for a, b in x}) == 169 == len(x)
    assert len(t.x_train) == round(0.3 * 169)
    a, b = x[:, 0], x[:, 1]
    want = {"add": a + b, "sub": a - b, "mul": a * b}[op] % 13
    assert torch.equal(y, want)
    again = modular_arithmetic(13, op=op, train_fraction=0.3, seed=2)
    assert torch.equal(again.x_train, t.x_train)
    assert not torch.equal(
        modular_arithmetic(13, op=op, train_fraction=0.3, seed=3).x_train, t.x_train
    )


def test_modular_arithmetic_bad_input():
    with pytest.raises(ValueError, match="prime"):
        modular_arithmetic(12)
    with pytest.raises(ValueError, match="train_fraction"):
        modular_arithmetic(11, train_fraction=1.0)
    with pytest.raises(ValueError, match="op"):
        modular_arithmetic(11, op="div")


def test_sparse_parity_labels_controls_and_zipf_frequencies():
    t = multitask_sparse_parity(20000, n_tasks=12, n_bits=16, k=3, alpha=0.5, seed=1)
    x = t.x.numpy()
    assert np.array_equal(x[:, :12].argmax(1), t.task.numpy())
    assert np.all(x[:, :12].sum(1) == 1)
    bits = x[:, 12:].astype(int)
    sub = t.subsets.numpy()[t.task.numpy()]
    assert np.array_equal(bits[np.arange(len(x))[:, None], sub].sum(1) % 2, t.y.numpy())
    # subtask frequencies ∝ i^−(α+1): a χ² goodness-of-fit test at the 0.1% level
    counts = np.bincount(t.task.numpy(), minlength=12)
    expected = zipf_frequencies(12, 0.5) * len(x)
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    assert counts[0] > counts[5] > counts[11]
    # the subtasks (bit subsets) are shared across sample seeds
    other = multitask_sparse_parity(100, n_tasks=12, n_bits=16, k=3, alpha=0.5, seed=9)
    assert torch.equal(other.subsets, t.subsets)
    # distinct subsets, even when many are drawn from few bits: C(6, 3) = 20
    full = multitask_sparse_parity(10, n_tasks=20, n_bits=6, k=3, seed=0)
    assert len({tuple(r) for r in full.subsets.tolist()}) == 20
    with pytest.raises(ValueError, match="C\\(n_bits, k\\) = 20"):
        multitask_sparse_parity(10, n_tasks=21, n_bits=6, k=3)


def test_zipf_frequencies():
    w = 1.0 / np.arange(1, 6) ** 2  # α = 1: p_i ∝ i^−2
    np.testing.assert_allclose(zipf_frequencies(5, 1.0), w / w.sum(), rtol=1e-15)
    np.testing.assert_allclose(zipf_frequencies(4, -1.0), 0.25)
    with pytest.raises(ValueError, match="alpha"):
        zipf_frequencies(4, float("nan"))


def test_planted_singular_task_has_the_planted_correlation():
    t = planted_singular_task(64, 10, 6, [1.0, 3.0, 0.5], seed=4)
    n = t.x.shape[0]
    np.testing.assert_allclose((t.x.T @ t.x / n).numpy(), np.eye(10), atol=1e-12)
    sigma_yx = (t.y.T @ t.x / n).numpy()
    planted = (t.u @ torch.diag(t.s) @ t.v.T).numpy()
    np.testing.assert_allclose(sigma_yx, planted, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.svd(sigma_yx, compute_uv=False)[:3], [3.0, 1.0, 0.5], rtol=1e-12
    )
    assert t.s.tolist() == [3.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="positive"):
        planted_singular_task(64, 10, 6, [1.0, -1.0])
    with pytest.raises(ValueError, match="n >= d_in"):
        planted_singular_task(5, 10, 6, [1.0])


def test_fourier_template_task_has_the_planted_spectrum_and_shifts():
    t = fourier_template_task(13, [4, 1], [1.0, 0.5], seed=3)
    spec = np.abs(np.fft.fft(t.template)) / np.sqrt(13)
    expected = np.zeros(13)
    expected[[4, 9]], expected[[1, 12]] = 1.0, 0.5  # k and its conjugate p − k
    np.testing.assert_allclose(spec, expected, atol=1e-12)
    assert t.x.shape == (169, 26) and t.y.shape == (169, 13)
    for i in (0, 17, 168):
        a, b = (int(v) for v in t.pairs[i])
        np.testing.assert_allclose(t.x[i, :13].numpy(), np.roll(t.template, a))
        np.testing.assert_allclose(t.x[i, 13:].numpy(), np.roll(t.template, b))
        np.testing.assert_allclose(t.y[i].numpy(), np.roll(t.template, (a + b) % 13))
    again = fourier_template_task(13, [4, 1], [1.0, 0.5], seed=3)
    assert torch.equal(again.x, t.x)
    other = fourier_template_task(13, [4, 1], [1.0, 0.5], seed=4)
    assert not np.allclose(other.template, t.template)  # the seed draws the phases


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"p": 12}, "prime"),
        ({"frequencies": [0, 1]}, "distinct integers in 1..6"),
        ({"frequencies": [7, 1]}, "distinct integers in 1..6"),
        ({"frequencies": [2, 2]}, "distinct"),
        ({"frequencies": [1.5, 2]}, "list of integers"),
        ({"frequencies": []}, "non-empty"),
        ({"magnitudes": [1.0]}, "one per frequency"),
        ({"magnitudes": [1.0, -0.5]}, "positive finite"),
        ({"magnitudes": [1.0, float("nan")]}, "positive finite"),
    ],
)
def test_fourier_template_task_bad_input(kw, match):
    args = {"p": 13, "frequencies": [4, 1], "magnitudes": [1.0, 0.5]} | kw
    with pytest.raises(ValueError, match=match):
        fourier_template_task(args.pop("p"), **args)
