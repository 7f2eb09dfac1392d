"""Minibatch order shared by the single-model loop and the ensemble engine."""

from __future__ import annotations

import torch

__all__ = ["MinibatchSampler"]


class MinibatchSampler:
    """Epochs of a seeded random permutation, cut into ``batch_size`` chunks (the last
    incomplete chunk of an epoch is dropped). The same ``seed`` gives the same sequence,
    so an ensemble member sees exactly what a separate run sees."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(int(seed))
        self.perm: torch.Tensor | None = None
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.perm is None or self.cursor + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.cursor = 0
        idx = self.perm[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx
