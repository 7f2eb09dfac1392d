"""ZipfMarkov: the entropy rate is the cross-entropy of the true conditional law."""

from __future__ import annotations

import math

import pytest
import torch

from learnmech.data.language import ZipfMarkov


def test_rows_are_permutations_of_the_zipf_law_and_the_entropy_rate_is_exact():
    lang = ZipfMarkov(8, order=2, exponent=1.2, seed=3)
    assert torch.allclose(lang.table.sum(1), torch.ones(64, dtype=torch.float64))
    srt = lang.table.sort(dim=1, descending=True).values
    assert torch.allclose(srt, lang.law.expand_as(srt))
    p = lang.law
    assert lang.entropy_rate == pytest.approx(float(-(p * p.log()).sum()))
    assert ZipfMarkov(8, exponent=0.0).entropy_rate == pytest.approx(math.log(8))


def test_sampled_tokens_follow_the_table():
    """Mean −log p(token | context) over samples matches the entropy rate within 3 SE."""
    lang = ZipfMarkov(6, order=2, exponent=1.0, seed=1)
    seq = lang.sample(4000, 12, seed=2)
    ctx = seq[:, :-2] * 6 + seq[:, 1:-1]
    nll = -lang.table[ctx, seq[:, 2:]].log()
    se = float(nll.std()) / math.sqrt(nll.numel())
    assert abs(float(nll.mean()) - lang.entropy_rate) < 3 * se


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab": 1}, "vocab"),
        ({"order": 0}, "order"),
        ({"exponent": -1.0}, "exponent"),
        ({"vocab": 4096, "order": 3}, "too many"),
        # 2^20 contexts but a 2^30-entry (8 GiB) table: rejected before allocating it
        ({"vocab": 1024, "order": 2}, "table entries"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZipfMarkov(**kwargs)
