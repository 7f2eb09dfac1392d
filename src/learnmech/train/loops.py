"""Plain training loops for one model (torch.optim), with optional Recorder.

These are the reference the vectorized ensemble is checked against, and a convenient way
to train a single model with probes attached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from learnmech.train.batching import MinibatchSampler

if TYPE_CHECKING:
    from learnmech.train.recorder import Recorder

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """Loss after every step (index 0 = at init) and whether training diverged."""

    losses: list[float]
    diverged: bool


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½·mean over examples and outputs of (out − y)²."""
    return 0.5 * ((out.reshape(y.shape[0], -1) - y.reshape(y.shape[0], -1)) ** 2).mean()


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    steps: int,
    optimizer: Literal["gd", "sgd", "adam"] = "gd",
    batch_size: int | None = None,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    data_seed: int = 0,
    recorder: Recorder | None = None,
) -> TrainResult:
    """Train ``model`` in place on ½·MSE; stops early (``diverged=True``) on NaN/inf loss.

    Minibatches (``optimizer="sgd"``) follow the same ``data_seed`` order as
    :func:`learnmech.train.train_ensemble`.
    """
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    n = x.shape[0]
    if y.ndim == 1:
        y = y[:, None]
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
    elif optimizer in ("gd", "sgd"):
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    else:
        raise ValueError(f"optimizer must be 'gd', 'sgd' or 'adam', got {optimizer!r}")
    if optimizer == "sgd" and (batch_size is None or not 1 <= batch_size <= n):
        raise ValueError(f"sgd needs 1 <= batch_size <= {n}, got {batch_size!r}")
    sampler = MinibatchSampler(n, batch_size, data_seed) if optimizer == "sgd" else None  # type: ignore[arg-type]
    with torch.no_grad():
        losses = [float(mse(model(x), y))]
    if recorder is not None:
        recorder.step(0, loss=losses[0])
    for step in range(1, steps + 1):
        if sampler is not None:
            idx = sampler.next()
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        opt.zero_grad(set_to_none=True)
        loss = mse(model(xb), yb)
        if not torch.isfinite(loss):
            losses.append(float("nan"))
            return TrainResult(losses, True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # full-data loss at the new parameters, as the ensemble records
            full = float(mse(model(x), y))
        losses.append(full)
        if recorder is not None:
            recorder.step(step, loss=full)
        if not math.isfinite(full):
            return TrainResult(losses, True)
    return TrainResult(losses, False)
