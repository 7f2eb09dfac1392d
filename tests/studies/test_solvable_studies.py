"""The solvable-settings studies: config validation, small runs and (slow) full scale."""

from __future__ import annotations

import pytest

from learnmech.errors import ConfigError
from learnmech.lab.runner import run_study
from learnmech.studies import get_study


@pytest.mark.parametrize(
    ("study", "overrides", "match"),
    [
        ("learning-curves", {"ridges": [-1.0]}, "ridges"),
        ("learning-curves", {"tasks": ["mnist"]}, "tasks"),
        ("learning-curves", {"n_values": [0, 8]}, "n_values"),
        ("deep-linear", {"depths": [0]}, "depths"),
        ("deep-linear", {"singular_values": [1.0, float("nan")]}, "singular_values"),
        ("conservation", {"lrs": [0.1]}, "lrs"),
        ("conservation", {"nets": ["cnn"]}, "nets"),
        ("lazy-rich", {"widths": [201]}, "widths"),
        ("lazy-rich", {"alphas": [1.0, -2.0]}, "alphas"),
        ("scaling-laws", {"a": 0.5}, "a"),
        ("scaling-laws", {"grid_p": [16, 32]}, "grid_p"),
    ],
)
def test_bad_config_names_the_field(study, overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_study(study).config("quick", overrides)


def test_deep_linear_small_run_matches_the_exact_solution(store_path):
    res = run_study(
        "deep-linear",
        store=store_path,
        report=False,
        seeds=2,
        overrides={"depths": [2, 4], "aligned_u0": [1e-3], "random_scales": [0.1]},
    )
    m = {x.name: x for x in res.metrics}
    assert res.verdict == "pass", [x.as_dict() for x in res.metrics]
    # the discrete map is exact: the measured strengths agree to rounding
    assert m["aligned_max_error_vs_discrete_theory"].value < 1e-11
    # the gradient-flow ODE differs by the O(η s) discrete-step correction, visibly
    assert m["aligned_max_error_vs_gradient_flow"].value > 1e-3


def test_conservation_small_run(store_path):
    res = run_study(
        "conservation",
        store=store_path,
        report=False,
        seeds=3,
        overrides={"nets": ["relu"], "batch_sizes": [4, 16]},
    )
    assert res.verdict == "pass", [x.as_dict() for x in res.metrics]


@pytest.mark.slow
@pytest.mark.parametrize(
    "study", ["learning-curves", "deep-linear", "conservation", "lazy-rich", "scaling-laws"]
)
def test_full_scale(study, store_path):
    res = run_study(study, scale="full", store=store_path, report=True)
    assert res.verdict == "pass", [x.as_dict() for x in res.metrics]
