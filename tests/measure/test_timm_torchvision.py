"""The same regressions on timm and torchvision models, where they import.

On the CPU machines this project is built on, the registry's torchvision wheels are CUDA
builds whose C extension fails to load next to the CPU torch ("operator torchvision::nms
does not exist"), and timm imports torchvision: these tests then skip with that reason.
Nothing in learnmech imports either package.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from learnmech.errors import UserError
from learnmech.hparams import parametrize
from learnmech.measure.hessian import LossHessian
from learnmech.measure.ntk import empirical_ntk


def _import(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(name)
    except Exception as err:  # a CUDA build's extension fails with RuntimeError, not ImportError
        pytest.skip(f"{name} not importable here: {type(err).__name__}: {str(err)[:120]}")


def test_torchvision_resnet18_hessian_and_ntk():
    tv = _import("torchvision")
    torch.manual_seed(0)
    model = tv.models.resnet18(num_classes=4).double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 4, (4,))
    before = {k: v.clone() for k, v in model.named_buffers()}
    H = LossHessian(model, torch.nn.functional.cross_entropy, (x, y))
    H.matvec(torch.ones(H.dim, dtype=torch.float64))
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())
    K = empirical_ntk(model, x[:2], mode="trace")
    assert K.shape == (2, 2) and model.training
    with pytest.raises(UserError, match="model_mode='eval'"):
        empirical_ntk(model, x[:2], mode="trace", model_mode="train")


def test_timm_vit_roles_and_attention_scale():
    timm = _import("timm")

    def vit(width: int):  # type: ignore[no-untyped-def]
        return timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=32,
            patch_size=8,
            embed_dim=width,
            num_heads=2,
            depth=1,
            num_classes=5,
        )

    roles = {"cls_token": "input", "pos_embed": "input"}
    p = parametrize(vit(64), "mup", base=vit(32), roles=roles, init="fixed")
    assert p.rule("cls_token").role == "input"
    assert any(m["kind"] == "scale" for m in p.multipliers)
