"""Conservation laws: exact under gradient flow, O(η) drift under GD at fixed time."""

from __future__ import annotations

import torch

from learnmech.measure.invariants import balancedness, neuron_balance
from learnmech.nets.deep_linear import DeepLinear
from learnmech.nets.mlp import MLP


def _drift(lr: float, T: float = 2.0) -> float:
    torch.manual_seed(0)
    net = DeepLinear([5, 8, 8, 3], init_scale=0.7, seed=3)
    X = torch.randn(32, 5, dtype=torch.float64)
    Y = torch.randn(32, 3, dtype=torch.float64)
    C0 = balancedness(net)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(round(T / lr)):
        opt.zero_grad()
        (0.5 * ((net(X) - Y) ** 2).sum(1).mean()).backward()
        opt.step()
    C1 = balancedness(net)
    return float(sum(torch.linalg.norm(a - b) for a, b in zip(C0, C1, strict=True)))


def test_balancedness_drift_is_first_order_in_lr_at_fixed_time(f64):
    d1, d2, d3 = _drift(0.04), _drift(0.02), _drift(0.01)
    # per step η²·O(‖g‖²), T/η steps: drift ∝ η → halves with η (to within O(η) terms)
    assert 1.8 < d1 / d2 < 2.2 and 1.8 < d2 / d3 < 2.2
    assert d3 < 1e-2


def _relu_drift(lr: float, T: float = 2.0) -> float:
    net = MLP(3, 16, 1, activation="relu", b_std=0.5, seed=2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    Y = torch.sin(X[:, :1]) + X[:, 1:2]
    first, last = net.layers[0], net.layers[1]
    c0 = neuron_balance(first.weight, last.weight, first.bias)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(round(T / lr)):
        opt.zero_grad()
        (0.5 * ((net(X) - Y) ** 2).mean()).backward()
        opt.step()
    return float(torch.linalg.norm(neuron_balance(first.weight, last.weight, first.bias) - c0))


def test_relu_neuron_balance_drift_is_first_order_in_lr(f64):
    """‖w_in,j‖² + b_j² − ‖w_out,j‖² in the raw (trained) parameters of a ReLU MLP."""
    d1, d2, d3 = _relu_drift(0.2), _relu_drift(0.1), _relu_drift(0.05)
    assert 1.7 < d1 / d2 < 2.3 and 1.7 < d2 / d3 < 2.3


def test_neuron_balance_formula_and_the_symmetry_behind_it(f64):
    w_in, b, w_out = torch.randn(6, 4), torch.randn(6), torch.randn(2, 6)
    expected = (w_in**2).sum(1) + b**2 - (w_out**2).sum(0)
    torch.testing.assert_close(neuron_balance(w_in, w_out, b), expected)
    c = torch.rand(6) + 0.5  # the rescaling symmetry leaves the function unchanged
    x = torch.randn(10, 4)
    f1 = torch.relu(x @ w_in.T + b) @ w_out.T
    f2 = torch.relu(x @ (w_in * c[:, None]).T + b * c) @ (w_out / c).T
    torch.testing.assert_close(f1, f2)
