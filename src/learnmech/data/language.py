"""A synthetic language with a known optimal loss: a Zipfian Markov chain of order k.

Every context (the previous ``order`` tokens) has its own next-token distribution: a random
permutation of the Zipf law p_r ∝ r^(−s), r = 1 … V. Because each row is a permutation of
the same law, every context has the same entropy, so the chain's entropy rate — the
cross-entropy of the Bayes-optimal predictor, the floor any model's test loss approaches —
is exactly H(Zipf(s, V)) nats, whatever the stationary distribution. An order ≥ 2 chain needs
attention to look back more than one token. Generated in code from a seed (nothing is
downloaded).
"""

from __future__ import annotations

import math

import torch

__all__ = ["MAX_TABLE", "ZipfMarkov", "table_size_error"]

#: most entries of the next-token table (vocab^(order+1)): 2^25 float64 = 256 MiB
MAX_TABLE = 2**25


def table_size_error(vocab: int, order: int) -> str | None:
    """Why a (vocab, order) chain is too large to tabulate, or None."""
    entries = vocab ** (order + 1)
    if entries > MAX_TABLE:
        return (
            f"vocab^(order+1) = {vocab}^{order + 1} = {entries:,} table entries is too many "
            f"(max 2^25 = {MAX_TABLE:,}, 256 MiB in float64)"
        )
    return None


class ZipfMarkov:
    """``ZipfMarkov(vocab, order=2, exponent=1.0, seed=0)``; ``sample(n, length, seed)``."""

    def __init__(
        self, vocab: int = 32, order: int = 2, exponent: float = 1.0, seed: int = 0
    ) -> None:
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 2:
            raise ValueError(f"vocab must be an integer >= 2, got {vocab!r}")
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 4:
            raise ValueError(f"order must be an integer in 1..4, got {order!r}")
        err = table_size_error(vocab, order)
        if err:
            raise ValueError(err)
        if not (isinstance(exponent, int | float) and math.isfinite(exponent) and exponent >= 0):
            raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
        self.vocab, self.order, self.exponent = vocab, order, float(exponent)
        ranks = torch.arange(1, vocab + 1, dtype=torch.float64)
        law = ranks ** (-self.exponent)
        self.law = law / law.sum()
        gen = torch.Generator().manual_seed(int(seed))
        perms = torch.argsort(torch.rand(vocab**order, vocab, generator=gen), dim=1)
        # row c: token perms[c, r] has probability law[r]
        self.table = torch.empty(vocab**order, vocab, dtype=torch.float64)
        self.table.scatter_(1, perms, self.law.expand(vocab**order, vocab).contiguous())
        self._cdf: torch.Tensor | None = None  # built on the first sample, then reused

    @property
    def entropy_rate(self) -> float:
        """H(Zipf(s, V)) in nats: the Bayes-optimal cross-entropy per token."""
        p = self.law
        return float(-(p * p.log()).sum())

    def sample(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """``n`` sequences of ``length`` tokens (long tensor); the first ``order`` tokens are
        uniform, the rest follow the chain."""
        if n < 1 or length <= self.order:
            raise ValueError(f"need n >= 1 and length > order ({self.order}); got {n}, {length}")
        gen = torch.Generator().manual_seed(int(seed))
        out = torch.empty(n, length, dtype=torch.long)
        out[:, : self.order] = torch.randint(0, self.vocab, (n, self.order), generator=gen)
        if self._cdf is None:
            self._cdf = self.table.cumsum(1).float()
        cdf = self._cdf
        for t in range(self.order, length):
            ctx = torch.zeros(n, dtype=torch.long)
            for j in range(self.order):
                ctx = ctx * self.vocab + out[:, t - self.order + j]
            u = torch.rand(n, 1, generator=gen)
            out[:, t] = torch.searchsorted(cdf[ctx], u).squeeze(1).clamp_(max=self.vocab - 1)
        return out
