"""parametrize: role inference, the scaling tables, exact equivalences, serialization."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.hparams import InputMultiplier, parametrize
from learnmech.nets import GPT, MLP, ResMLP


def _mlp(width: int, seed: int = 0, dtype=torch.float64) -> MLP:
    return MLP(8, width, 2, 3, parameterization="standard", b_std=0.1, seed=seed, dtype=dtype)


def _seq(width: int, seed: int = 0, readout: type[nn.Linear] = nn.Linear, **kw) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), readout(width, 3, **kw)
    ).double()


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64)
    y = torch.randn(16, 3, generator=g, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        return model(x)


def test_roles_of_an_mlp_and_a_gpt():
    p = parametrize(_mlp(32), "mup", base=_mlp(8))
    assert p.roles() == {
        "layers.0.weight": "input",
        "layers.0.bias": "vector",
        "layers.1.weight": "hidden",
        "layers.1.bias": "vector",
        "layers.2.weight": "output",
        "layers.2.bias": "fixed",
    }
    with torch.device("meta"):
        base = GPT(11, 16, 2, 4, 8)
    roles = parametrize(GPT(11, 64, 2, 4, 8, seed=0), "mup", base=base).roles()
    # an Embedding's weight is (vocab, width): the width dim is its fan-out
    assert roles["tok.weight"] == roles["pos.weight"] == "input"
    assert roles["blocks.0.attn.qkv.weight"] == roles["blocks.1.mlp.proj.weight"] == "hidden"
    assert roles["blocks.0.ln1.weight"] == roles["ln_f.bias"] == "vector"
    assert roles["readout.weight"] == "output"


def test_the_adam_and_sgd_tables():
    """Width ×4: the μP (mup form), mean-field and NTK rules of the module docstring."""
    m = 4.0
    p = parametrize(_mlp(32), "mup", base=_mlp(8), optimizer="adam")
    i, h, o = (p.rule(f"layers.{k}.weight") for k in range(3))
    assert (h.lr_mult, h.eps_mult, h.init_mult) == (1 / m, 1 / m, 1.0)
    assert (i.lr_mult, i.eps_mult) == (1.0, 1 / m)
    assert (o.lr_mult, o.eps_mult, o.init_mult) == (1.0, 1 / m, math.sqrt(m))
    assert p.multipliers == [{"module": "layers.2", "kind": "w_mult", "value": 1 / m}]
    assert h.wd_mult == m  # lr·wd per step kept
    s = parametrize(_mlp(32), "mup", base=_mlp(8), optimizer="sgd")
    assert [s.rule(f"layers.{k}.weight").lr_mult for k in range(3)] == [m, 1.0, m]
    assert s.rule("layers.0.bias").lr_mult == m and s.rule("layers.2.bias").lr_mult == 1.0
    f = parametrize(_mlp(32), "mf", base=_mlp(8), optimizer="adam").rule("layers.2.weight")
    assert (f.lr_mult, f.init_mult, f.eps_mult) == (1 / m, 1 / math.sqrt(m), 1.0)
    n = parametrize(_mlp(32), "ntk", base=_mlp(8), optimizer="sgd")
    assert [n.rule(f"layers.{k}.weight").lr_mult for k in range(3)] == [1.0, 1 / m, 1 / m]
    na = parametrize(_mlp(32), "ntk", base=_mlp(8), optimizer="adam").rule("layers.1.weight")
    assert (na.lr_mult, na.eps_mult) == (0.5, 2.0)


def test_param_groups_carry_lr_eps_and_weight_decay():
    p = parametrize(_mlp(32), "mup", base=_mlp(8), lr=0.01, eps=1e-8, weight_decay=0.1)
    opt = p.optimizer()
    assert isinstance(opt, torch.optim.Adam)
    hidden = next(g for g in opt.param_groups if g["lm_role"] == "hidden")
    assert hidden["lr"] == pytest.approx(0.0025) and hidden["eps"] == pytest.approx(2.5e-9)
    assert hidden["lr"] * hidden["weight_decay"] == pytest.approx(0.01 * 0.1)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(p.model.parameters()))
    assert isinstance(
        parametrize(_mlp(32), "sp", base=_mlp(8), optimizer="adamw").optimizer(), torch.optim.AdamW
    )


@pytest.mark.parametrize("scheme", ["mup", "mf", "ntk"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_at_base_width_every_scheme_is_sp_exactly(scheme, optimizer):
    lr = 1e-2 if optimizer == "adam" else 0.1
    ref = _mlp(16, seed=3)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    want = _train(ref, cls(ref.parameters(), lr=lr))
    model = _mlp(16, seed=3)
    p = parametrize(model, scheme, base=_mlp(16), optimizer=optimizer, lr=lr)
    assert all(r.lr_mult == r.eps_mult == r.init_mult == 1.0 for r in p.rules)
    got = _train(model, p.optimizer())
    assert torch.equal(got, want)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_mup_and_mean_field_forms_train_identically(optimizer):
    """The readout multiplier 1/m folded into init, lr and ε gives the same trajectory
    (the abc symmetry of Tensor Programs V §5): a check of both tables."""
    lr = 1e-2 if optimizer == "adam" else 0.05
    outs = []
    for scheme in ("mup", "mf"):
        model = _mlp(64, seed=5)
        p = parametrize(model, scheme, base=_mlp(8), optimizer=optimizer, lr=lr)
        outs.append(_train(model, p.optimizer(), steps=5))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-12)


def test_generic_module_readout_gets_a_picklable_hook_and_survives_save_load_copy():
    model = _seq(32)
    p = parametrize(model, "mup", base=_seq(8), lr=1e-2)
    assert isinstance(next(iter(model[4]._forward_pre_hooks.values())), InputMultiplier)
    opt = p.optimizer()
    _train(model, opt, steps=2)
    x = torch.randn(5, 8, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)

    buf = io.BytesIO()
    torch.save({"model": model, "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2 = ckpt["model"]
    with torch.no_grad():
        torch.testing.assert_close(model2(x), y, rtol=0, atol=0)
    # optimizer state round trip: groups rebuilt by name for the loaded model
    p2 = parametrize(model2, "mup", base=_seq(8), lr=1e-2, rescale_init=False)
    opt2 = p2.optimizer()
    opt2.load_state_dict(ckpt["opt"])
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert [g["eps"] for g in opt2.param_groups] == [g["eps"] for g in opt.param_groups]
    # both continue identically
    torch.testing.assert_close(_train(model2, opt2), _train(model, opt), rtol=0, atol=0)

    clone = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


def test_state_dict_round_trip_into_a_fresh_model():
    model = GPT(11, 32, 2, 4, 8, seed=1)
    with torch.device("meta"):
        base = GPT(11, 16, 2, 4, 8)
    parametrize(model, "mup", base=base)
    fresh = GPT(11, 32, 2, 4, 8, seed=2)
    parametrize(fresh, "mup", base=base, rescale_init=False)  # multipliers, no init change
    fresh.load_state_dict(model.state_dict())
    x = torch.randint(0, 11, (3, 8))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    assert fresh.blocks[0].attn.attn_scale == pytest.approx(math.sqrt(4) / 8)


def test_torch_compile_traces_multipliers_without_graph_breaks():
    torch._dynamo.reset()
    model = _seq(32).float()
    parametrize(model, "mup", base=_seq(8))
    gpt = GPT(11, 32, 2, 4, 8, seed=0)
    with torch.device("meta"):
        parametrize(gpt, "mup", base=GPT(11, 16, 2, 4, 8), depth="depth-mup")
    x = torch.randn(4, 8)
    t = torch.randint(0, 11, (2, 8))
    with torch.no_grad():
        for m, inp in ((model, x), (gpt, t)):
            compiled = torch.compile(m, backend="eager", fullgraph=True)
            torch.testing.assert_close(compiled(inp), m(inp))


def test_depth_scalings():
    base = ResMLP(8, 16, 2, 3)
    for depth, alpha in (("depth-mup", 0.5), ("completep", 1.0)):
        for opt in ("adam", "sgd"):
            model = ResMLP(8, 16, 8, 3, seed=0)
            p = parametrize(model, "mup", base=base, depth=depth, optimizer=opt)
            r = 4.0
            assert all(b.branch_mult == pytest.approx(r**-alpha) for b in model.blocks)
            rule = p.rule("blocks.5.fc.weight")
            want = r ** (2 * alpha - 1) if opt == "sgd" else r ** (alpha - 1)
            assert rule.lr_mult == pytest.approx(want) and rule.depth_ratio == r
            if opt == "adam":
                assert rule.eps_mult == pytest.approx(r**-alpha)
            assert p.rule("input.weight").depth_ratio is None
    # named branches on a generic module get an output hook
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.branches = nn.ModuleList(nn.Linear(4, 4) for _ in range(n))

        def forward(self, x):
            for b in self.branches:
                x = x + b(x)
            return x

    net = Net(8)
    parametrize(net, "sp", base=Net(2), depth="completep", branches=["branches.*"])
    x = torch.randn(2, 4)
    with torch.no_grad():
        h = x
        for b in net.branches:
            h = h + 0.25 * nn.functional.linear(h, b.weight, b.bias)
        torch.testing.assert_close(net(x), h)


def test_delta_model_tells_roles_at_the_base_width():
    p = parametrize(_mlp(8), "mup", base=_mlp(8), delta=_mlp(12))
    assert p.rule("layers.1.weight").role == "hidden"
    assert all(r.lr_mult == 1.0 for r in p.rules)
    # a delta at the model's own width: the same roles and multipliers as without it
    q = parametrize(_mlp(32), "mup", base=_mlp(8), delta=_mlp(32))
    assert q.rule("layers.1.weight").role == "hidden" and q.rule("layers.1.weight").lr_mult == 0.25


def test_role_overrides():
    p = parametrize(_mlp(32), "mup", base=_mlp(8), roles={"layers.1.*": "fixed"})
    assert p.rule("layers.1.weight").role == "fixed" and p.rule("layers.1.weight").lr_mult == 1.0


def test_readout_zero_init():
    model = _seq(32)
    parametrize(model, "mup", base=_seq(8), readout_zero_init=True)
    assert torch.count_nonzero(model[4].weight) == 0 and torch.count_nonzero(model[4].bias) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scheme": "mu"}, "unknown scheme"),
        ({"optimizer": "lamb"}, "unknown optimizer"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"depth": "deep"}, "unknown depth scheme"),
        ({"roles": {"x": "bogus"}}, "unknown role"),
        ({"depth": "depth-mup"}, "needs residual branches"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    kw = {"base": _mlp(8)} | kwargs
    with pytest.raises(UserError, match=match):
        parametrize(_mlp(32), **kw)


def test_bad_models_are_named():
    with pytest.raises(TypeError, match=r"base must be an nn\.Module"):
        parametrize(_mlp(32), base=[1, 2])
    with pytest.raises(UserError, match="not in the base model"):
        parametrize(_mlp(32), base={"layers.0.weight": (8, 8)})
    model = _mlp(32)
    parametrize(model, base=_mlp(8))
    with pytest.raises(UserError, match="already parametrized"):
        parametrize(model, base=_mlp(8))

    class Attn(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(d, 2)
            self.out = nn.Linear(d, 1)

    with pytest.raises(UserError, match="MultiheadAttention"):
        parametrize(Attn(16), base=Attn(8))


def test_mup_cross_check_against_the_mup_package():
    """Same init, same data: mup.MuReadout + set_base_shapes + MuAdam/MuSGD and
    parametrize(scale_eps=False) produce the same trajectory (float64)."""
    mup = pytest.importorskip("mup")
    for optimizer, lr in (("adam", 1e-2), ("sgd", 0.05)):
        ours = _seq(64, seed=7)
        p = parametrize(ours, "mup", base=_seq(8), optimizer=optimizer, lr=lr, scale_eps=False)
        theirs = _seq(64, seed=7, readout=mup.MuReadout)
        mup.set_base_shapes(
            theirs, _seq(8, readout=mup.MuReadout), delta=_seq(16, readout=mup.MuReadout)
        )
        cls = mup.MuAdam if optimizer == "adam" else mup.MuSGD
        torch.testing.assert_close(
            _train(ours, p.optimizer(), steps=4),
            _train(theirs, cls(theirs.parameters(), lr=lr), steps=4),
            rtol=1e-10,
            atol=1e-12,
        )


# -- models people train (issue #15): HuggingFace GPT-2 and ViT from configs -------------


def _hf_gpt2(width: int, *, tied: bool = True, inner: int | None = None):
    from tests.real_models import gpt2

    return gpt2(width=width, tied=tied, inner=inner)


def test_tied_gpt2_readout_gets_mups_shared_readout_multiplier():
    model, base = _hf_gpt2(64), _hf_gpt2(16)
    p = parametrize(model, "mup", base=base, optimizer="adam", lr=1e-3, init="fixed")
    assert p.rule("transformer.wte.weight").role == "input"
    tied = [m for m in p.multipliers if m.get("tied")]
    assert tied == [
        {"module": "lm_head", "kind": "input_hook", "value": 0.25, "tied": "transformer.wte.weight"}
    ]
    ids = torch.randint(0, 32, (2, 5), generator=torch.Generator().manual_seed(0))
    model.eval()  # no dropout: the two passes below see the same hidden states
    with torch.no_grad():
        h = model.transformer(input_ids=ids).last_hidden_state
        logits = model(input_ids=ids).logits
    w = model.transformer.wte.weight
    assert torch.allclose(logits, (h @ w.T) / 4, rtol=1e-12, atol=1e-12)
    for scheme in ("ntk", "mf"):
        with pytest.raises(UserError, match="tie_word_embeddings=False"):
            parametrize(_hf_gpt2(64), scheme, base=base, init="fixed")


def test_hf_conv1d_weights_are_read_as_in_by_out():
    # width grows, the MLP's inner size does not: c_fc reads the stream (fan_in grows) and
    # c_proj writes it (fan_out grows); read as (out, in) the two were swapped
    p = parametrize(_hf_gpt2(64, inner=32), "mup", base=_hf_gpt2(16, inner=32), init="fixed")
    assert p.rule("transformer.h.0.mlp.c_fc.weight").role == "output"
    assert p.rule("transformer.h.0.mlp.c_proj.weight").role == "input"
    assert p.rule("transformer.h.0.attn.c_attn.weight").role == "hidden"


def test_hf_attention_scaling_becomes_mups_one_over_d():
    model = _hf_gpt2(64)
    parametrize(model, "mup", base=_hf_gpt2(16), init="fixed")
    d, d0 = 32, 8  # head dims: 64/2 and 16/2
    for blk in model.transformer.h:
        assert blk.attn.scaling == pytest.approx(math.sqrt(d0) / d, rel=1e-12)
    sp = _hf_gpt2(64)
    parametrize(sp, "sp", base=_hf_gpt2(16), init="fixed")
    assert sp.transformer.h[0].attn.scaling == pytest.approx(d**-0.5)


def test_roles_are_checked_and_consulted_before_inference():
    from tests.real_models import vit

    with pytest.raises(UserError, match="matches no parameter"):
        parametrize(
            _hf_gpt2(64), "mup", base=_hf_gpt2(16), roles={"lm_head.bias": "fixed"}, init="fixed"
        )

    def wide_vit(h: int):
        return vit(width=h)

    with pytest.raises(UserError, match="roles="):
        parametrize(wide_vit(32), "mup", base=wide_vit(16), init="fixed")
    roles = {"*cls_token": "input", "*position_embeddings": "input"}
    p = parametrize(wide_vit(32), "mup", base=wide_vit(16), roles=roles, init="fixed")
    r = p.rule("vit.embeddings.cls_token")
    assert (r.role, r.m_out, r.lr_mult) == ("input", 2.0, 1.0)
    assert p.rule("classifier.weight").role == "output"


def test_no_decay_excludes_biases_norms_and_embeddings():
    p = parametrize(
        _hf_gpt2(64),
        "mup",
        base=_hf_gpt2(16),
        optimizer="adamw",
        weight_decay=0.1,
        no_decay=["*bias", "role:vector", "*wte*"],
        init="fixed",
    )
    for g in p.param_groups():
        names = {n for n, q in p.model.named_parameters() if any(q is x for x in g["params"])}
        decays = g["weight_decay"] > 0
        assert decays == all(
            not n.endswith("bias") and "wte" not in n and p.rule(n).role != "vector" for n in names
        ), names
    with pytest.raises(UserError, match="no_decay"):
        parametrize(_hf_gpt2(64), "mup", base=_hf_gpt2(16), no_decay=["*nothing*"], init="fixed")


def test_fixed_std_init_is_detected_and_brought_to_sp_first():
    """HF draws every weight with std 0.02 at every width; parametrize assumes SP, so it
    warns, and init='fixed' rescales weights whose fan-in grows by 1/√m_in."""
    base = _hf_gpt2(16)
    with pytest.warns(UserWarning, match="init='fixed'"):
        parametrize(_hf_gpt2(64), "mup", base=base)
    model = _hf_gpt2(64)
    before = model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    p = parametrize(model, "mup", base=base, init="fixed")
    after = model.transformer.h[0].mlp.c_fc.weight.detach()
    assert p.rule("transformer.h.0.mlp.c_fc.weight").init_mult == pytest.approx(0.5)
    assert torch.equal(after, before * 0.5)
    emb = p.rule("transformer.wte.weight")  # input weights: width-free std either way
    assert emb.init_mult == 1.0
    with pytest.raises(UserError, match="init must be"):
        parametrize(_hf_gpt2(64), "mup", base=base, init="xavier")
