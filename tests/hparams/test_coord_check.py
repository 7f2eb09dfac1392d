"""coord_check: the verdict separates μP from SP and NTK; numbers match the mup package."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.hparams import coord_check, parametrize
from learnmech.nets import GPT, MLP

# above the base (32): finite-width corrections ∝ 1/√width bend the smallest widths
WIDTHS = [128, 256, 512, 1024]


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)


def _maker(scheme: str, optimizer: str = "adam", lr: float = 1e-2):
    base = MLP(16, 32, 2, 4, parameterization="standard")

    def make(width: int, seed: int):
        model = MLP(16, width, 2, 4, parameterization="standard", seed=seed)
        p = parametrize(model, scheme, base=base, optimizer=optimizer, lr=lr)
        return model, p.optimizer()

    return make


def test_mup_passes_and_sp_fails_with_adam():
    mu = coord_check(_maker("mup"), WIDTHS, _data(), steps=3, seeds=2)
    assert mu.passed, mu.summary()
    # every fitted exponent is flat within the stated bound τ = 1/4
    assert all(abs(s["slope"]) <= 0.25 for s in mu.slopes if s["quantity"] == "delta")
    sp = coord_check(_maker("sp"), WIDTHS, _data(), steps=3, seeds=2)
    assert not sp.passed
    # SP + Adam: the hidden layer's update grows ≈ ∝ width (Yang et al. 2022, Fig. 5)
    s = sp.slope("layers.1", "delta", step=1)
    assert s["verdict"] == "grows" and s["slope"] > 0.5
    assert any(line.startswith("layers.1: updates grow") for line in sp.diagnose())


def test_ntk_with_sgd_is_lazy():
    nt = coord_check(_maker("ntk", "sgd", 0.5), WIDTHS, _data(), steps=3, seeds=2)
    s = nt.slope("layers.1", "delta", step=3)
    # kernel regime: feature updates shrink as width^{-1/2}
    assert s["verdict"] == "vanishes"
    assert abs(s["slope"] + 0.5) < 3 * s["se"] + 0.1
    assert any("kernel (lazy) regime" in line for line in nt.diagnose())


def test_gpt_mup_coord_check_and_plot(tmp_path):
    with torch.device("meta"):
        base = GPT(16, 32, 2, 4, 8)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 16, (8, 8), generator=g)
    y = torch.randint(0, 16, (8, 8), generator=g)

    def make(width, seed):
        m = GPT(16, width, 2, 4, 8, seed=seed)
        return m, parametrize(m, "mup", base=base, lr=1e-2).optimizer()

    cc = coord_check(make, [32, 64, 128], (x, y), steps=2, seeds=1)
    assert cc.passed, cc.summary()
    assert "blocks.1.attn.qkv" in cc.layers and cc.layers[-1] == "output"
    tab = cc.table("act")
    assert tab["output"][32].shape == (3,)
    path = cc.plot(tmp_path / "cc.png", title="GPT μP")
    assert path.stat().st_size > 1000


def test_matches_the_mup_package_coord_numbers():
    """Same models, same data: mup's own coord check (mean |h| per module per step) and
    ours agree to float rounding."""
    mup = pytest.importorskip("mup")
    from mup.coord_check import _get_coord_data

    def seq(width, readout=nn.Linear):
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), readout(width, 4)
        ).double()

    x, y = _data()
    x = x.double()
    widths = [16, 32, 64]

    def lazy(w):
        def f():
            m = seq(w, mup.MuReadout)
            mup.set_base_shapes(m, seq(8, mup.MuReadout), delta=seq(12, mup.MuReadout))
            return m

        return f

    df = _get_coord_data(
        {w: lazy(w) for w in widths},
        [(x, y)],
        lambda m: mup.MuAdam(m.parameters(), lr=1e-2),
        nsteps=3,
        cuda=False,
        show_progress=False,
        lossfn="xent",
    )

    def make(width, seed):
        m = seq(width)
        return m, parametrize(m, "mup", base=seq(8), lr=1e-2, scale_eps=False).optimizer()

    cc = coord_check(make, widths, (x, y), steps=2, seeds=[0])
    theirs = {(r.width, r.module or "output", r.t - 1): r.l1 for r in df.itertuples()}
    n = 0
    for row in cc.rows:
        if row["quantity"] == "act":
            key = (row["width"], row["layer"], row["step"])
            assert row["value"] == pytest.approx(theirs[key], rel=1e-9), key
            n += 1
    assert n == 3 * 4 * 3  # widths × (3 layers + output) × steps 0..2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": [32, 64]}, "at least three distinct"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"seeds": []}, "at least one seed"),
        ({"layers": ["nope*"]}, "match no module"),
        ({"tolerance": -1}, "tolerance must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    kw = {"widths": WIDTHS, "steps": 1, "seeds": 1} | kwargs
    widths = kw.pop("widths")
    with pytest.raises(UserError, match=match):
        coord_check(_maker("mup"), widths, _data(), **kw)


def test_divergence_is_reported_not_fitted():
    with pytest.raises(UserError, match="non-finite output"):
        coord_check(_maker("sp", "sgd", 1e6), WIDTHS, _data(), steps=3, seeds=1)


# -- models people train (issue #15) ------------------------------------------------------


def test_hf_gpt2_with_dict_batches_and_model_outputs():
    from tests.real_models import gpt2, lm_loss, tokens

    def make(width: int, seed: int):
        model = gpt2(width=width, dtype=torch.float32)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    ids = tokens(n=4, t=6)
    cc = coord_check(
        make, [16, 32, 64], ({"input_ids": ids}, ids), steps=2, seeds=1, loss_fn=lm_loss
    )
    assert "output" in cc.layers and "transformer.h.0.mlp.c_fc" in cc.layers
    assert {r["step"] for r in cc.rows} == {0, 1, 2}


def test_dropout_masks_are_fixed_so_a_frozen_model_has_zero_updates():
    from tests.real_models import gpt2, lm_loss, tokens

    def make(width: int, seed: int):
        model = gpt2(width=width, dtype=torch.float32).train()  # dropout 0.1
        return model, torch.optim.SGD(model.parameters(), lr=0.0)

    ids = tokens(n=4, t=6)
    cc = coord_check(
        make, [16, 32, 64], ({"input_ids": ids}, ids), steps=2, seeds=1, loss_fn=lm_loss
    )
    deltas = [r["value"] for r in cc.rows if r["quantity"] == "delta"]
    assert deltas and max(deltas) == 0.0  # a new mask per step would read as an update


def test_probe_runs_in_training_mode_with_batch_statistics_by_default():
    import copy

    from tests.real_models import images, resnet

    x, y = images(n=8, dtype=torch.float32)
    built = {}

    def make(width: int, seed: int):
        model = resnet(dtype=torch.float32)
        built[width] = copy.deepcopy(model).train()
        return model, torch.optim.SGD(model.parameters(), lr=0.0)

    widths = [8, 16, 32]
    for mode, train in (("train", True), ("eval", False)):
        cc = coord_check(make, widths, (x, y), steps=1, seeds=1, model_mode=mode)
        for w in widths:
            ref = built[w].train(train)
            with torch.no_grad():
                want = float(ref(x).logits.abs().mean())
            got = [
                r["value"]
                for r in cc.rows
                if r["width"] == w and r["layer"] == "output" and r["step"] == 0
            ]
            assert got == [pytest.approx(want, rel=1e-6)], (mode, w)
