"""Deterministic synthetic datasets (generated, never downloaded)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["RegressionTask", "sphere_regression"]


@dataclass(frozen=True)
class RegressionTask:
    """Train/test inputs and targets; ``test_angle`` parameterises test points on a circle."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    test_angle: torch.Tensor


def sphere_regression(
    n_train: int,
    n_test: int,
    dim: int,
    *,
    seed: int = 0,
    teacher_width: int = 8,
    noise: float = 0.0,
    dtype: torch.dtype = torch.float64,
) -> RegressionTask:
    """Regression of a random two-layer tanh teacher on the sphere of radius √dim.

    Train inputs are uniform on the sphere; test inputs lie on the great circle spanned by
    the first two coordinates (so predictions can be drawn against one angle). Inputs have
    x·x/dim = 1, the normalisation of the kernel conventions. Targets are scaled to unit
    variance over the train set (then noise of std ``noise`` is added to train targets).
    """
    for name, v in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (test points lie on a circle), got {dim}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n_train, dim, generator=g, dtype=dtype)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(dim)
    angle = torch.linspace(0, 2 * math.pi, n_test + 1, dtype=dtype)[:-1]
    xt = torch.zeros(n_test, dim, dtype=dtype)
    xt[:, 0] = torch.cos(angle) * math.sqrt(dim)
    xt[:, 1] = torch.sin(angle) * math.sqrt(dim)
    w1 = torch.randn(dim, teacher_width, generator=g, dtype=dtype) / math.sqrt(dim)
    w2 = torch.randn(teacher_width, generator=g, dtype=dtype) / math.sqrt(teacher_width)

    def teacher(inp: torch.Tensor) -> torch.Tensor:
        return torch.tanh(2.0 * inp @ w1) @ w2

    y, yt = teacher(x), teacher(xt)
    scale = y.std()
    y, yt = y / scale, yt / scale
    if noise > 0:
        y = y + noise * torch.randn(n_train, generator=g, dtype=dtype)
    return RegressionTask(x, y[:, None], xt, yt[:, None], angle)
