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
