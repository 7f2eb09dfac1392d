"""Tiny models people actually train, built from configs with random weights (nothing is
downloaded): HuggingFace GPT-2 (dropout 0.1, tied embeddings), a Llama-style decoder,
HF's ResNet (BatchNorm) and ViT. Tests that use them skip when ``transformers`` is absent
(``make test`` installs it through the ``hf`` extra)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

VOCAB, CLASSES = 32, 5


def _hf():  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("transformers")
    tf.logging.set_verbosity_error()
    return tf


def gpt2(  # type: ignore[no-untyped-def]
    *,
    width: int = 16,
    layers: int = 2,
    attn: str = "eager",
    dtype: torch.dtype = torch.float64,
    dropout: float = 0.1,
    tied: bool = True,
    inner: int | None = None,
):
    tf = _hf()
    torch.manual_seed(0)
    cfg = tf.GPT2Config(
        vocab_size=VOCAB,
        n_positions=16,
        n_embd=width,
        n_inner=inner,
        n_layer=layers,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        tie_word_embeddings=tied,
        attn_implementation=attn,
    )
    return tf.GPT2LMHeadModel(cfg).to(dtype)


def llama(*, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    tf = _hf()
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    return tf.LlamaForCausalLM(cfg).to(dtype)


def resnet(*, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    tf = _hf()
    torch.manual_seed(0)
    cfg = tf.ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 8],
        depths=[1, 1],
        layer_type="basic",
        num_labels=CLASSES,
    )
    return tf.ResNetForImageClassification(cfg).to(dtype)


def vit(*, width: int = 16, attn: str = "sdpa", dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    tf = _hf()
    torch.manual_seed(0)
    cfg = tf.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=3,
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * width,
        num_labels=CLASSES,
        attn_implementation=attn,
    )
    return tf.ViTForImageClassification(cfg).to(dtype)


def tokens(n: int = 4, t: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


def images(n: int = 4, size: int = 8, seed: int = 1, dtype=torch.float64):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g, dtype=dtype)
    return x, torch.randint(0, CLASSES, (n,), generator=g)


def lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the prediction tensor (what learnmech hands a loss)."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def cls_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def timm_vit(width: int = 16, classes: int = CLASSES) -> torch.nn.Module:
    """timm's ViT: one block, two heads, 32×32 images in 8×8 patches (``timm`` must
    import: callers skip first)."""
    import timm

    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=width,
        num_heads=2,
        depth=1,
        num_classes=classes,
    )
