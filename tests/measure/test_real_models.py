"""The measurement tools on models people train (HuggingFace GPT-2, Llama, ResNet, ViT,
built from configs with random weights), each against a plain autograd reference.

Regressions of issue #15: a training-mode BatchNorm's running statistics changed by a
Hessian product; dropout made repeated Hessian products differ (an operator that is not
one function); ``ModelOutput``s and dict batches were not accepted by the NTK; per-example
gradients failed inside ``vmap`` with dropout or BatchNorm; CKA of GPT-2 with itself was
below 1 in training mode; the fused attention kernel's missing double backward surfaced as
a bare autograd error (now the math backend is used where second derivatives are needed).
"""

from __future__ import annotations

import copy

import pytest
import torch

from learnmech.errors import UserError
from learnmech.measure.gradients import noise_scale, per_example_gradients
from learnmech.measure.hessian import LossHessian
from learnmech.measure.ntk import empirical_ntk
from learnmech.measure.similarity import layer_similarity
from tests.real_models import cls_loss, gpt2, images, llama, lm_loss, resnet, tokens, vit

RTOL = 1e-10  # float64 models, the same arithmetic in both computations


def _hvp(model, loss, v):  # type: ignore[no-untyped-def]
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.autograd.grad(loss, params, create_graph=True)
    vs, i = [], 0
    for p in params:
        vs.append(v[i : i + p.numel()].view_as(p))
        i += p.numel()
    hv = torch.autograd.grad(g, params, grad_outputs=vs)
    return torch.cat([h.reshape(-1) for h in hv])


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> None:
    assert float((a - b).abs().max()) <= rtol * float(b.abs().max()), float((a - b).abs().max())


