"""Next-token training and held-out loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from learnmech.train.language import heldout_loss, lm_loss, train_lm
from learnmech.train.loops import train_steps


class _Uniform(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.bias = nn.Parameter(torch.zeros(vocab, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(*x.shape, self.vocab)


def test_a_uniform_predictor_scores_log_vocab_with_zero_spread() -> None:
    test = torch.randint(0, 7, (20, 9), generator=torch.Generator().manual_seed(0))
    m, se = heldout_loss(_Uniform(7), test, order=2)
    assert m == pytest.approx(math.log(7), rel=1e-12)
    assert se == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="order"):
        heldout_loss(_Uniform(7), test, order=9)


def test_train_lm_learns_the_unigram_law_and_records_its_checkpoints() -> None:
    torch.manual_seed(0)
    p = torch.tensor([0.7, 0.2, 0.1])
    model = _Uniform(3)
    data = torch.multinomial(p, 64 * 9, replacement=True).view(64, 9)
    test = torch.multinomial(p, 256 * 9, replacement=True).view(256, 9)
    run = train_lm(
        model,
        torch.optim.SGD(model.parameters(), lr=1.0),
        lambda step: data,
        200,
        evaluate=lambda m: heldout_loss(m, test),
        at=[1, 200],
    )
    assert run.steps == [1, 200] and not run.diverged
    entropy = float(-(p * p.log()).sum())
    m, se = run.values[-1]
    # the fitted unigram law is within sampling error of the entropy of p
    assert abs(m - entropy) < 4 * se + 0.01
    assert run.column(0)[0] > run.column(0)[1]


def test_train_steps_stops_before_a_non_finite_loss_reaches_the_weights() -> None:
    model = nn.Linear(2, 1)
    before = [q.detach().clone() for q in model.parameters()]
    x = torch.tensor([[math.inf, 0.0]])
    run = train_steps(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        lambda s: (x, torch.zeros(1, 1)),
        lambda out, y: ((out - y) ** 2).mean(),
        5,
    )
    assert run.diverged and run.steps == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="steps"):
        train_steps(model, torch.optim.SGD(model.parameters(), lr=0.1), None, None, -1)  # type: ignore[arg-type]


def test_lm_loss_is_cross_entropy_over_every_position() -> None:
    logits = torch.randn(2, 3, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (2, 3))
    ref = torch.stack(
        [-torch.log_softmax(logits[i, j], 0)[y[i, j]] for i in range(2) for j in range(3)]
    ).mean()
    assert float(lm_loss(logits, y)) == pytest.approx(float(ref), rel=1e-12)
