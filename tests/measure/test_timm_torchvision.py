"""The measurement tools and μP on torchvision and timm models, each against plain autograd.

Models built from their constructors with random weights (nothing is downloaded), in
float64: torchvision's ResNet-18 (BatchNorm), MobileNetV3-small (BatchNorm, hard-swish,
squeeze-excitation, dropout) and VisionTransformer (``nn.MultiheadAttention``, which calls
the fused attention kernel and has no eager switch); timm's ViT and ConvNeXt (LayerNorm,
GELU, layer scale, stochastic depth when asked) and EfficientNet-B0.

On the CPU machines this project is built on, the registry's torchvision wheel for the
CPU torch that ``make test`` installs is a CUDA build whose C extension fails to load
("operator torchvision::nms does not exist"), and timm imports torchvision: these tests
then skip, saying why. ``make test-vision`` builds a second environment with a matching
torch/torchvision pair and runs them there, where a skip is an error
(``LEARNMECH_REQUIRE_VISION=1``). Nothing in learnmech imports either package.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from learnmech.errors import UserError
from learnmech.hparams import coord_check, parametrize
from learnmech.measure.gradients import per_example_gradients
from learnmech.measure.hessian import LossHessian
from learnmech.measure.ntk import empirical_ntk
from learnmech.measure.similarity import layer_similarity
from tests import real_models

RTOL = 1e-10  # float64, the same function differentiated two ways
CLASSES = 3


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as err:  # a CUDA build's extension fails with RuntimeError, not ImportError
        if os.environ.get("LEARNMECH_REQUIRE_VISION"):
            raise
        pytest.skip(f"{name} not importable here: {type(err).__name__}: {str(err)[:120]}")


def _tv_resnet18() -> torch.nn.Module:
    return _import("torchvision").models.resnet18(num_classes=CLASSES)


def _tv_mobilenet() -> torch.nn.Module:
    return _import("torchvision").models.mobilenet_v3_small(num_classes=CLASSES)


def _tv_vit(width: int = 16) -> torch.nn.Module:
    tv = _import("torchvision")
    return tv.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=width,
        mlp_dim=2 * width,
        num_classes=CLASSES,
    )


def _timm_vit(width: int = 16) -> torch.nn.Module:
    _import("timm")
    return real_models.timm_vit(width, classes=CLASSES)


def _timm_convnext(width: int = 8) -> torch.nn.Module:
    return _import("timm").create_model(
        "convnext_atto",
        pretrained=False,
        dims=(width, 2 * width, 4 * width, 8 * width),
        depths=(1, 1, 1, 1),
        num_classes=CLASSES,
        drop_path_rate=0.1,  # stochastic depth: random in training mode
    )


def _timm_efficientnet() -> torch.nn.Module:
    return _import("timm").create_model("efficientnet_b0", pretrained=False, num_classes=CLASSES)


MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "tv-resnet18": _tv_resnet18,
    "tv-mobilenet-v3": _tv_mobilenet,
    "tv-vit": _tv_vit,
    "timm-vit": _timm_vit,
    "timm-convnext": _timm_convnext,
    "timm-efficientnet": _timm_efficientnet,
}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS[name]().double()


def _images(n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64)
    return x, torch.randint(0, CLASSES, (n,), generator=g)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _flat(ts: Any) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    err = float((a - b).abs().max())
    assert err <= RTOL * float(b.abs().max()), err


class _HardSigmoid(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3) / 6  # hardsigmoid; PyTorch's own has no double backward


def _composite(model: torch.nn.Module) -> torch.nn.Module:
    """The same model with its nn.Hardsigmoid modules written out, for plain autograd."""
    for name, m in list(model.named_modules()):
        if type(m) is torch.nn.Hardsigmoid:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, _HardSigmoid())
    return model


def _random_or_coupled(model: torch.nn.Module) -> bool:
    return any(
        isinstance(m, torch.nn.modules.batchnorm._NormBase)
        or "DropPath" in type(m).__name__
        or (isinstance(m, torch.nn.Dropout) and m.p > 0)
        for m in model.modules()
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_hessian_product_in_training_mode_equals_autograd(name):
    model = _model(name).train()
    x, y = _images()
    before = {k: v.clone() for k, v in model.named_buffers()}
    H = LossHessian(model, F.cross_entropy, (x, y), seed=5)
    v = torch.randn(H.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hv = H.matvec(v)
    assert model.training
    for k, b in model.named_buffers():  # BatchNorm's running statistics untouched
        assert torch.equal(b, before[k]), f"{k} changed"
    ref = _composite(copy.deepcopy(model))  # batch statistics, the same masks (seed 5)
    with torch.random.fork_rng(), sdpa_kernel([SDPBackend.MATH]):
        torch.manual_seed(5)
        g = torch.autograd.grad(F.cross_entropy(ref(x), y), _params(ref), create_graph=True)
        vs = torch.split(v, [p.numel() for p in _params(ref)])
        dot = sum((gi * vi.view_as(gi)).sum() for gi, vi in zip(g, vs, strict=True))
        _close(hv, _flat(torch.autograd.grad(dot, _params(ref))))


@pytest.mark.parametrize("name", list(MODELS))
def test_per_example_gradients_average_to_the_batch_gradient(name):
    model = _model(name).train()
    x, y = _images()
    if any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in model.modules()):
        with pytest.raises(UserError, match="model_mode='eval'"):
            per_example_gradients(model, F.cross_entropy, x, y)
    g = per_example_gradients(model, F.cross_entropy, x, y, model_mode="eval")
    assert model.training
    model.eval()
    full = torch.autograd.grad(F.cross_entropy(model(x), y), _params(model))
    _close(g.mean(0), _flat(full))


@pytest.mark.parametrize("name", list(MODELS))
def test_ntk_equals_the_autograd_jacobian(name):
    model = _model(name).train()
    x, _ = _images(n=2)
    K = empirical_ntk(model, x, mode="trace")  # eval: running statistics, no masks
    assert model.training
    model.eval()
    out = model(x)
    J = torch.stack(
        [_flat(torch.autograd.grad(o, _params(model), retain_graph=True)) for o in out.reshape(-1)]
    ).reshape(*out.shape, -1)
    _close(K, torch.einsum("ikp,jkp->ij", J, J) / CLASSES)
    if _random_or_coupled(model):  # BatchNorm's batch statistics, dropout, drop path
        with pytest.raises(UserError, match="model_mode='eval'"):
            empirical_ntk(model, x, mode="trace", model_mode="train")
    else:  # nothing differs between the modes
        _close(empirical_ntk(model, x, mode="trace", model_mode="train"), K)


@pytest.mark.parametrize("name", list(MODELS))
def test_layer_similarity_of_a_model_with_itself_is_one(name):
    model = _model(name)
    x, _ = _images(n=8)
    with warnings.catch_warnings(record=True) as caught:  # layers run twice, constant ones
        warnings.simplefilter("always")
        res = layer_similarity(model, model, x)
    assert len(res.layers_a) >= 5, res.layers_a
    diag = dict(zip(res.layers_a, torch.from_numpy(res.matrix).diagonal().tolist(), strict=True))
    undefined = {k for k, v in diag.items() if v != v}
    # torchvision's ViT zero-initialises its head: the same output for every image
    assert undefined == ({"heads.head", "heads"} & set(diag) if name == "tv-vit" else set())
    if undefined:
        assert any("CKA is undefined" in str(w.message) for w in caught)
    assert all(abs(v - 1) <= 1e-8 for k, v in diag.items() if k not in undefined), diag


# μP on the width-scalable ones: the coordinate check passes under μP and fails under SP
# (Adam; Yang et al. 2022, Fig. 5: SP's hidden updates grow ∝ width)
SCALABLE = {
    "timm-vit": (_timm_vit, 16, {"cls_token": "input", "pos_embed": "input"}),
    "timm-convnext": (_timm_convnext, 4, {}),
}


@pytest.mark.parametrize("name", list(SCALABLE))
def test_mup_coord_check_passes_and_sp_fails(name):
    build, base_width, roles = SCALABLE[name]
    x, y = _images(n=8)
    base = build(base_width)

    def maker(scheme: str) -> Any:
        def make(width: int, seed: int) -> Any:
            torch.manual_seed(seed)
            model = build(width).eval()  # no stochastic depth: one function per step
            p = parametrize(model, scheme, base=base, roles=roles, init="fixed", lr=1e-2)
            return model, p.optimizer()

        return make

    widths = [4 * base_width, 8 * base_width, 16 * base_width, 32 * base_width]
    mu = coord_check(maker("mup"), widths, (x.float(), y), steps=3, seeds=2)
    assert mu.passed, mu.summary()
    sp = coord_check(maker("sp"), widths, (x.float(), y), steps=3, seeds=2)
    assert not sp.passed, sp.summary()


def test_mup_refuses_torchvisions_multihead_attention_by_name():
    # nn.MultiheadAttention fixes its logit scale at 1/√d; μP needs 1/d
    roles = {"class_token": "input", "encoder.pos_embedding": "input"}
    with pytest.raises(UserError, match=r"encoder_layer_0\.self_attention is an nn\.Multi"):
        parametrize(_tv_vit(32), "mup", base=_tv_vit(16), roles=roles, init="fixed")


# Lightning 2.6 calls a torch pytree API that torch 2.13+ deprecates (their code, not ours)
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore::UserWarning:lightning.*")
# 8 random-label images: the unbiased |G|² may come out ≤ 0, which noise_scale says
@pytest.mark.filterwarnings("ignore:noise_scale. the unbiased:RuntimeWarning")
@pytest.mark.parametrize("name", ["tv-mobilenet-v3", "timm-convnext"])
def test_probes_in_a_lightning_trainer_leave_the_training_run_unchanged(name, tmp_path):
    # every probe on every step — sharpness (Hessian products in training mode: batch
    # statistics, dropout's and stochastic depth's masks, hard-sigmoid), gradient noise,
    # gradient norm, update size — and the run's weights, buffers and random stream end
    # bitwise where they end without (before stochastic depth counted as random, the
    # probes drew from the run's stream and moved ConvNeXt's weights by ~6e-4)
    MODELS[name]()  # skips first where torchvision or timm does not import
    pl = _import("lightning.pytorch")
    from learnmech.integrations import lightning_callback
    from learnmech.train import GradientNoiseProbe, GradNorm, SharpnessProbe, UpdateRMS

    x, y = _images(n=16)
    x = x.float()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = MODELS[name]()
            self.opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.net(x)

        def training_step(self, batch, idx):  # type: ignore[no-untyped-def]
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return self.opt

    def run(probed: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
        module = Module()
        cb = lightning_callback(
            [
                GradNorm(),
                UpdateRMS(),
                SharpnessProbe(F.cross_entropy, (x[:8], y[:8]), module.opt, every=1),
                GradientNoiseProbe(F.cross_entropy, x[:8], y[:8], every=1, model_mode="eval"),
            ]
        )
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
        torch.manual_seed(123)
        pl.Trainer(
            max_steps=3,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[cb] if probed else [],
            default_root_dir=str(tmp_path),
        ).fit(module, loader)
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return state, torch.rand(4), cb.session.recorder

    plain, after_plain, _ = run(False)
    probed, after_probed, rec = run(True)
    for k, v in plain.items():
        assert torch.equal(v, probed[k]), k
    assert torch.equal(after_plain, after_probed)  # the global random stream too
    for obs in ("sharpness", "trace_sigma", "grad_norm"):
        steps, values = rec.series(obs)
        assert steps == [1, 2, 3] and all(math.isfinite(v) and v > 0 for v in values), obs


def test_the_planner_plans_a_timm_vit_family_with_its_base_below_the_proxies(tmp_path):
    # the whole workflow (coord check, stacked sweeps, noise, stability, the loss law) on
    # timm's ViT. With μP's base at the first proxy (64) the coord check stops the plan:
    # at widths 64–256 the MLP's updates still fall with width (finite-width corrections
    # scale with base/width); with the base at 16 it passes and the plan is made
    _import("timm")
    from learnmech.plan import PlanStopped, make_plan

    store = tmp_path / "s.duckdb"
    with pytest.raises(PlanStopped, match=r"coord check failed(.|\n)*mlp\.fc2: updates vanish"):
        make_plan("tests.plan.specs:timm_vit_base64", target_width=512, store=store)
    plan = make_plan("tests.plan.specs:timm_vit", target_width=512, store=store)
    assert plan.width == 512 and 2.0**-10 <= plan.lr <= 2.0**-4
    lo, hi = plan.predicted_interval
    assert math.isfinite(plan.predicted_loss) and lo < hi
