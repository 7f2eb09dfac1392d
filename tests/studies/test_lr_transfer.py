"""lr-transfer: config validation, every scale, a tiny run's metrics, (slow) full scale."""

from __future__ import annotations

import json

import pytest

from learnmech.errors import ConfigError
from learnmech.studies import get_study


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"arms": ["cnn"]}, "arms"),
        ({"lr_log2": [-5, -4, -3]}, "lr_log2"),
        ({"lr_log2": [-9, -7, -5, -3, -1]}, "lr_log2"),
        ({"mlp_widths": [64, 64, 128]}, "mlp_widths"),
        ({"depths": [2, 4]}, "depths"),
        ({"gpt_steps": 0}, "gpt_steps"),
        ({"vocab": 1024, "order": 3}, "vocab and order"),
    ],
)
def test_bad_config_names_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_study("lr-transfer").config("quick", overrides)


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_every_scale_validates(scale):
    study = get_study("lr-transfer")
    cfg = study.config(scale)
    pts = study.grid(cfg)
    assert {p["arm"] for p in pts} == {"mlp", "gpt", "depth"}


def test_the_control_measures_nothing_new():
    """Under sp-as-mup the "μP" MLP arm is SP: measured as the SP points the main run
    already holds (``mup_scheme`` is hashed into "mup" trials only)."""
    st = get_study("lr-transfer")
    a, b = st.config("quick"), st.config("quick", st.control("sp-as-mup").overrides)
    main = {json.dumps(p, sort_keys=True) for p, _ in st.measured_points(a)}
    ctl = {json.dumps(p, sort_keys=True) for p, _ in st.measured_points(b)}
    assert ctl <= main and len(ctl) == len(b.mlp_widths)
    mup = {"arm": "mlp", "scheme": "mup", "size": 128}
    assert st.measured_as(a, mup) == mup  # off the base, μP is measured as itself


@pytest.mark.parametrize(
    ("arm", "plain", "scaled"),
    [("mlp", "sp", "mup"), ("gpt", "sp", "mup"), ("depth", "none", "depth-mup")],
)
def test_at_the_base_size_the_scaled_scheme_is_the_plain_one_bitwise(arm, plain, scaled):
    """The base size is measured once (every multiplier is 1 there): the two sweeps must
    be equal to the last bit, and a size off the base must differ."""
    from learnmech.studies.lr_transfer import _sweep

    st = get_study("lr-transfer")
    small = {"mlp_steps": 3, "gpt_steps": 3, "depth_steps": 3, "lr_log2": [-9, -8, -7, -6, -5]}
    cfg = st.config("quick", small | {"gpt_lr_log2": [-7, -6, -5, -4, -3]})
    base = st._bases(cfg)[arm]
    other = {"mlp": cfg.mlp_widths[1], "gpt": cfg.gpt_widths[1], "depth": cfg.depths[1]}[arm]
    for size, same in ((base, True), (other, False)):
        lrs_a, a = _sweep(cfg, arm, plain, size, [0, 1])
        lrs_b, b = _sweep(cfg, arm, scaled, size, [0, 1])
        assert (lrs_a == lrs_b).all()
        assert (a == b).all() == same, (size, a, b)
        point = {"arm": arm, "scheme": scaled, "size": size}
        assert (st.measured_as(cfg, point)["scheme"] == plain) == same
