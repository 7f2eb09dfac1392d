"""Residual MLP in standard parameterization, ready for :func:`learnmech.hparams.parametrize`.

``h₀ = W_in x``; ``h_{l+1} = h_l + branch_mult · W_l φ(h_l)`` for ``depth`` blocks (the
one-layer residual block of Yang et al. 2023, "Tensor Programs VI", eq. 1, and Bordelon et
al. 2023); ``f = W_out φ(h_L)``. Weights are N(0, 1/fan_in) (SP), biases zero;
``branch_mult`` is 1 until a depth scheme sets it.
"""

from __future__ import annotations

import torch
from torch import nn

from learnmech.nets.mlp import ScaledLinear
from learnmech.theory.activations import get_activation

__all__ = ["ResBlock", "ResMLP"]


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class ResBlock(nn.Module):
    """``h + branch_mult · W φ(h)``."""

    def __init__(
        self, width: int, act: str, gen: torch.Generator | None, dtype: torch.dtype | None
    ) -> None:
        super().__init__()
        self.act = get_activation(act)
        self.branch_mult = 1.0
        self.fc = ScaledLinear.standard(width, width, generator=gen, dtype=dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch_mult * self.fc(self.act.fn(h))


class ResMLP(nn.Module):
    """Residual MLP: input layer, ``depth`` residual blocks, readout."""

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        out_dim: int = 1,
        *,
        activation: str = "relu",
        seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _positive_int("in_dim", in_dim)
        _positive_int("width", width)
        _positive_int("depth", depth)
        _positive_int("out_dim", out_dim)
        self.in_dim, self.width, self.depth, self.out_dim = in_dim, width, depth, out_dim
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        self.act = get_activation(activation)
        self.input = ScaledLinear.standard(in_dim, width, generator=gen, dtype=dtype)
        self.blocks = nn.ModuleList(ResBlock(width, activation, gen, dtype) for _ in range(depth))
        self.readout = ScaledLinear.standard(width, out_dim, generator=gen, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(self.act.fn(h))
