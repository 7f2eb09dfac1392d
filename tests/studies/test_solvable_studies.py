"""The solvable-settings studies: config validation, small runs and (slow) full scale."""

from __future__ import annotations

import math

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
        ("mean-field", {"widths": [16, 33, 64, 128]}, "widths"),
        ("mean-field", {"widths": [16, 32, 64]}, "widths"),
        ("mean-field", {"alphas": [0.0, 1.0]}, "alphas"),
        ("mean-field", {"tolerance": float("nan")}, "tolerance"),
        ("mean-field", {"limit": "ntk"}, "limit"),
        ("scaling-laws", {"a": 0.5}, "a"),
        ("scaling-laws", {"grid_p": [16, 32]}, "grid_p"),
        ("scaling-laws", {"arms": ["lstm"]}, "arms"),
        ("scaling-laws", {"arms": ["gpt"], "gpt_widths": [8, 16]}, "gpt_widths"),
        ("scaling-laws", {"gpt_steps": [64, 64, 64]}, "gpt_steps"),
        ("scaling-laws", {"grid_n": [32, 32, 64]}, "grid_n"),
        ("scaling-laws", {"arms": ["gpt"], "gpt_widths": [8, 15, 16]}, "divisible by gpt_heads"),
        ("scaling-laws", {"arms": ["gpt"], "gpt_holdout": 3}, "gpt_holdout"),
        ("scaling-laws", {"gpt_lr": float("nan")}, "gpt_lr"),
        ("scaling-laws", {"arms": ["gpt"], "gpt_vocab": 1024, "gpt_order": 3}, "gpt_vocab"),
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


GPT_TINY = {
    "arms": ["gpt"],
    "gpt_widths": [8, 12, 16, 24],
    "gpt_steps": [32, 64, 128],
    "gpt_batch": 16,
    "gpt_test_sequences": 128,
    "gpt_seeds": 2,
}


def test_scaling_laws_gpt_arm_small_run(store_path):
    """The GPT arm end to end on a tiny grid: every test loss stays above the chain's
    entropy rate (the closed-form floor, scored), the fits and the leave-widest-out score
    are reported, only ``gpt_seeds`` seeds are trained, and the figure is drawn."""
    res = run_study("scaling-laws", store=store_path, report=True, seeds=3, overrides=GPT_TINY)
    m = {x.name: x for x in res.metrics}
    assert res.verdict == "pass", [x.as_dict() for x in res.metrics]
    assert m["gpt_excess_over_bayes"].passed and m["gpt_excess_over_bayes"].kind == "above"
    assert res.trials_run == 4 * 2  # widths × gpt_seeds, not × seeds
    for name in (
        "gpt_fitted_E_minus_bayes",
        "gpt_fitted_alpha",
        "gpt_fitted_beta",
        "gpt_extrapolation_mean_abs_rel_error",
        "gpt_extrapolation_excess_rel_error",
    ):
        assert math.isfinite(m[name].value), name
    assert (res.report.parent / "scaling_laws_gpt.png").exists()


def test_scaling_laws_arms_hash_only_their_own_fields():
    """Changing a GPT setting re-uses the random-feature trials, and the other way round."""
    st = get_study("scaling-laws")
    a = st.config("quick", {"arms": ["rf", "gpt"]})
    b = st.config("quick", {"arms": ["rf", "gpt"], "gpt_lr": 1e-3, "gpt_vocab": 32})
    c = st.config("quick", {"arms": ["rf", "gpt"], "ridge": 1e-2})
    rf = {"kind": "grid", "n": 32, "p": 16}
    gpt = {"kind": "gpt", "width": 16}
    assert st.trial_config(a, rf) == st.trial_config(b, rf)
    assert st.trial_config(a, gpt) != st.trial_config(b, gpt)
    assert st.trial_config(a, gpt) == st.trial_config(c, gpt)
    assert not any(k.startswith("gpt_") for k in st.trial_config(a, rf))


def test_scaling_laws_control_re_measures_the_data_sweep_alone():
    """The finite-features control (data_sweep_p) changes the data sweep's trials only, and
    the ridge only the grid's: the model sweep and the grid are re-used."""
    st = get_study("scaling-laws")
    a = st.config("quick")
    ctl = st.config("quick", st.control("finite-features").overrides)
    ridge = st.config("quick", {"ridge": 1e-2})
    n, p, g = (
        {"kind": "n", "n": 64, "p": 0},
        {"kind": "p", "n": 0, "p": 64},
        {"kind": "grid", "n": 32, "p": 16},
    )
    assert st.trial_config(a, n) != st.trial_config(ctl, n)
    assert st.trial_config(a, p) == st.trial_config(ctl, p)
    assert st.trial_config(a, g) == st.trial_config(ctl, g)
    assert st.trial_config(a, g) != st.trial_config(ridge, g)
    assert st.trial_config(a, n) == st.trial_config(ridge, n)
    assert st.trial_config(a, p) == st.trial_config(ridge, p)


def test_one_value_for_a_list_field_is_a_list():
    assert get_study("scaling-laws").config("quick", {"arms": "gpt"}).arms == ["gpt"]


def test_learning_curves_control_re_uses_the_kernel_trials_it_shares():
    """The finite-population control changes digits_max_fraction (the grid) and net_steps
    (the net arm): the digits kernel trials at the sizes both grids hold keep their keys,
    the net trials do not."""
    st = get_study("learning-curves")
    a = st.config("quick")
    ctl = st.config("quick", st.control("finite-population").overrides)
    kernel = {"task": "digits", "n": 256}
    net = {"task": "digits-net", "n": 64, "width": 64}
    assert kernel in st.grid(a) and kernel in st.grid(ctl)
    assert st.trial_config(a, kernel) == st.trial_config(ctl, kernel)
    assert st.trial_config(a, net) != st.trial_config(ctl, net)
    assert "net_steps" in st.trial_config(a, net)
    assert st.trial_config(a, kernel) != st.trial_config(st.config("quick", {"w_std": 1.0}), kernel)


def test_critical_batch_size_control_re_uses_the_noise_scale_run():
    """The fixed-lr control changes the sweep's rates only: the full-batch reference run
    (rate noise_lr) keeps its key, the sweep points do not, and noise settings do not
    reach the sweep."""
    st = get_study("critical-batch-size")
    a = st.config("quick")
    ctl = st.config("quick", st.control("fixed-lr").overrides)
    noise, sweep = {"kind": "noise"}, {"kind": "sweep", "batch": 32}
    assert st.trial_config(a, noise) == st.trial_config(ctl, noise)
    assert st.trial_config(a, sweep) != st.trial_config(ctl, sweep)
    other = st.config("quick", {"noise_lr": 0.2, "hessian_samples": 10})
    assert st.trial_config(a, sweep) == st.trial_config(other, sweep)
    assert st.trial_config(a, noise) != st.trial_config(other, noise)
