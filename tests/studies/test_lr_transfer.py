"""lr-transfer: config validation, every scale, a tiny run's metrics, (slow) full scale."""

from __future__ import annotations

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


def test_the_control_reuses_every_trial_but_the_mup_arms():
    """``mup_scheme`` (the sp-as-mup control) is hashed into the "mup" arms only."""
    st = get_study("lr-transfer")
    a, b = st.config("quick"), st.config("quick", {"arms": ["mlp"], "mup_scheme": "sp"})
    sp, mup = (
        {"arm": "mlp", "scheme": "sp", "size": 32},
        {"arm": "mlp", "scheme": "mup", "size": 32},
    )
    assert st.trial_config(a, sp) == st.trial_config(b, sp)
    assert st.trial_config(a, mup) != st.trial_config(b, mup)


@pytest.mark.parametrize(
    ("arm", "plain", "scaled"),
    [("mlp", "sp", "mup"), ("gpt", "sp", "mup"), ("depth", "none", "depth-mup")],
)
def test_at_the_base_size_the_scaled_scheme_is_the_plain_one_bitwise(arm, plain, scaled):
    """The grid measures the base size once (every multiplier is 1 there): the two sweeps
    must be equal to the last bit, and a size off the base must differ."""
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
    pts = st.grid(cfg)
    assert {"arm": arm, "scheme": plain, "size": base} not in pts
    assert {"arm": arm, "scheme": scaled, "size": base} in pts
