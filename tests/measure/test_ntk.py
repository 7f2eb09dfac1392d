"""Empirical NTK: implementations agree with brute force; finite nets approach the limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from learnmech.measure.ntk import empirical_ntk, jacobian_memory_bytes
from learnmech.nets import MLP
from learnmech.theory.kernels import mlp_kernels


def _brute_force(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Θ_ab(x, x') = Σ_p ∂f_a(x)/∂θ_p ∂f_b(x')/∂θ_p from per-example autograd."""
    params = [p for p in model.parameters()]

    def jac(x: torch.Tensor) -> torch.Tensor:
        rows = []
        for xi in x:
            out = model(xi[None])[0]
            for a in range(out.shape[0]):
                g = torch.autograd.grad(out[a], params, retain_graph=True)
                rows.append(torch.cat([gi.reshape(-1) for gi in g]))
        return torch.stack(rows).reshape(x.shape[0], -1, rows[0].numel())

    j1, j2 = jac(x1), jac(x2)
    return torch.einsum("iap,jbp->ijab", j1, j2)


@pytest.fixture
def net(f64):
    return MLP(3, 16, 2, out_dim=2, activation="tanh", w_std=1.2, b_std=0.3, seed=4)


@pytest.mark.parametrize("implementation", ["jacobian", "ntvp"])
@pytest.mark.parametrize("mode", ["full", "trace", "diagonal"])
@pytest.mark.parametrize("block_size", [None, 2])
def test_matches_brute_force(net, implementation, mode, block_size):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(5, 3, generator=g)
    x2 = torch.randn(4, 3, generator=g)
    ref = _brute_force(net, x1, x2)
    ref_sym = _brute_force(net, x1, x1)
    reduce = {
        "full": lambda t: t,
        "trace": lambda t: torch.diagonal(t, dim1=-2, dim2=-1).mean(-1),
        "diagonal": lambda t: torch.diagonal(t, dim1=-2, dim2=-1),
    }[mode]
    got = empirical_ntk(
        net, x1, x2, mode=mode, implementation=implementation, block_size=block_size
    )
    torch.testing.assert_close(got, reduce(ref), rtol=1e-10, atol=1e-12)
    got = empirical_ntk(net, x1, mode=mode, implementation=implementation, block_size=block_size)
    torch.testing.assert_close(got, reduce(ref_sym), rtol=1e-10, atol=1e-12)


def test_auto_picks_ntvp_under_small_budget(net):
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    a = empirical_ntk(net, x, mode="trace", implementation="jacobian")
    b = empirical_ntk(net, x, mode="trace", memory_budget=1)  # forces ntvp, block 1
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_finite_width_ntk_approaches_analytic(f64):
    """Mean empirical NTK over seeds at width 1024 vs the analytic NTK.

    Per-seed fluctuations are O(√(L/w)); the bias of the mean is O(1/w) (Hanin & Nica
    2019) — below the standard error here, so the tolerance is 4 standard errors.
    """
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g)
    kw = dict(w_std=1.4, b_std=0.1)
    analytic = torch.from_numpy(mlp_kernels(x.numpy(), depth=2, **kw).ntk)
    seeds = 12
    ks = torch.stack(
        [empirical_ntk(MLP(4, 1024, 2, seed=s, **kw), x, mode="trace") for s in range(seeds)]
    )
    mean, se = ks.mean(0), ks.std(0) / math.sqrt(seeds)
    z = (mean - analytic).abs() / se
    assert bool((z < 4).all()), f"max deviation {float(z.max()):.2f} SE"
    # and the error of one network is small: relative Frobenius error O(√(L/w))
    rel = torch.linalg.norm(ks - analytic, dim=(1, 2)) / torch.linalg.norm(analytic)
    assert float(rel.mean()) < 3 * math.sqrt(2 / 1024)


def test_finite_width_nngp_is_output_covariance(f64):
    """Covariance of outputs at init over seeds vs the analytic NNGP (4 SE)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, generator=g)
    kw = dict(w_std=1.4, b_std=0.2)
    nngp = mlp_kernels(x.numpy(), depth=2, **kw).nngp
    n = 1500
    with torch.no_grad():
        f = torch.stack([MLP(3, 512, 2, seed=s, **kw)(x)[:, 0] for s in range(n)]).numpy()
    cov = f.T @ f / n  # E f = 0 by symmetry of the weights
    se = np.sqrt((np.outer(np.diag(nngp), np.diag(nngp)) + nngp**2) / n)
    assert np.all(np.abs(cov - nngp) < 4 * se)


def test_bad_input(net):
    x = torch.randn(3, 3)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        empirical_ntk(lambda t: t, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        empirical_ntk(net, x, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        empirical_ntk(net, torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="non-empty"):
        empirical_ntk(net, torch.empty(0, 3))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        empirical_ntk(net, np.ones((2, 3)))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["trace", "diagonal"])
@pytest.mark.parametrize("second", [False, True])
def test_per_output_contraction_equals_blocked_jacobians(f64, mode, second):
    """The 'outputs' path (each example's backward once per output) against the blocked
    Jacobian contraction, on a small CNN with 5 outputs; 'auto' picks it when the
    Jacobians do not all fit the budget."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )
    x1 = torch.randn(7, 2, 6, 6)
    x2 = torch.randn(4, 2, 6, 6) if second else None
    ref = empirical_ntk(net, x1, x2, mode=mode, implementation="jacobian")
    lines: list[str] = []
    got = empirical_ntk(net, x1, x2, mode=mode, implementation="outputs", progress=lines.append)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert lines and lines[0].startswith("empirical NTK: outputs 0–")
    per_input = jacobian_memory_bytes(net, 1, 5)
    n_all = 7 + (4 if second else 0)
    budget = per_input * n_all // 2  # every Jacobian does not fit; one output's does
    seen: list[str] = []
    auto = empirical_ntk(net, x1, x2, mode=mode, memory_budget=budget, progress=seen.append)
    assert torch.allclose(auto, ref, rtol=1e-10, atol=1e-12)
    assert seen[0].startswith("empirical NTK: outputs")
    with pytest.raises(ValueError, match="Θ_aa only"):
        empirical_ntk(net, x1, mode="full", implementation="outputs")
