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


def _small(model: type[nn.Module], **kw: object) -> PlanSpec:
    """A five-step plan over widths 16–256 on the linear-teacher data."""
    x, y = _data()
    return PlanSpec(
        model=model,
        data=(x, y),
        eval_data=_data(64, 1),
        widths=[16, 64, 256],
        lrs=[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        steps=5,
        batch_size=16,
        seeds=2,
        **kw,  # type: ignore[arg-type]
    )


def blown() -> PlanSpec:
    return _small(Blown)


class Picky(nn.Module):
    """A two-layer net that refuses to be built at width 256: a user's bug at one size."""

    def __init__(self, width: int) -> None:
        super().__init__()
        if width >= 256:
            raise ValueError(f"Picky cannot be built at width {width}")
        self.a, self.b = nn.Linear(8, width), nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def picky() -> PlanSpec:
    return _small(Picky, base_width=8)  # base 8: a width it can be built at


def not_a_spec() -> dict:
    return {"widths": [1, 2, 3]}


def hf_gpt2() -> PlanSpec:
    """A HuggingFace GPT-2 family built from configs (random weights, eager attention for
    the Hessian's double backward) on a Zipfian Markov chain."""
    import transformers as tf

    from learnmech.data.language import ZipfMarkov

    tf.logging.set_verbosity_error()

    def model(width: int) -> nn.Module:
        cfg = tf.GPT2Config(
            vocab_size=16,
            n_positions=8,
            n_embd=width,
            n_layer=1,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            attn_implementation="eager",
        )
        return tf.GPT2LMHeadModel(cfg)

    chain = ZipfMarkov(16, order=1, exponent=1.0, seed=0)
    train, test = chain.sample(512, 9, seed=1), chain.sample(64, 9, seed=2)
    return PlanSpec(
        model=model,
        data=(train[:, :-1], train[:, 1:]),
        eval_data=(test[:, :-1], test[:, 1:]),
        widths=[64, 128, 256],
        lrs=[2.0**k for k in range(-9, -4)],
        steps=12,
        batch_size=8,
        seeds=2,
        tokens_per_example=8,
        checkpoints=3,
        width_step=2,
        init="fixed",
    )


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    w = torch.randn(3 * 32 * 32, 4, generator=torch.Generator().manual_seed(99))
    return x, (x.reshape(n, -1) @ w).argmax(1)


def timm_vit(base_width: int | None = 16) -> PlanSpec:
    """timm's ViT (one block, two heads, 32×32 images in 8×8 patches) on a random linear
    teacher; proxies 64–256 against μP's base 16 (``timm_vit_base64``: against 64)."""
    from tests.real_models import timm_vit as model

    return PlanSpec(
        model=lambda width: model(width, classes=4),
        data=_images(512, 0),
        eval_data=_images(128, 1),
        widths=[64, 128, 256],
        lrs=[2.0**k for k in range(-10, -3)],
        steps=30,
        batch_size=16,
        seeds=2,
        checkpoints=3,
        init="fixed",  # timm: trunc_normal(std=0.02) at every width
        roles={"cls_token": "input", "pos_embed": "input"},
        base_width=base_width,
        width_step=2,
    )


def timm_vit_base64() -> PlanSpec:
    return timm_vit(None)
