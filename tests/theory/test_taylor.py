"""GD on Taylor models (theory.taylor) against closed forms and the real network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.model_io import forward
from learnmech.measure.ntk import empirical_ntk
from learnmech.nets.mlp import MLP
from learnmech.theory.taylor import taylor_run


def _data(d_in: int = 5, d_out: int = 1, n: int = 20):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    Y = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    Xe = torch.randn(7, d_in, generator=g, dtype=torch.float64)
    return X, Y, Xe


def _gd(net: nn.Module, X, Y: torch.Tensor, lr: float, steps: int) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((forward(net, X) - Y) ** 2).mean()).backward()
        opt.step()


def test_the_quadratic_model_of_a_two_layer_linear_net_is_the_net() -> None:
    """f = W₂W₁x is exactly quadratic in (W₁, W₂): its order-2 Taylor model is f itself, so
    GD on it equals GD on the network to round-off."""
    X, Y, Xe = _data(d_out=2)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.Linear(8, 2, bias=False)).double()
    r = taylor_run(net, X, Y, 0.05, 100, order=2, x_eval=Xe, record=[50])
    assert r.steps == [0, 50, 100] and r.eval_outputs is not None
    _gd(net, X, Y, 0.05, 100)
    with torch.no_grad():
        np.testing.assert_allclose(r.eval_outputs[-1], net(Xe).numpy(), rtol=0, atol=1e-12)
        assert r.train_loss[-1] == pytest.approx(float(0.5 * ((net(X) - Y) ** 2).mean()))


def test_the_linearized_model_is_kernel_gradient_descent_with_the_empirical_ntk() -> None:
    """Order 1: f_t = f₀ + Θ(x*, X)Θ⁻¹(I − (I − ηΘ/n)^t)(Y − f₀(X)) (Lee et al. 2019, eq. 9–11,
    discrete time, mean loss)."""
    X, Y, Xe = _data()
    net = MLP(5, 16, 2, activation="erf", parameterization="ntk", seed=1, dtype=torch.float64)
    lr, steps = 0.3, 60
    r = taylor_run(net, X, Y, lr, steps, order=1, x_eval=Xe)
    K = empirical_ntk(net, torch.cat([X, Xe]), X, mode="trace").double()
    Ktr, Kte = K[: len(X)], K[len(X) :]
    with torch.no_grad():
        r0 = Y - net(X)
        filt = torch.eye(len(X), dtype=torch.float64) - torch.linalg.matrix_power(
            torch.eye(len(X), dtype=torch.float64) - lr * Ktr / len(X), steps
        )
        pred = net(Xe) + Kte @ torch.linalg.solve(Ktr, filt @ r0)
    np.testing.assert_allclose(r.eval_outputs[-1], pred.numpy(), rtol=0, atol=1e-9)


def test_taylor_errors_shrink_with_the_order_of_the_model() -> None:
    """One GD step of size η from θ₀ moves the parameters by O(η): the linearized model
    misses the network by O(η²), the quadratic model by O(η³). Halving η must divide the
    errors by ≈ 4 and ≈ 8 (bounds: at least 3 and 6, leaving room for the next orders)."""
    X, Y, Xe = _data()
    errs = {}
    for lr in (0.04, 0.02):
        net = MLP(5, 64, 2, activation="erf", parameterization="ntk", seed=3, dtype=torch.float64)
        lin = taylor_run(net, X, Y, lr, 1, order=1, x_eval=Xe)
        quad = taylor_run(net, X, Y, lr, 1, order=2, x_eval=Xe)
        _gd(net, X, Y, lr, 1)
        with torch.no_grad():
            f = net(Xe).numpy()
        errs[lr] = (np.abs(f - lin.eval_outputs[-1]).max(), np.abs(f - quad.eval_outputs[-1]).max())
    assert errs[0.04][0] / errs[0.02][0] > 3
    assert errs[0.04][1] / errs[0.02][1] > 6
    assert errs[0.02][1] < 0.05 * errs[0.02][0]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"order": 3}, "order"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"steps": -1}, "steps"),
    ],
)
def test_bad_arguments_are_one_clear_error(kw: dict, match: str) -> None:
    X, Y, _ = _data()
    net = MLP(5, 8, 1, parameterization="ntk", seed=0, dtype=torch.float64)
    args = {"lr": 0.1, "steps": 5} | kw
    lr, steps = args.pop("lr"), args.pop("steps")
    with pytest.raises(UserError, match=match):
        taylor_run(net, X, Y, lr, steps, **args)
    with pytest.raises(UserError, match="shape"):
        taylor_run(net, X, Y[:, :0], 0.1, 5)


def test_a_huggingface_model_from_a_config() -> None:
    """A random-weight BERT regression head from a config (dict batch, ``ModelOutput``):
    one small step of its quadratic model matches the real network to O(η³), far closer
    than the linearized model's O(η²)."""
    tf = pytest.importorskip("transformers")
    cfg = tf.BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=8, num_labels=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = {"input_ids": torch.randint(0, 20, (6, 5), generator=g)}
    y = torch.randn(6, 1, generator=g, dtype=torch.float64)
    net = tf.BertForSequenceClassification(cfg).double().eval()
    lin = taylor_run(net, x, y, 0.05, 1, order=1, x_eval=x)
    quad = taylor_run(net, x, y, 0.05, 1, order=2, x_eval=x)
    _gd(net, x, y, 0.05, 1)
    with torch.no_grad():
        f = net(**x).logits.numpy()
    e_lin = np.abs(f - lin.eval_outputs[-1]).max()
    e_quad = np.abs(f - quad.eval_outputs[-1]).max()
    assert e_quad < 0.1 * e_lin
