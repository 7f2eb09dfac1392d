"""Plan specs used by the tests: user-style model families (no learnmech nets)."""

from __future__ import annotations

import torch
from torch import nn

from learnmech.plan import PlanSpec


def _data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 4, generator=g)
    return x, (x @ w).argmax(1)


class Blown(nn.Module):
    """Its hidden activations are multiplied by the width: no parameterization of the
    weights can make them width-independent, so the coord check must fail."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.a = nn.Linear(8, width)
        self.b = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) * self.width)


def blown() -> PlanSpec:
    x, y = _data()
    return PlanSpec(
        model=Blown,
        data=(x, y),
        eval_data=_data(64, 1),
        widths=[16, 64, 256],
        lrs=[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        steps=5,
        batch_size=16,
        seeds=2,
    )


def not_a_spec() -> dict:
    return {"widths": [1, 2, 3]}
