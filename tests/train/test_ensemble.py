"""The vectorized ensemble equals training each seed separately."""

from __future__ import annotations

import copy

import pytest
import torch

from learnmech.nets import MLP
from learnmech.train import train, train_ensemble


@pytest.fixture
def data(f64):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(24, 5, generator=g),
        torch.randn(24, 2, generator=g),
        torch.randn(7, 5, generator=g),
    )


CASES = [
    ("gd", "vmap", "relu", {}),
    ("gd", "fused", "relu", {}),
    ("gd", "fused", "leaky_relu(0.1)", {}),
    ("gd", "fused", "identity", dict(depth=0)),
    ("gd", "fused", "relu", dict(depth=1)),
    ("gd", "fused", "relu", dict(depth=4)),
    ("gd", "vmap", "tanh", {}),
    ("sgd", "vmap", "relu", dict(batch_size=5, momentum=0.9)),
    ("sgd", "vmap", "gelu", dict(batch_size=8)),
    ("adam", "vmap", "relu", {}),
]


@pytest.mark.parametrize(("optimizer", "engine", "activation", "extra"), CASES)
def test_ensemble_equals_separate_runs(data, optimizer, engine, activation, extra):
    x, y, xe = data
    lr = 1e-2 if optimizer == "adam" else 0.1
    extra = dict(extra)
    depth = extra.pop("depth", 2)
    models = [
        MLP(5, 32, depth, out_dim=2, activation=activation, b_std=0.1, seed=s) for s in range(4)
    ]
    res = train_ensemble(
        models,
        x,
        y,
        lr=lr,
        steps=15,
        optimizer=optimizer,
        x_eval=xe,
        record_every=5,
        engine=engine,
        **extra,
    )
    assert res.steps == [0, 5, 10, 15]
    for s, m in enumerate(models):
        ref = copy.deepcopy(m)
        out = train(ref, x, y, lr=lr, steps=15, optimizer=optimizer, **extra)
        for i, step in enumerate(res.steps):
            assert float(res.train_loss[i, s]) == pytest.approx(out.losses[step], rel=1e-10)
        torch.testing.assert_close(res.eval_outputs[-1, s], ref(xe), rtol=1e-10, atol=1e-12)
        for name, p in ref.named_parameters():
            torch.testing.assert_close(res.params[name][s], p.detach(), rtol=1e-10, atol=1e-12)
    # the input modules were not modified
    assert torch.equal(
        models[0].layers[0].weight,
        MLP(5, 32, depth, out_dim=2, activation=activation, b_std=0.1, seed=0).layers[0].weight,
    )


def test_float32_fused_matches_vmap():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g)
    models = [MLP(8, 128, 2, seed=s) for s in range(3)]
    a = train_ensemble(models, x, y, lr=0.5, steps=20, engine="fused", record_every=20)
    b = train_ensemble(models, x, y, lr=0.5, steps=20, engine="vmap", record_every=20)
    torch.testing.assert_close(a.train_loss, b.train_loss, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("engine", ["vmap", "fused"])
def test_divergent_member_is_flagged_and_others_continue(data, engine):
    x, y, _ = data
    kw = dict(out_dim=2, activation="identity", b_std=None)
    big = MLP(5, 32, 2, seed=0, **kw)  # linear net, lr ≫ 2/λ_max: blows up to inf/NaN
    still = [MLP(5, 32, 2, seed=s, **kw) for s in (1, 2)]
    for m in still:  # all-zero weights: every gradient vanishes, the loss stays finite
        for p in m.parameters():
            p.data.zero_()
    res = train_ensemble([big, *still], x, y, lr=1e3, steps=200, engine=engine, record_every=200)
    assert bool(res.diverged[0])
    assert not bool(torch.isfinite(res.train_loss[-1, 0]))
    assert bool(torch.isfinite(res.train_loss[-1, 1:]).all())


def test_bad_input(data):
    x, y, _ = data
    m = [MLP(5, 8, 1, out_dim=2, seed=0)]
    with pytest.raises(ValueError, match="lr"):
        train_ensemble(m, x, y, lr=-1.0, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_ensemble(m, x, y, lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="batch_size"):
        train_ensemble(m, x, y, lr=0.1, steps=1, optimizer="sgd")
    with pytest.raises(ValueError, match="NaN"):
        train_ensemble(m, x * float("nan"), y, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="examples"):
        train_ensemble(m, x, y[:3], lr=0.1, steps=1)
    with pytest.raises(ValueError, match="empty"):
        train_ensemble([], x, y, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="fused"):
        train_ensemble(m, x, y, lr=0.1, steps=1, optimizer="adam", engine="fused")
