"""Edge of stability, critical batch size, linear scaling rule: config validation, every
scale, (slow) full scale."""

from __future__ import annotations

import pytest

from learnmech.errors import ConfigError
from learnmech.studies import get_study


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"gd_lrs": [-0.1]}, "gd_lrs"),
        ({"models": ["resnet"]}, "models"),
        ({"adam_lrs": [float("nan")]}, "adam_lrs"),
        ({"probe_every": 0}, "probe_every"),
        ({"steps": 5}, "steps"),
        ({"flow": "rk4"}, "flow"),
        ({"flow_lrs": [0.0]}, "flow_lrs"),
        ({"flow_k": 0}, "flow_k"),
        ({"flow_k": "many"}, "flow_k"),
    ],
)
def test_bad_config_names_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_study("edge-of-stability").config("quick", overrides)


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_every_scale_validates(scale):
    get_study("edge-of-stability").config(scale)


def test_the_flow_may_track_directions_as_they_reach_the_edge():
    st = get_study("edge-of-stability")
    assert st.config("quick", {"flow_k": "auto"}).flow_k == "auto"
    assert st.config("quick", {"flow_k": "3"}).flow_k == 3  # as the CLI's --set passes it


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"batch_sizes": [8, 16]}, "batch_sizes"),
        ({"lrs": [0.0]}, "lrs"),
        ({"target_loss": -1.0}, "target_loss"),
    ],
)
def test_critical_batch_size_bad_config(overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_study("critical-batch-size").config("quick", overrides)


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_critical_batch_size_every_scale_validates(scale):
    get_study("critical-batch-size").config(scale)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"ks": [2, 4, 8]}, "ks"), ({"rules": ["lamb"]}, "rules"), ({"epochs": 0}, "epochs")],
)
def test_linear_scaling_rule_bad_config(overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_study("linear-scaling-rule").config("quick", overrides)


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_linear_scaling_rule_every_scale_validates(scale):
    cfg = get_study("linear-scaling-rule").config(scale)
    # the square-root rule is only defined for k < 10 at β₁ = 0.9
    assert all(
        p["k"] < 10
        for p in get_study("linear-scaling-rule").grid(cfg)
        if p["rule"] not in ("sgd_linear", "sgd_none")
    )
