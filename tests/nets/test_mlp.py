"""MLP parameterizations: the same function at init, different gradients."""

from __future__ import annotations

import math

import pytest
import torch

from learnmech.measure.ntk import empirical_ntk
from learnmech.nets import MLP


def test_ntk_and_standard_define_the_same_initial_function(f64):
    """Same seed ⇒ SP weights are the NTK weights times w_std/√fan_in: identical outputs."""
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    a = MLP(7, 32, 3, w_std=1.3, b_std=0.4, parameterization="ntk", seed=11)
    b = MLP(7, 32, 3, w_std=1.3, b_std=0.4, parameterization="standard", seed=11)
    torch.testing.assert_close(a(x), b(x), rtol=1e-12, atol=1e-12)


def test_standard_ntk_grows_with_width(f64):
    """Under SP the NTK scales with width; under NTK param it has a finite limit."""
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    tr = {}
    for param in ("ntk", "standard"):
        for w in (64, 512):
            k = empirical_ntk(MLP(3, w, 2, parameterization=param, seed=0), x, mode="trace")
            tr[param, w] = float(torch.diagonal(k).mean())
    assert tr["standard", 512] / tr["standard", 64] > 4  # ≈ 8 = width ratio
    assert abs(tr["ntk", 512] / tr["ntk", 64] - 1) < 0.5


def test_features_and_shapes(f64):
    m = MLP(3, 8, 2, out_dim=4, activation="gelu", seed=0)
    x = torch.randn(6, 3)
    assert m(x).shape == (6, 4)
    feats = m.features(x)
    assert [f.shape for f in feats] == [(6, 8), (6, 8)]
    assert sum(p.numel() for p in m.parameters()) == 3 * 8 + 8 + 8 * 8 + 8 + 8 * 4 + 4
    no_bias = MLP(3, 8, 1, b_std=None, seed=0)
    assert all(layer.bias is None for layer in no_bias.layers)


def test_seeded_init_is_deterministic_and_private():
    torch.manual_seed(123)
    before = torch.rand(1)
    a = MLP(3, 8, 1, seed=5)
    torch.manual_seed(123)
    b = MLP(3, 8, 1, seed=5)
    after = torch.rand(1)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert torch.equal(before, after)  # the global RNG was not consumed


def test_init_variance_matches_parameterization(f64):
    m = MLP(100, 2000, 1, w_std=1.5, parameterization="standard", seed=0)
    w = m.layers[1].weight.detach()
    expected = 1.5**2 / 2000
    se = expected * math.sqrt(2 / w.numel())
    assert abs(float(w.var()) - expected) < 4 * se


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(in_dim=0, width=4, depth=1), "in_dim"),
        (dict(in_dim=2, width=-3, depth=1), "width"),
        (dict(in_dim=2, width=4, depth=-1), "depth"),
        (dict(in_dim=2, width=4, depth=1, w_std=float("nan")), "w_std"),
        (dict(in_dim=2, width=4, depth=1, b_std=-1.0), "b_std"),
        (dict(in_dim=2, width=4, depth=1, parameterization="mup"), "parameterization"),
        (dict(in_dim=2, width=4.5, depth=1), "width"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)
