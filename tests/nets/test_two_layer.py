"""The α-scaled two-layer ReLU network: init, tangent kernel, lazy limit."""

from __future__ import annotations

import math

import pytest
import torch

from learnmech.nets import two_layer as tl


def _task(n: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 2, generator=g, dtype=torch.float64)
    Xt = torch.randn(32, 2, generator=g, dtype=torch.float64)
    return X, torch.relu(X[:, 0]) - 0.5 * torch.relu(-X[:, 1]), Xt


def test_symmetric_init_gives_a_zero_balanced_function() -> None:
    w0, a0 = tl.symmetric_init(8, 2, seed=1)
    X, _, _ = _task()
    assert torch.allclose(torch.relu(X @ w0.T) @ a0, torch.zeros(16, dtype=torch.float64))
    assert torch.allclose(a0.abs(), w0.norm(dim=1))
    with pytest.raises(ValueError, match="even"):
        tl.symmetric_init(7, 2, seed=0)


def test_tangent_kernel_equals_the_autograd_gram_of_the_unscaled_network() -> None:
    w, a = tl.symmetric_init(6, 2, seed=2)
    X, _, _ = _task(5)
    rows = []
    for x in X:
        wr, ar = w.clone().requires_grad_(), a.clone().requires_grad_()
        h = torch.relu(wr @ x) @ ar
        gw, ga = torch.autograd.grad(h, [wr, ar])
        rows.append(torch.cat([gw.reshape(-1), ga]))
    J = torch.stack(rows)
    assert torch.allclose(tl.tangent_kernel(X, X, w, a), J @ J.T / 6, atol=1e-12)


def test_a_very_lazy_run_follows_its_linearization() -> None:
    X, y, Xt = _task()
    w0, a0 = tl.symmetric_init(200, 2, seed=3)
    lr, steps = 0.5, 200
    run = tl.train_scaled(X, y, w0, a0, alpha=1e4, lr=lr, steps=steps, record={50, 200})
    f_lin, lin_loss = tl.linearized_run(X, y, Xt, w0, a0, lr, steps, run.steps)
    ft = 1e4 / 200 * (torch.relu(Xt @ run.w.T) @ run.a)
    # Chizat et al. 2019 Thm 2.2: the gap is O(1/α); at α = 1e4 it is far below 1e-2
    assert float((ft - f_lin).norm() / f_lin.norm()) < 1e-2
    assert run.steps == [0, 50, 200]
    assert torch.allclose(torch.tensor(run.losses, dtype=torch.float64), lin_loss, rtol=1e-2)


def test_alignment_counts_mass_near_the_directions() -> None:
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    a = torch.tensor([1.0, 1.0], dtype=torch.float64)
    d = torch.tensor([[math.cos(0.05), math.sin(0.05)]], dtype=torch.float64)
    # mass |a|·‖w‖: neuron 1 (mass 1) is 2.9° from d, neuron 2 (mass 2) is 87° away
    assert tl.alignment(w, a, d, 10.0) == pytest.approx(1 / 3)


@pytest.mark.parametrize("blocks", ["one", "several"])
@pytest.mark.parametrize("alpha", [0.1, 3.0])
def test_stacked_training_equals_one_network_at_a_time(
    alpha: float, blocks: str, monkeypatch
) -> None:
    """The closed-form stacked gradients against autograd's, network by network (float64:
    agreement to round-off, 1e-12), in one block of hidden units or several (5, 5, 2)."""
    X, y, _ = _task()
    if blocks == "several":
        monkeypatch.setattr(tl, "_CACHE_ELEMENTS", 5 * 3 * X.shape[0])
    inits = [tl.symmetric_init(12, 2, seed=s) for s in range(3)]
    W0, A0 = torch.stack([w for w, _ in inits]), torch.stack([a for _, a in inits])
    lr = 0.5 * min(1.0, alpha)
    w, a, steps, losses = tl.train_scaled_stacked(X, y, W0, A0, alpha, lr, 150, {7, 150})
    assert steps == [0, 7, 150] and losses.shape == (3, 3)
    for i, (w0, a0) in enumerate(inits):
        run = tl.train_scaled(X, y, w0, a0, alpha, lr, 150, {7, 150})
        torch.testing.assert_close(w[i], run.w, rtol=0, atol=1e-12)
        torch.testing.assert_close(a[i], run.a, rtol=0, atol=1e-12)
        torch.testing.assert_close(
            losses[:, i], torch.tensor(run.losses, dtype=torch.float64), rtol=0, atol=1e-14
        )
