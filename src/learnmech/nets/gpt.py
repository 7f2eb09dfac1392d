"""A small GPT-style decoder (pre-norm, causal self-attention) in standard parameterization.

Token and position embeddings N(0, 1); every matrix N(0, 1/fan_in); LayerNorm gains 1 and
biases 0; an untied readout. Each block is ``x + branch_mult · attn(LN(x))`` then
``x + branch_mult · mlp(LN(x))`` (Radford et al. 2019's pre-norm GPT-2 block). The
attention logits are ``attn_scale · q·k`` with ``attn_scale = 1/√head_dim`` (SP);
:func:`learnmech.hparams.parametrize` sets μP's 1/d form and the depth multipliers. Heads
are fixed and ``head_dim = width / heads`` grows with width, as in Yang et al. 2022.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from learnmech.nets.mlp import ScaledLinear
from learnmech.nets.resmlp import _positive_int

__all__ = ["GPT", "GPTBlock"]


def _linear(
    n_in: int, n_out: int, gen: torch.Generator | None, dtype: torch.dtype | None
) -> ScaledLinear:
    return ScaledLinear.standard(n_in, n_out, bias=False, generator=gen, dtype=dtype)


class Attention(nn.Module):
    def __init__(
        self, width: int, heads: int, gen: torch.Generator | None, dtype: torch.dtype | None
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.attn_scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = _linear(width, 3 * width, gen, dtype)
        self.proj = _linear(width, width, gen, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.attn_scale)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLPBlock(nn.Module):
    def __init__(self, width: int, gen: torch.Generator | None, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.fc = _linear(width, 4 * width, gen, dtype)
        self.proj = _linear(4 * width, width, gen, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class GPTBlock(nn.Module):
    def __init__(
        self, width: int, heads: int, gen: torch.Generator | None, dtype: torch.dtype | None
    ) -> None:
        super().__init__()
        self.branch_mult = 1.0
        self.ln1 = nn.LayerNorm(width, dtype=dtype)
        self.attn = Attention(width, heads, gen, dtype)
        self.ln2 = nn.LayerNorm(width, dtype=dtype)
        self.mlp = MLPBlock(width, gen, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.branch_mult * self.attn(self.ln1(x))
        return x + self.branch_mult * self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer: ``GPT(vocab, width, depth, heads, context)``.

    ``forward(tokens)`` maps a (batch, time) long tensor to (batch, time, vocab) logits.
    """

    def __init__(
        self,
        vocab: int,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        context: int = 64,
        *,
        seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, v in (
            ("vocab", vocab),
            ("width", width),
            ("depth", depth),
            ("heads", heads),
            ("context", context),
        ):
            _positive_int(name, v)
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        self.vocab, self.width, self.depth, self.heads, self.context = (
            vocab,
            width,
            depth,
            heads,
            context,
        )
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        # drawn from the private generator (nn.Embedding's own init would use the global RNG)
        self.tok = nn.Embedding(
            vocab, width, _weight=torch.randn(vocab, width, generator=gen, dtype=dtype)
        )
        self.pos = nn.Embedding(
            context, width, _weight=torch.randn(context, width, generator=gen, dtype=dtype)
        )
        self.blocks = nn.ModuleList(GPTBlock(width, heads, gen, dtype) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width, dtype=dtype)
        self.readout = _linear(width, vocab, gen, dtype)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[-1]
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the context ({self.context})")
        x = self.tok(tokens) + self.pos.weight[:t]
        for block in self.blocks:
            x = block(x)
        return self.readout(self.ln_f(x))
