"""Every study at quick scale, one test each, so a failure names its study.

Studies on the v2 protocol have their own test module (quick verdict and negative
controls); the rest are checked here on the claims that carry their verdict.
"""

from __future__ import annotations

import pytest

from learnmech.lab.runner import run_study

LEGACY_CHECKS = {
    # study: claims that must be present and pass (the verdict must be "pass")
    "learning-curves": ["synthetic_max_error_over_tolerance", "digits_max_error_over_tolerance"],
    "deep-linear": ["aligned_max_error_vs_discrete_theory", "runs_learning_modes_in_order_of_s"],
    "conservation": ["drift_identity_gap_over_rounding_bound", "linear_gd_drift_exponent_error"],
    "lazy-rich": ["weight_change_exponent_error", "alignment_gain_rich_minus_lazy_z"],
    "scaling-laws": ["data_exponent_error", "model_exponent_error"],
    "edge-of-stability": ["gd_lr0.4_plateau_ratio_low", "gd_lr0.4_plateau_ratio_high"],
    "critical-batch-size": ["b_crit_outside_noise_scale_range"],
    "linear-scaling-rule": ["sgd_linear_small_k_excess_z", "sgd_linear_large_k_break_z"],
    "lr-transfer": [
        "mlp_mup_shift_log2",
        "mlp_sp_shift_log2",
        "gpt_mup_shift_log2",
        "gpt_transfer_gap_sp_minus_mup_z",
        "depth_depth-mup_shift_log2",
    ],
    "universality": ["init_nngp_exponent_error", "init_cross_seed_exponent_error"],
    "feature-ansatz": [
        "init0.1_learned_part_min_z_above_chance",
        "small_init_higher_nfa_correlation_z",
    ],
    "data-spectra": ["planted_exponent_error"],
}


@pytest.mark.parametrize("study", sorted(LEGACY_CHECKS))
def test_quick_scale(study, store_path):
    res = run_study(study, store=store_path, report=True)
    m = {x.name: x for x in res.metrics}
    assert res.verdict == "pass", [x.as_dict() for x in res.metrics if x.passed is False]
    for name in LEGACY_CHECKS[study]:
        assert m[name].passed is True, (study, name)
    assert res.report is not None and "data:image/png;base64" in res.report.read_text()