def test_hessian_of_a_training_mode_resnet_leaves_batchnorm_statistics_alone():
    model = resnet().train()
    x, y = images()
    before = {k: v.clone() for k, v in model.named_buffers()}
    H = LossHessian(model, cls_loss, (x, y))
    v = torch.randn(H.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hv = H.matvec(v)
    for k, b in model.named_buffers():
        assert torch.equal(b, before[k]), f"{k} changed"
    assert model.training
    ref = copy.deepcopy(model)  # batch statistics, as the optimizer sees them
    _close(hv, _hvp(ref, cls_loss(ref(x).logits, y), v))
    # eval mode is a different (running-statistics) loss, and says so by differing
    He = LossHessian(model, cls_loss, (x, y), model_mode="eval")
    assert float((He.matvec(v) - hv).abs().max()) > 1e-3 * float(hv.abs().max())


def test_hessian_with_dropout_is_one_fixed_function():
    model = gpt2().train()  # dropout 0.1 everywhere
    ids = tokens()
    H = LossHessian(model, lm_loss, ({"input_ids": ids}, ids), seed=5)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(H.dim, generator=g, dtype=torch.float64)
    v = torch.randn(H.dim, generator=g, dtype=torch.float64)
    hv = H.matvec(v)
    assert torch.equal(hv, H.matvec(v))  # was: repeated products differed by O(10)
    assert abs(float(u @ hv) - float(v @ H.matvec(u))) <= RTOL * float(hv.norm() * u.norm())
    with torch.random.fork_rng():  # the same masks: seed + batch index 0
        torch.manual_seed(5)
        loss = lm_loss(model(input_ids=ids).logits, ids)
    _close(hv, _hvp(model, loss, v))


def test_fused_attention_is_differentiated_twice_through_the_math_backend():
    # HF's default "sdpa" attention calls PyTorch's fused kernel, which has no double
    # backward (plain autograd raises): the Hessian product runs it on the math backend
    from torch.nn.attention import SDPBackend, sdpa_kernel

    x, y = images()
    model = vit(attn="sdpa")
    H = LossHessian(model, cls_loss, (x, y))
    v = torch.randn(H.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hv = H.matvec(v)
    with pytest.raises(RuntimeError, match="derivative for"):
        _hvp(model, cls_loss(model(x).logits, y), v)
    with sdpa_kernel([SDPBackend.MATH]):
        _close(hv, _hvp(model, cls_loss(model(x).logits, y), v))
    # the eager model (same weights) is the same function, but HF's eager attention
    # rounds its probabilities to float32 (unit roundoff 2^-24 ≈ 6e-8): 100 u relative
    eager = LossHessian(vit(attn="eager"), cls_loss, (x, y)).matvec(v)
    _close(hv, eager, rtol=100 * 2.0**-24)


def test_per_example_gradients_and_ntk_of_a_fused_attention_vit_are_batched():
    # the fused kernel has no vmap rule: functorch would loop, with a warning (an error
    # in this suite); on the math backend every implementation is batched and exact
    x, y = images()
    model = vit(attn="sdpa").eval()
    g = per_example_gradients(model, cls_loss, x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    full = torch.autograd.grad(cls_loss(model(x).logits, y), params)
    _close(g.mean(0), torch.cat([t.reshape(-1) for t in full]))
    out = model(x).logits  # (n, k): each logit's gradient row by plain autograd
    J = torch.stack(
        [
            torch.cat([t.reshape(-1) for t in torch.autograd.grad(o, params, retain_graph=True)])
            for o in out.reshape(-1)
        ]
    ).reshape(*out.shape, -1)
    ref = torch.einsum("ikp,jkp->ij", J, J) / out.shape[1]
    kernels = {
        impl: empirical_ntk(model, x, mode="trace", implementation=impl)
        for impl in ("jacobian", "ntvp", "outputs")
    }
    for impl, K in kernels.items():
        assert float((K - ref).abs().max()) <= RTOL * float(ref.abs().max()), impl


def test_a_fused_kernel_called_directly_names_the_fix():
    class Fused(torch.nn.Module):  # attention as the flash-attn package calls it
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(4, 12, dtype=torch.float64)

        def forward(self, x):  # type: ignore[no-untyped-def]
            q, k, v = self.qkv(x).unsqueeze(1).chunk(3, -1)
            out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]
            return out.sum((1, 2, 3))

    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    H = LossHessian(Fused(), torch.nn.functional.mse_loss, (x, y))
    with pytest.raises(UserError, match="attn_implementation='eager'"):
        H.matvec(torch.ones(H.dim, dtype=torch.float64))


def test_hardsigmoid_is_differentiated_twice_and_handed_back():
    # PyTorch's hardsigmoid_backward has no derivative; MobileNetV3's squeeze-excitation
    # uses nn.Hardsigmoid, which the Hessian product computes as relu6(x + 3)/6
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3, dtype=torch.float64)
    model = torch.nn.Sequential(lin, torch.nn.Hardsigmoid(), torch.nn.Linear(3, 2).double())
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 2, (16,))
    H = LossHessian(model, cls_loss, (x, y))
    v = torch.randn(H.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="hardsigmoid_backward"):
        _hvp(model, cls_loss(model(x), y), v)
    hv = H.matvec(v)
    assert "forward" not in vars(model[1])  # the module's own forward is back
    z = model[2](torch.nn.functional.relu6(lin(x) + 3) / 6)
    assert torch.equal(z, model(x))  # the same function, to the last bit here
    _close(hv, _hvp(model, cls_loss(z, y), v))

    class Functional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.out = lin, model[2]

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.out(torch.nn.functional.hardsigmoid(self.lin(x)))

    H = LossHessian(Functional(), cls_loss, (x, y))
    with pytest.raises(UserError, match=r"relu6\(x \+ 3\) / 6"):
        H.matvec(v)


def _jacobian(model, ids):  # type: ignore[no-untyped-def]
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(input_ids=ids[None]).logits.reshape(-1)
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(o, params, retain_graph=True)])
        for o in out
    ]
    return torch.stack(rows)


