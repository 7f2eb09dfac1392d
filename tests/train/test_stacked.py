"""train_steps_stacked equals train_steps member by member (float64), across optimizers,
μP param groups, data streams, divergence and dict batches; what cannot stack says why."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learnmech.hparams import parametrize
from learnmech.train.loops import train_steps
from learnmech.train.stacked import stack_reason, train_steps_stacked

TOL = 1e-10  # float64: the stacked and looped updates differ only in summation order


def net(seed: int, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 3)
    ).double()


def batch(step: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * stream + step)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    return x, torch.sin(x[:, :3]) + 0.1 * torch.randn(12, 3, generator=g, dtype=torch.float64)


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


EVAL = batch(0, 99)
AT = [1, 3, 7, 20]


def eval_loss(m: nn.Module) -> float:
    with torch.no_grad():
        return float(mse(m(EVAL[0]), EVAL[1]))


def looped(models, opts, streams, steps=20):
    return [
        train_steps(
            m,
            o,
            lambda t, s=s: batch(t, s),
            mse,
            steps,
            evaluate=eval_loss,
            at=AT,
        )
        for m, o, s in zip(models, opts, streams, strict=True)
    ]


def check_equal(make_opt, lrs, streams, seeds, steps=20):
    ref_models = [net(s) for s in seeds]
    ref_opts = [make_opt(m, lr) for m, lr in zip(ref_models, lrs, strict=True)]
    ref = looped(ref_models, ref_opts, streams, steps)
    models = [net(s) for s in seeds]
    opts = [make_opt(m, lr) for m, lr in zip(models, lrs, strict=True)]
    got = train_steps_stacked(
        models, opts, batch, mse, steps, streams=streams, eval_data=EVAL, at=AT
    )
    for r, g, rm, m in zip(ref, got, ref_models, models, strict=True):
        assert g.diverged == r.diverged
        assert g.steps == r.steps
        assert g.values == pytest.approx(r.values, rel=TOL, abs=TOL)
        for (n, a), (_, b) in zip(rm.named_parameters(), m.named_parameters(), strict=True):
            if not r.diverged:
                assert torch.allclose(a, b, rtol=TOL, atol=TOL), n
    return got


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda m, lr: torch.optim.SGD(m.parameters(), lr=lr),
        lambda m, lr: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, weight_decay=1e-2),
        lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, weight_decay=1e-3),
        lambda m, lr: torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.8, 0.95), eps=1e-6),
    ],
    ids=["sgd", "sgd-momentum-wd", "adam-l2", "adamw"],
)
def test_equals_the_loop(make_opt):
    check_equal(make_opt, [1e-3, 3e-3, 1e-2], [0, 0, 0], [0, 0, 0])


def test_seeds_streams_and_mup_groups():
    """Different inits, data streams and μP's per-group rates (three groups per member)."""

    def mup_adam(m, lr):
        return parametrize(m, "mup", base=net(0, width=4), optimizer="adam", lr=lr).optimizer()

    check_equal(mup_adam, [1e-3, 1e-2, 1e-3, 1e-2], [0, 0, 1, 1], [0, 0, 1, 1])


def test_a_diverging_member_stops_and_the_others_go_on():
    got = check_equal(
        lambda m, lr: torch.optim.SGD(m.parameters(), lr=lr), [1e-2, 1e8], [0, 0], [0, 0]
    )
    assert not got[0].diverged and got[1].diverged
    assert len(got[0].values) == len(AT)


def test_dict_batches():
    class DictNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 8, dtype=torch.float64)
            self.out = nn.Linear(8, 10, dtype=torch.float64)

        def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.out(torch.tanh(self.emb(input_ids)))}

    def dbatch(step: int, stream: int):
        g = torch.Generator().manual_seed(step + 7 * stream)
        ids = torch.randint(0, 10, (6, 4), generator=g)
        return {"input_ids": ids}, (ids + 1) % 10

    def ce(logits, y):
        return nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))

    def make(seed):
        torch.manual_seed(seed)
        return DictNet()

    ref_m = [make(s) for s in (0, 1)]
    ref_o = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in ref_m]
    ref = [
        train_steps(m, o, lambda t, s=s: dbatch(t, s), lambda out, y: ce(out["logits"], y), 8)
        for m, o, s in zip(ref_m, ref_o, (0, 1), strict=True)
    ]
    models = [make(s) for s in (0, 1)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    runs = train_steps_stacked(
        models, opts, dbatch, lambda out, y: ce(out["logits"], y), 8, streams=[0, 1]
    )
    assert not any(r.diverged for r in ref + runs)
    for a, b in zip(ref_m, models, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.allclose(pa, pb, rtol=TOL, atol=TOL)


def test_float32_close_to_the_loop():
    """In float32 the members follow the loop to float32 rounding over a short run: each
    of the 10 Adam steps moves a weight by at most ~lr, computed to ~10 ulps, and rounds a
    weight of size ≤ 1 once, so |Δθ| ≤ steps·(10·lr + 1)·ε₃₂."""
    ref_m = [net(0).float(), net(1).float()]
    ref_o = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in ref_m]

    def b32(t, s):
        x, y = batch(t, s)
        return x.float(), y.float()

    for m, o in zip(ref_m, ref_o, strict=True):
        train_steps(m, o, lambda t: b32(t, 0), mse, 10)
    models = [net(0).float(), net(1).float()]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    train_steps_stacked(models, opts, b32, mse, 10)
    for a, b in zip(ref_m, models, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            bound = 10 * (10 * 1e-2 + 1) * torch.finfo(torch.float32).eps
            assert float((pa - pb).detach().abs().max()) <= bound


def test_what_does_not_stack_says_why():
    m = [net(0), net(1)]
    assert stack_reason(m, [torch.optim.Adam(x.parameters()) for x in m]) == ""
    assert "RMSprop" in stack_reason(m, [torch.optim.RMSprop(x.parameters()) for x in m])
    assert "AMSGrad" in stack_reason(m, [torch.optim.Adam(x.parameters(), amsgrad=True) for x in m])
    drop = [nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.1)) for _ in range(2)]
    assert "dropout" in stack_reason(drop, [torch.optim.SGD(x.parameters(), lr=0.1) for x in drop])
    bn = [nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    assert "BatchNorm" in stack_reason(bn, [torch.optim.SGD(x.parameters(), lr=0.1) for x in bn])
    other = [net(0), net(1, width=8)]
    assert "shapes" in stack_reason(other, [torch.optim.SGD(x.parameters(), lr=0.1) for x in other])
    with pytest.raises(ValueError, match="RMSprop"):
        train_steps_stacked(m, [torch.optim.RMSprop(x.parameters()) for x in m], batch, mse, 1)


def test_bad_steps():
    m = [net(0)]
    with pytest.raises(ValueError, match="steps"):
        train_steps_stacked(m, [torch.optim.SGD(m[0].parameters(), lr=0.1)], batch, mse, -1)
