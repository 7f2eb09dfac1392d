"""How learnmech calls a model: outputs, dict batches, train/eval mode, fixed randomness."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.hessian import LossHessian
from learnmech.measure.model_io import (
    PrivateStream,
    batch_coupled,
    call,
    forward,
    in_mode,
    n_rows,
    prediction,
    random_layers,
    same_randomness,
    take,
)


class Out(OrderedDict):  # the shape of a HuggingFace ModelOutput: a dict with attributes
    pass


def test_prediction_finds_the_tensor_in_every_output_kind():
    z = torch.arange(6.0).reshape(2, 3)
    assert prediction(z) is z
    assert prediction(Out(loss=torch.tensor(1.0), logits=z)) is z  # logits, not loss
    assert prediction({"last_hidden_state": z}) is z
    assert prediction({"scores": z}) is z  # the only tensor
    assert prediction((z, torch.zeros(1))) is z
    with pytest.raises(UserError, match=r"which entry.*a, b"):
        prediction({"a": z, "b": z})
    with pytest.raises(UserError, match="returned a str"):
        prediction("nope")


def test_dict_batches_are_called_with_keywords_and_sliced_together():
    class Two(nn.Module):
        def forward(self, input_ids, attention_mask=None):  # type: ignore[no-untyped-def]
            return {"logits": input_ids.double() * attention_mask}

    b = {"input_ids": torch.arange(8).reshape(4, 2), "attention_mask": torch.ones(4, 2)}
    assert torch.equal(forward(Two(), b), b["input_ids"].double())
    assert n_rows(b) == 4 and n_rows(torch.zeros(3, 5)) == 3
    part = take(b, slice(1, 3))
    assert torch.equal(part["input_ids"], b["input_ids"][1:3])
    assert call(nn.Identity(), torch.ones(2)).shape == (2,)
    with pytest.raises(UserError, match="common first dimension"):
        n_rows({"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)})
    with pytest.raises(UserError, match="tensor or a dict"):
        n_rows([1, 2])


def test_in_mode_restores_flags_and_running_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 1))
    net.train()
    net[1].eval()  # a mixed state must come back exactly
    before = {k: v.clone() for k, v in net.named_buffers()}
    with in_mode(net, "train"):
        assert all(m.training for m in net.modules())
        assert batch_coupled(net) == ["1"] and random_layers(net) == ["2"]
        net(torch.randn(8, 3))  # updates the running statistics
        assert not torch.equal(net[1].running_mean, before["1.running_mean"])
    assert net.training and not net[1].training
    for k, v in net.named_buffers():
        assert torch.equal(v, before[k]), k
    with in_mode(net, "eval"):
        assert not any(m.training for m in net.modules()) and not random_layers(net)
    with pytest.raises(UserError, match="model_mode must be"):
        with in_mode(net, "inference"):  # type: ignore[arg-type]
            pass


class DropPath(nn.Module):  # timm's stochastic depth, as timm.layers.DropPath stores it
    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):  # type: ignore[no-untyped-def]
        if not self.training or self.drop_prob == 0:
            return x
        keep = x.new_empty(x.shape[0], 1).bernoulli_(1 - self.drop_prob)
        return x * keep / (1 - self.drop_prob)


class StochasticDepth(nn.Module):  # torchvision.ops.StochasticDepth stores its rate as p
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p


def test_stochastic_depth_counts_as_random_when_its_rate_is_positive():
    net = nn.Sequential(
        nn.Linear(3, 3), DropPath(0.1), DropPath(0.0), StochasticDepth(0.2), nn.Dropout(0.0)
    )
    assert random_layers(net.train()) == ["1", "3"]
    assert random_layers(net.eval()) == []
    # so a Hessian product fixes its masks, as for dropout: one function, one operator
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), DropPath(0.5), nn.Linear(4, 1)).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    H = LossHessian(net.train(), nn.functional.mse_loss, (x, y))
    v = torch.ones(H.dim, dtype=torch.float64)
    assert torch.equal(H.matvec(v), H.matvec(v))


def test_a_private_stream_continues_itself_and_leaves_the_global_one_alone():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    torch.manual_seed(7)
    expected = torch.rand(2, 5)  # what the global stream gives from seed 7
    torch.manual_seed(7)
    stream = PrivateStream(net)
    with stream():
        first = torch.rand(1, 5)
    with stream():
        second = torch.rand(1, 5)  # continues the private stream, not a fresh copy
    assert torch.equal(torch.cat([first, second]), expected)
    assert torch.equal(torch.rand(2, 5), expected)  # the global stream did not move
    assert not PrivateStream(net.eval()).active  # nothing random: a no-op


def test_same_randomness_repeats_masks_and_leaves_the_global_stream_alone():
    net = nn.Sequential(nn.Dropout(0.5)).train()
    x = torch.ones(1000)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with same_randomness(net, 7):
        a = net(x)
    with same_randomness(net, 7):
        b = net(x)
    with same_randomness(net, 8):
        c = net(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream is untouched
