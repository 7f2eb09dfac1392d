"""A user's own model family for ``learnmech plan`` (docs/tutorial-plan-your-run.md).

Nothing here comes from learnmech's nets: a plain PyTorch MLP on the 8×8 digits that ship
with scikit-learn (no download). ``learnmech plan docs.examples.plan_mlp:spec --budget 3e11``
plans a wider run from three small proxies.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

from learnmech.plan import PlanSpec


class Net(nn.Module):
    """Two hidden ReLU layers of ``width`` units."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Linear(64, width)
        self.hid = nn.Linear(width, width)
        self.out = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hid(torch.relu(self.inp(x)))))


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1500], perm[1500:]
    return x[tr], y[tr], x[te], y[te]


def spec() -> PlanSpec:
    x, y, xt, yt = _digits()
    return PlanSpec(
        model=Net,
        data=(x, y),
        eval_data=(xt, yt),
        widths=[16, 32, 64, 128],
        lrs=[2.0**k for k in range(-12, -1)],
        steps=300,
        batch_size=32,
        seeds=3,
        checkpoints=8,
    )


def small() -> PlanSpec:
    """The same family at a size the test suite runs in seconds."""
    x, y, xt, yt = _digits()
    return PlanSpec(
        model=Net,
        data=(x, y),
        eval_data=(xt, yt),
        widths=[16, 32, 64],
        lrs=[2.0**k for k in range(-10, -2)],
        steps=40,
        batch_size=32,
        seeds=2,
        checkpoints=4,
    )
