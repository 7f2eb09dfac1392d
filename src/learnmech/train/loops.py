"""Plain training loops for one model (torch.optim), with optional Recorder.

These are the reference the vectorized ensemble is checked against, and a convenient way
to train a single model with probes attached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from learnmech.measure.model_io import call
from learnmech.train.batching import MinibatchSampler

if TYPE_CHECKING:
    from learnmech.train.recorder import Recorder

__all__ = ["StepRun", "TrainResult", "steps_to_target", "train", "train_steps"]


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


@dataclass
class StepRun:
    """What :func:`train_steps` saw: the checkpoints' steps and ``evaluate`` values, and
    whether the training loss became non-finite (training stops there)."""

    steps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    diverged: bool = False

    def column(self, k: int) -> np.ndarray:
        """Entry ``k`` of every checkpoint's value (for tuple values such as (mean, SE))."""
        return np.array([v[k] for v in self.values], dtype=np.float64)


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Callable[[int], tuple[Any, torch.Tensor]],
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    steps: int,
    *,
    evaluate: Callable[[nn.Module], Any] | None = None,
    at: Iterable[int] = (),
    first_step: int = 1,
) -> StepRun:
    """Train on ``(x, y) = batch(step)`` with ``loss_fn(model(x), y)`` (``model(**x)`` for
    a dict batch) for ``steps``
    optimizer steps numbered from ``first_step``; after each step in ``at``, record
    ``evaluate(model)``. Stops at the first non-finite loss (``diverged``), before that
    loss can reach the parameters."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    checks = set(at)
    run = StepRun()
    for step in range(first_step, first_step + steps):
        xb, yb = batch(step)
        loss = loss_fn(call(model, xb), yb)
        if not torch.isfinite(loss):
            run.diverged = True
            return run
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if evaluate is not None and step in checks:
            run.steps.append(step)
            run.values.append(evaluate(model))
    return run


def steps_to_target(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    target: float,
    *,
    batch_size: int,
    max_steps: int,
    generator: torch.Generator,
    every: int = 1,
) -> float:
    """Optimizer steps until the full-data loss is ≤ ``target`` (checked every ``every``
    steps, so S is known to within ``every``); inf if it diverges or never gets there.

    Minibatches of ``batch_size`` are drawn with replacement from ``generator`` (the
    whole set when ``batch_size >= len(x)``): the S(B) measurement of McCandlish et al.
    (2018, §2.2), fitted by :func:`learnmech.laws.fit_batch_tradeoff`.
    """
    n = x.shape[0]
    for step in range(1, max_steps + 1):
        b = (
            torch.randint(0, n, (batch_size,), generator=generator).to(x.device)
            if batch_size < n
            else slice(None)
        )
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x[b]), y[b]).backward()
        optimizer.step()
        if step % every:
            continue
        with torch.no_grad():
            full = float(loss_fn(model(x), y))
        if not math.isfinite(full):
            return math.inf
        if full <= target:
            return float(step)
    return math.inf