@pytest.mark.parametrize("make", [gpt2, llama], ids=["gpt2", "llama"])
def test_ntk_of_a_causal_lm_from_dict_batches_equals_autograd(make):
    model = make().train()
    ids = tokens(n=2, t=4)
    K = empirical_ntk(model, {"input_ids": ids}, mode="trace")
    assert model.training  # eval for the measurement, restored afterwards
    model.eval()
    J = [_jacobian(model, ids[i]) for i in range(2)]
    ref = torch.stack(
        [torch.stack([(J[i] * J[j]).sum(1).mean() for j in range(2)]) for i in range(2)]
    )
    _close(K, ref)


def test_ntk_refuses_layers_that_are_not_per_example():
    ids = tokens(n=2, t=4)
    with pytest.raises(UserError, match=r"model_mode='train'.*transformer\.drop"):
        empirical_ntk(gpt2(), {"input_ids": ids}, mode="trace", model_mode="train")
    x, _ = images(n=2)
    with pytest.raises(UserError, match="normalization"):
        empirical_ntk(resnet(), x, mode="trace", model_mode="train")
    model = resnet().train()
    K = empirical_ntk(model, x, mode="trace")  # eval: running statistics
    assert K.shape == (2, 2) and torch.isfinite(K).all() and model.training


def test_per_example_gradients_of_gpt2_average_to_the_batch_gradient():
    model = gpt2().eval()
    ids = tokens()
    g = per_example_gradients(model, lm_loss, {"input_ids": ids}, ids)
    params = [p for p in model.parameters() if p.requires_grad]
    full = torch.autograd.grad(lm_loss(model(input_ids=ids).logits, ids), params)
    _close(g.mean(0), torch.cat([t.reshape(-1) for t in full]))


def test_noise_scale_with_dropout_and_with_batchnorm():
    model = gpt2().train()
    ids = tokens(n=6)
    ns = noise_scale(model, lm_loss, {"input_ids": ids}, ids, population=True)
    assert ns.trace_sigma > 0 and ns.grad_sq > 0  # independent masks per example
    x, y = images(n=6)
    net = resnet().train()
    with pytest.raises(UserError, match="model_mode='eval'"):
        noise_scale(net, cls_loss, x, y)
    before = {k: v.clone() for k, v in net.named_buffers()}
    ns = noise_scale(net, cls_loss, x, y, model_mode="eval", hessian_samples=2, population=True)
    assert ns.trace_sigma > 0 and net.training
    assert all(torch.equal(v, before[k]) for k, v in net.named_buffers())


def test_layer_similarity_of_gpt2_with_itself_is_one_on_every_comparable_layer():
    model = gpt2().train()
    ids = tokens(n=8)
    with pytest.warns(UserWarning, match="transformer.wpe"):
        res = layer_similarity(model, model, {"input_ids": ids})
    assert "a:transformer.wpe" in res.skipped and "transformer.wpe" not in res.layers_a
    diag = torch.from_numpy(res.matrix).diagonal()
    _close(diag, torch.ones_like(diag))
    assert model.training
    with pytest.warns(UserWarning):
        noisy = layer_similarity(model, model, {"input_ids": ids}, model_mode="train")
    assert float(torch.from_numpy(noisy.matrix).diagonal().min()) < 0.999  # dropout masks
    with pytest.raises(UserError, match=r"wpe.*first dimension"):
        layer_similarity(model, model, {"input_ids": ids}, layers_a=["transformer.wpe"])


def test_layer_similarity_skips_a_module_reused_within_a_pass():
    class Reuse(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = torch.nn.Linear(3, 4), torch.nn.Linear(4, 4), torch.nn.ReLU()

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.act(self.b(self.act(self.a(x))))  # one ReLU module, called twice

    torch.manual_seed(0)
    m = Reuse()
    with pytest.warns(UserWarning, match="ran 2 times"):
        res = layer_similarity(m, m, torch.randn(16, 3))
    assert res.layers_a == ["a", "b"]
