"""Recorder probes inside a user-written training loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learnmech.measure.ntk import empirical_ntk
from learnmech.train import (
    ActivationRMS,
    GradNorm,
    KernelChange,
    Recorder,
    UpdateRMS,
    WeightRMS,
)


def test_probes_in_a_plain_loop(f64):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    k0 = empirical_ntk(model, x[:8], mode="trace")
    with Recorder(
        model, [WeightRMS(), UpdateRMS(), ActivationRMS(), GradNorm(), KernelChange(x[:8], every=5)]
    ) as rec:
        for step in range(1, 11):
            before = [p.detach().clone() for p in model.parameters()]
            out = model(x)
            loss = ((out - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            grads = [p.grad.detach().clone() for p in model.parameters()]
            opt.step()
            rec.step(step, loss=loss)
            # update RMS = lr·RMS(grad) for plain SGD
            _, upd = rec.series("update_rms/0.weight")
            assert upd[-1] == pytest.approx(0.1 * float(grads[0].pow(2).mean().sqrt()), rel=1e-10)
            gn = rec.series("grad_norm")[1][-1]
            assert gn == pytest.approx(
                float(torch.sqrt(sum((g**2).sum() for g in grads))), rel=1e-10
            )
            act = rec.series("activation_rms/1")[1][-1]  # the Tanh output of this forward
            h = torch.tanh(x @ before[0].T + before[1])
            assert act == pytest.approx(float(h.pow(2).mean().sqrt()), rel=1e-10)
    _, losses = rec.series("loss")
    assert len(losses) == 10 and losses[-1] < losses[0]
    kc_steps, kc = rec.series("kernel_change")
    assert kc_steps == [5, 10]
    k10 = empirical_ntk(model, x[:8], mode="trace")
    assert kc[-1] == pytest.approx(
        float(torch.linalg.norm(k10 - k0) / torch.linalg.norm(k0)), rel=1e-10
    )
    w_rms = rec.series("weight_rms/2.weight")[1][-1]
    assert w_rms == pytest.approx(float(model[2].weight.detach().pow(2).mean().sqrt()), rel=1e-12)
    # every hook is gone after close
    assert all(not m._forward_hooks for m in model.modules())
    rows = rec.rows()
    assert {"step", "observable", "value"} <= rows[0].keys()
    with pytest.raises(RuntimeError, match="closed"):
        rec.step(11, loss=0.0)


def test_bad_input():
    model = nn.Linear(2, 1)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        Recorder("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        Recorder(model, every=0)
    with pytest.raises(TypeError, match="Probe"):
        Recorder(model, probes=["loss"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no submodule"):
        Recorder(model, probes=[ActivationRMS(["nope"])])
