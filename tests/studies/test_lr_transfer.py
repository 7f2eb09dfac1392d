"""lr-transfer: config validation, every scale, a tiny run's metrics, (slow) full scale."""

from __future__ import annotations

import pytest

from learnmech.errors import ConfigError
from learnmech.lab.runner import run_study
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


def test_a_tiny_depth_sweep_runs_and_reports_exponents(store_path):
    """The depth arm alone at a tiny budget: the metrics exist and carry standard errors
    (the quick scale of every arm is scored in the lab test)."""
    res = run_study(
        "lr-transfer",
        scale="quick",
        overrides={
            "arms": ["depth"],
            "depths": [2, 3, 4],
            "depth_steps": 5,
            "lr_log2": [-8, -7, -6, -5, -4],
        },
        seeds=2,
        store=store_path,
        report=False,
    )
    m = {x.name: x for x in res.metrics}
    for name in ("depth_none_exponent", "depth_depth-mup_exponent"):
        assert m[name].stderr is not None and m[name].stderr >= 0
    assert m["failed_or_diverged_trials"].value == 0


@pytest.mark.slow
def test_full_scale(store_path):
    res = run_study("lr-transfer", scale="full", store=store_path, report=True)
    assert res.verdict == "pass", [x.as_dict() for x in res.metrics]
