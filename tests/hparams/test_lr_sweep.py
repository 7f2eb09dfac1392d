"""lr_sweep, transfer_claims and steps_to_target on problems with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from learnmech.hparams import optimal_lr
from learnmech.hparams.transfer import LROptimum, lr_sweep, transfer_claims
from learnmech.train.loops import steps_to_target


def _quadratic_sweep(lrs: list[float], steps: int, stack: bool = True) -> np.ndarray:
    """GD on ½·h·(w − 1)² with h = 1: w_t − 1 = (1 − η)^t (w_0 − 1), diverging for η > 2."""
    x, y = torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)

    def build(lr: float) -> tuple[nn.Module, torch.optim.Optimizer]:
        m = nn.Linear(1, 1, bias=False).double()
        nn.init.zeros_(m.weight)
        return m, torch.optim.SGD(m.parameters(), lr=lr)

    def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((out - t) ** 2).mean()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float(loss(m(x), y))

    batches = lambda: lambda s: (x, y)  # noqa: E731
    return lr_sweep(lrs, build, batches, loss, steps, evaluate, cap=10.0, stack=stack)


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "loop"])
def test_lr_sweep_matches_the_closed_form_and_caps_divergence(stack: bool) -> None:
    lrs = [0.25, 0.5, 1.0, 1.5, 2.5]
    out = _quadratic_sweep(lrs, steps=3, stack=stack)
    expect = [0.5 * (1 - lr) ** 6 for lr in lrs[:4]]
    np.testing.assert_allclose(out[:4], expect, rtol=1e-12)
    assert out[4] == pytest.approx(0.5 * 1.5**6, rel=1e-12)  # above 2/h, still below the cap
    assert _quadratic_sweep([2.5, 3.0], steps=30, stack=stack)[0] == 10.0  # 0.5·1.5^60 capped
    assert optimal_lr(lrs, out).best_grid_lr == 1.0


def _opts(log2s: list[float], edge: bool = False) -> list[LROptimum]:
    return [LROptimum(2.0**v, v, 2.0**v, 0.1, edge) for v in log2s]


def test_transfer_claims_pass_flat_optima_and_fail_censored_ones() -> None:
    flat = {w: _opts([-6.05, -5.95, -6.0]) for w in (32, 64, 128, 256)}
    (exp, shift) = transfer_claims("mup", flat, transfers=True)
    assert exp.name == "mup_exponent" and shift.passed is True
    edged = dict(flat)
    edged[256] = _opts([-6.0, -6.0, -6.0], edge=True)
    assert transfer_claims("mup", edged, transfers=True)[1].passed is False


def test_transfer_claims_score_a_drift_both_ways() -> None:
    drift = {w: _opts([math.log2(1 / w) + d for d in (-0.05, 0.0, 0.05)]) for w in (32, 64, 128)}
    assert transfer_claims("sp", drift, transfers=False)[1].passed is True
    assert transfer_claims("sp", drift, transfers=True)[1].passed is False


def test_steps_to_target_counts_gd_steps_and_reports_divergence() -> None:
    x = torch.eye(4, dtype=torch.float64)
    y = torch.ones(4, 1, dtype=torch.float64)

    def run(lr: float) -> float:
        m = nn.Linear(4, 1, bias=False).double()
        nn.init.zeros_(m.weight)
        return steps_to_target(
            m,
            torch.optim.SGD(m.parameters(), lr=lr),
            x,
            y,
            lambda o, t: 0.5 * ((o - t) ** 2).mean(),
            1e-4,
            batch_size=4,
            max_steps=10_000,
            generator=torch.Generator().manual_seed(0),
        )

    # full batch: every weight follows w_t = 1 − (1 − η/4)^t; loss ½(1 − η/4)^{2t} ≤ 1e-4
    eta = 0.5
    expect = math.ceil(math.log(2e-4) / (2 * math.log(1 - eta / 4)))
    assert run(eta) == expect
    assert run(20.0) == math.inf


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "loop"])
def test_lr_sweep_over_seeds_matches_one_seed_at_a_time(stack: bool) -> None:
    """``seeds=``: every (seed, rate) run, each seed with its own init and data stream;
    row s equals the single-seed sweep of seed s (float64)."""
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = x[:, :1] * 2.0

    def build(lr: float, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        return m, torch.optim.Adam(m.parameters(), lr=lr)

    def batches(seed: int):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(seed + 100)
        return lambda _s: (lambda i: (x[i], y[i]))(torch.randint(0, 64, (8,), generator=g))

    def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ((out - t) ** 2).mean()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float(loss(m(x), y))

    lrs = [1e-3, 1e-2, 1e-1]
    both = lr_sweep(lrs, build, batches, loss, 20, evaluate, seeds=[0, 1], stack=stack)
    assert both.shape == (2, 3)
    for row, seed in zip(both, (0, 1), strict=True):
        one = lr_sweep(
            lrs,
            lambda lr, s=seed: build(lr, s),
            lambda s=seed: batches(s),
            loss,
            20,
            evaluate,
            stack=False,
        )
        np.testing.assert_allclose(row, one, rtol=1e-10)
