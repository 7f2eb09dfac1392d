"""GPT and ResMLP: shapes, causality, SP init scale, argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from learnmech.nets import GPT, ResMLP


def test_gpt_is_causal_and_shaped():
    model = GPT(13, 32, 2, 4, 10, seed=0, dtype=torch.float64)
    x = torch.randint(0, 13, (3, 10))
    out = model(x)
    assert out.shape == (3, 10, 13)
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 13  # change the future only
    torch.testing.assert_close(model(y)[:, :6], out[:, :6], rtol=0, atol=0)
    assert not torch.allclose(model(y)[:, 6:], out[:, 6:])
    assert model.blocks[0].attn.attn_scale == pytest.approx(1 / math.sqrt(8))
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, 11, dtype=torch.long))


def test_sp_init_variance_is_one_over_fan_in():
    model = GPT(13, 256, 1, 4, 8, seed=1, dtype=torch.float64)
    w = model.blocks[0].mlp.proj.weight  # fan_in 1024
    assert float(w.detach().var()) == pytest.approx(1 / 1024, rel=3 * math.sqrt(2 / w.numel()))
    assert float(model.tok.weight.detach().var()) == pytest.approx(1.0, rel=0.1)
    r = ResMLP(8, 128, 3, 2, seed=0, dtype=torch.float64)
    assert float(r.blocks[0].fc.weight.detach().var()) == pytest.approx(
        1 / 128, rel=3 * math.sqrt(2 / 128**2)
    )
    assert r(torch.randn(5, 8, dtype=torch.float64)).shape == (5, 2)
    assert all(b.branch_mult == 1.0 for b in r.blocks)


def test_seeded_init_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    GPT(5, 16, 1, 2, 4, seed=3)
    ResMLP(4, 8, 2, seed=3)
    assert torch.equal(torch.rand(1), a)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"width": 30}, "multiple of heads"), ({"depth": 0}, "depth"), ({"vocab": -1}, "vocab")],
)
def test_gpt_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPT(**({"vocab": 5, "width": 32, "depth": 1, "heads": 4, "context": 8} | kwargs))
