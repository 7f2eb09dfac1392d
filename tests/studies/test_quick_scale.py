"""Every study at quick scale, one test each, so a failure names its study.

For each: the quick verdict with its documented findings (the exact set of claims that
fail), every negative control failing on the claims it targets, and the claim set's hash
unchanged when every measured value is perturbed (no tolerance is computed from the data
it judges).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable

import numpy as np
import pytest

from learnmech.claims import claims_hash
from learnmech.lab.runner import RunResult, render_report, run_study
from learnmech.lab.store import Store
from learnmech.records import Curve
from learnmech.studies import _registry, get_study

from .test_protocol import LEGACY


def _wide_nets(res: RunResult, m: dict) -> None:
    # the ensemble mean and every step of the loss curve match the analytic prediction
    assert m["mean_output_rel_bias_sq@w1024"].passed
    assert m["test_loss_curve_max_rel_error@w1024"].passed
    # finding: one network's deviation from its linearization decays more slowly than
    # width^{-1/2} over 64–1024 (quick: −0.42 ± 0.02) ...
    assert m["output_deviation_exponent"].value > -0.5
    # ... and its init NTK's fluctuation, propagated before training, predicts it at every
    # width, the bend included; what it leaves (the kernel's motion) falls as w^−0.68,
    # like the kernel change itself, not at the O(1/w) rate
    for w in (64, 128, 256, 512, 1024):
        assert m[f"deviation_from_init_ntk@w{w}"].passed, w
    assert -0.8 < m["kernel_drift_deviation_exponent"].value < -0.55
    assert (res.report.parent / "summary.png").exists()


def _neural_collapse(res: RunResult, m: dict) -> None:
    assert m["mse_final_mean_cosine"].kind == "within"  # the simplex angle is scored
    assert m["mse_nc1_decrease"].bound < 0


def _feature_ansatz(res: RunResult, m: dict) -> None:
    assert m["init0.1_learned_part_correlation"].bound > 0.5


#: v2 studies: (claims that fail at quick scale — documented findings, extra checks)
V2_QUICK: dict[str, tuple[set[str], Callable[[RunResult, dict], None]]] = {
    "wide-nets": ({"output_deviation_exponent", "kernel_drift_deviation_exponent"}, _wide_nets),
    "neural-collapse": (set(), _neural_collapse),
    "feature-ansatz": (set(), _feature_ansatz),
    "data-spectra": (set(), lambda res, m: m["planted_exponent"].kind == "within"),
    # finding: every k whose step kη₀ stays below 2/λ (k ≤ 8) follows the rule; the only
    # break (k = 125) is where the step crosses 2/λ, so it cannot be credited to B_crit
    "linear-scaling-rule": ({"sgd_linear_large_k_break"}, lambda res, m: None),
    "conservation": (set(), lambda res, m: m["linear_gd_drift_exponent"].kind == "within"),
    "lazy-rich": (set(), lambda res, m: m["weight_change_exponent"].kind == "slope"),
    # finding: the deviation from the mean-field limit falls faster than m^−½ over widths
    # 16–256 (−0.73 … −0.92): widths 16 and 32 sit 1.2–2.4× above the CLT law that holds
    # from 64 on; the regime map's claims all pass
    "mean-field": (
        {f"mf_exponent@alpha{a:g}" for a in (0.1, 1.0, 10.0, 100.0)},
        lambda res, m: (
            m["lazy_fails@alpha0.1"].passed
            and m["lazy_holds@alpha100"].passed
            and all(m[f"mean_field_holds@alpha{a:g}"].passed for a in (0.1, 1.0, 10.0, 100.0))
        ),
    ),
    # finding (power): the init NNGP exponent is −0.980 ± 0.028 at quick scale, its 95%
    # bound 0.069 just outside the a-priori 4/w_min = 0.0625
    "universality": ({"init_nngp_exponent"}, lambda res, m: m["init_cross_seed_exponent"].passed),
    # findings: S(B) is not a hyperbola within its errors (χ²/dof ≈ 30); B_noise explodes
    # near the target loss, so its maximum is too uncertain to bound B_crit from above,
    # and the step-weighted B_noise overshoots B_crit ≈ 90 by a factor of ≈ 70
    "critical-batch-size": (
        {"hyperbola_fit", "b_crit_below_max_b_noise", "b_crit_vs_b_noise"},
        lambda res, m: m["b_crit_above_min_b_noise"].passed,
    ),
    # finding: GD's time-averaged loss at the edge sits above the central flow's L̄ by
    # ≈ 1.1 of its oscillation term Δ (the gradient flow misses by ≈ 2.8 Δ), RMSProp's by
    # ≈ 2.9 Δ (its stable flow: ≈ 21 Δ; 1.4% of the loss); the flows' sharpness and
    # parameters do follow the runs
    "edge-of-stability": (
        {"gd_lr0.4_flow_loss", "rmsprop_lr0.0003_flow_loss"},
        lambda res, m: (
            all(
                m[f"{o}_flow_sharpness"].passed
                and m[f"{o}_flow_closer"].passed
                and m[f"{o}_plateau_ratio"].kind == "within"
                and m[f"{o}_flow_loss_alternative"].value > 2 * m[f"{o}_flow_loss"].value
                for o in ("gd_lr0.4", "rmsprop_lr0.0003")
            )
            # RMSProp's stable flow passes stop_ratio = 10·2/η before step 800 and is stopped
            and m["rmsprop_lr0.0003_stable_flow_stopped"].value < 800
        ),
    ),
    "deep-linear": (
        set(),
        # the discrete map is exact; gradient flow differs by the O(ηs) step correction
        lambda res, m: (
            m["aligned_max_error_vs_discrete_theory"].value < 1e-11
            and m["aligned_max_error_vs_gradient_flow"].value > 1e-3
        ),
    ),
    # findings: eigenlearning under-predicts the synthetic Gaussian-design test MSE by ≈ 5%
    # at n = 8–128 (n = 128: 0.409 ± 0.008 vs 0.389), and the digits NTK curve by 6.6% at
    # n = 256 (tolerance 1/√n = 6.25%); both were hidden by the old 3-SE tolerance term.
    # The digits CNTK (3×3 ReLU convolution, flatten readout) misses by up to 4.9% (n =
    # 256): inside its 6.25% tolerance as a point, not by its 95% bound
    "learning-curves": (
        {"synthetic_learning_curve", "digits_learning_curve", "digits-cntk_learning_curve"},
        lambda res, m: m["net_vs_kernel_width_exponent@n64"].passed,
    ),
    # finding (power): without depth scaling the optimum drifts by −1.8 ± 0.4 grid steps
    # over depths 2 → 8, but with 3 seeds (df 2) its 95% bound does not clear −1
    "lr-transfer": (
        {"depth_none_shift_log2"},
        # the plain schemes' fits include the base size, whose sweep the scaled one shares
        lambda res, m: (
            m["gpt_mup_shift_log2"].kind == "equivalence"
            and all(
                m[f"{a}_shift_log2"].kind == "below" for a in ("mlp_sp", "gpt_sp", "depth_none")
            )
            and "over the 4× width range" in m["gpt_sp_shift_log2"].description
        ),
    ),
    # findings (16 seeds): the model sweep's slope is −1.632 ± 0.018 against the
    # random-projection prediction's −1.600 (tolerance 0.030), and its level misses by up
    # to ≈ 18%; the data sweep's slope (−2.588 ± 0.031 vs −2.570) and its level at large n
    # are not resolved to their tolerances
    "scaling-laws": (
        {"data_exponent", "data_curve", "model_exponent", "model_curve"},
        lambda res, m: m["grid_extrapolation_mean_abs_rel_error"].kind == "reported",
    ),
    # quanta (α = 1): L ∝ D^−0.50, onsets ∝ p_k^−0.91, all five seeds in frequency order
    "quanta": (set(), lambda res, m: m["data_exponent"].passed and m["quanta_learned"].value >= 5),
    # findings: the linear escape times hold for the linear net (worst mode 0.27 e-fold)
    # but not for tanh (later modes ≈ 1 e-fold late) or ReLU (≈ 0.8 e-fold early); the
    # population dynamics in the planted subspace account for both (reduced_step_times)
    "saddle-to-saddle": (
        {"tanh_step_times", "relu_step_times"},
        lambda res, m: (
            all(
                m[f"{a}_{c}"].passed
                for a in ("linear", "tanh", "relu")
                for c in ("order", "rank_one_steps", "staircase")
            )
            and m["linear_step_times"].value < 0.5
        ),
    ),
    # findings: t_gen ∝ λ^−1.10 ± 0.10 (bound 0.29 just outside ±0.25: power, 8 seeds);
    # doubling the init delays generalization by ≈ 4 ln α/(ηλ), not the predicted 3
    "grokking": (
        {"delay_exponent", "init_delay"},
        lambda res, m: m["concentration"].passed and m["phase"].passed and m["generalizes"].passed,
    ),
    # AGF's dormant-flow onsets within a fraction of their ±ln 1.25 band; onsets ∝ |x̂|^−2.9
    "fourier-order": (
        set(),
        lambda res, m: m["onset_times"].value < 0.5 and m["low_frequency_first"].value < 0.5,
    ),
    # every run in its predicted phase; catapult runs end below 2/η; peak loss ∝ n^~1.1
    "catapult": (
        set(),
        lambda res, m: m["peak_loss_exponent"].passed and m["lazy_kernel_drift"].value < 0.01,
    ),
    # finding: μP proxies of width 8–32 put η* at 2^-4.9 while the width-256 target's best
    # rate is 2^-7 (batch 16): the planned run's learnable loss is 35% above the grid's
    # best (95% bound 0.43 vs the 0.20 margin). The predicted interval still covers it and
    # the proxies cost 4% of the grid search
    "proxy-plan": (
        {"planned_minus_best"},
        lambda res, m: (
            m["predicted_interval_covers_planned"].passed
            and m["proxy_compute_fraction"].passed
            and m["proxy_compute_fraction"].value < 0.05
        ),
    ),
}

#: claims the quick scale cannot decide: their confidence bound lies within one standard
#: error of the tolerance, so the verdict flips with the float32 trajectory of the CPU.
#: They may pass or fail; the test asserts that they are at that limit
UNDECIDED: dict[str, set[str]] = {
    # finding (power): RMSProp's loss rises on only 3.9 ± 1.4% of the steps at its edge
    # (GD's: 38%); with 3 seeds the bound (−0.001) sits on 0
    "edge-of-stability": {"rmsprop_lr0.0003_loss_increase_fraction_after"},
}

#: per control, extra checks that it fails for the right reason
CONTROL_CHECKS: dict[tuple[str, str], Callable[[dict], None]] = {
    # a terminal phase exists, but fixed features cannot move
    ("neural-collapse", "frozen-features"): lambda m: (
        m["mse_seeds_without_tpt"].passed and m["mse_nc1_decrease"].value == 0.0
    ),
    # the ansatz itself (a statement about the net's own AGOP) survives shuffled labels
    ("feature-ansatz", "shuffled-labels"): lambda m: m["init0.1_learned_part_correlation"].passed,
    # SP's optimum falls with width over the proxies, and the plan misses by far more
    # (the control runs 2 seeds: its point estimate, not a wide interval, must miss)
    ("proxy-plan", "sp"): lambda m: (
        m["proxy_lr_exponent"].value < -0.5 and m["planned_minus_best"].value > 1.0
    ),
    # the data's α = 2: the loss falls as D^−2/3 (quick: −0.64), not the predicted D^−1/2
    ("quanta", "steeper-zipf"): lambda m: m["data_exponent"].value < -0.6,
    # uniform frequencies: the loss curve bends (χ²/dof ≫ 1); subtasks come in no order
    ("quanta", "uniform"): lambda m: m["frequency_order"].value < 0.5,
    # without weight decay: fits, never generalizes, no single-frequency neurons
    ("grokking", "no-weight-decay"): lambda m: m["fits"].passed and m["generalizes"].value == 8,
    # σ = 0.1: the frequencies mostly still come in order (5 of 6 seeds), but 2–4× early
    # and spread beyond |x̂|^−3
    ("fourier-order", "large-init"): lambda m: (
        m["order"].value <= 1
        and m["onset_times"].value > 2
        and m["magnitude_exponent"].value < -3.5
    ),
    # the gradient flow sharpens far past 2/η and misses GD's loss by more than the
    # central flow does (2.8 Δ against 1.1 Δ)
    ("edge-of-stability", "gradient-flow"): lambda m: all(
        m[f"{o}_flow_sharpness"].value > 0.3 and m[f"{o}_flow_loss"].value > 2
        for o in ("gd_lr0.4", "rmsprop_lr0.0003")
    ),
    # measured against the kernel limit the rich networks stop converging with width
    ("mean-field", "kernel-limit"): lambda m: m["mf_exponent@alpha0.1"].value > -0.1,
    # η from half the NTK doubles every η·λ₀: a third of the runs change phase
    ("catapult", "readout-kernel"): lambda m: m["phases"].value >= 20,
    # no saddle: the modes start near their targets and the steps overlap — but the
    # population dynamics, not a small-init theory, still time the rise
    ("saddle-to-saddle", "large-init"): lambda m: (
        m["linear_staircase"].value < 0.5 and m["linear_reduced_step_times"].passed
    ),
    # the sample, not the theory, fails: the linear net (exact on whitened data) is not run
    ("saddle-to-saddle", "few-samples"): lambda m: m["relu_reduced_step_times"].value > 3,
}


def _miss(x) -> float:
    """A two-sided claim's point miss |value − expected|."""
    return abs(x.value - x.expected)


def _apart(ctl, main) -> bool:
    """The control misses by more than the main run, beyond both 95% margins (q·SE)."""
    return _miss(ctl) - _miss(main) > (ctl.bound - _miss(ctl)) + (main.bound - _miss(main))


#: controls whose targeted claims fail in the main run as well (findings): "the control
#: fails" alone shows nothing there, so each is checked for what sets it apart from the
#: main run, (control metrics, main metrics) -> bool
VS_MAIN: dict[tuple[str, str], Callable[[dict, dict], bool]] = {
    # main fails on its bound alone (power), its point estimate inside the tolerance;
    # the control's point estimate is outside
    ("universality", "wrong-limit"): lambda c, m: (
        _miss(m["init_nngp_exponent"])
        < m["init_nngp_exponent"].tolerance
        < _miss(c["init_nngp_exponent"])
    ),
    ("scaling-laws", "finite-features"): lambda c, m: (
        _miss(m["data_exponent"]) < m["data_exponent"].tolerance < _miss(c["data_exponent"])
        and _apart(c["data_exponent"], m["data_exponent"])
    ),
    # main: B_crit ≈ B̄_noise/70; one fixed small rate puts B_crit much further below
    ("critical-batch-size", "fixed-lr"): lambda c, m: _apart(
        c["b_crit_vs_b_noise"], m["b_crit_vs_b_noise"]
    ),
    # the worst cell's miss (q·SE included) exceeds the main run's by over a tolerance
    ("learning-curves", "finite-population"): lambda c, m: (
        c["digits_learning_curve"].value > m["digits_learning_curve"].value + 1
    ),
}


def _perturbed(trials, rng):
    def shake(c: Curve) -> Curve:
        noise = 1 + 0.01 * rng.standard_normal(c.values.size)
        return Curve(c.observable, c.coord_name, c.coords, c.values * noise, c.series)

    return [dataclasses.replace(t, curves=[shake(c) for c in t.curves]) for t in trials]


def test_every_v2_study_is_covered():
    assert set(V2_QUICK) == {n for n in _registry() if n not in LEGACY}


def test_a_control_whose_claims_all_fail_in_the_main_run_is_told_apart_from_it():
    """Where every claim a control targets is also a quick-scale finding of the main run,
    its failing shows nothing by itself: such a control needs a check against the main
    run (``VS_MAIN``) or on its own values (``CONTROL_CHECKS``)."""
    for study, (findings, _) in V2_QUICK.items():
        failing = findings | UNDECIDED.get(study, set())
        for c in get_study(study).controls:
            if all(fnmatch.filter(failing, p) for p in c.fails):
                assert (study, c.name) in VS_MAIN or (study, c.name) in CONTROL_CHECKS, (
                    study,
                    c.name,
                )


@pytest.mark.parametrize("study", sorted(V2_QUICK))
def test_v2_quick_scale_findings_and_controls(study, store_path):
    findings, check = V2_QUICK[study]
    # the report is rendered once, after the controls (it shows what each did)
    res = run_study(study, store=store_path, report=False)
    m = {x.name: x for x in res.metrics}
    failing = {x.name for x in res.metrics if x.passed is False}
    undecided = UNDECIDED.get(study, set())
    assert failing - undecided == findings, [m[n].as_dict() for n in failing ^ findings if n in m]
    for n in undecided:
        assert abs(m[n].bound - m[n].tolerance) <= m[n].stderr, m[n].as_dict()
    assert res.verdict == ("fail" if failing else "pass")
    assert res.device == "cpu" and res.claims_hash

    # tolerances are fixed before the run: perturbing every measured value changes the
    # values but not the claim set
    st = get_study(study)
    cfg = st.config("quick")
    with Store(store_path) as s:
        trials = s.trials(res.run_id)
    shaken = st.evaluate(cfg, st.predict(cfg), _perturbed(trials, np.random.default_rng(0)))
    assert claims_hash(shaken.metrics) == res.claims_hash
    assert [x.value for x in shaken.metrics] != [x.value for x in res.metrics]

    for c in st.controls:
        ctl = run_study(study, store=store_path, report=False, control=c.name)
        assert ctl.control_ok, (c.name, ctl.control_failed, ctl.control_survived)
        cm = {x.name: x for x in ctl.metrics}
        if (study, c.name) in CONTROL_CHECKS:
            assert CONTROL_CHECKS[study, c.name](cm)
        if (study, c.name) in VS_MAIN:
            assert VS_MAIN[study, c.name](cm, m), (
                c.name,
                [cm[n].as_dict() for n in c.fails if n in cm],
            )

    # the report shows what each control did
    with Store(store_path) as s:
        res.report = render_report(s, res.run_id)
    page = res.report.read_text()
    assert "Can this test fail?" in page and "did NOT fail" not in page
    assert page.count("failed as it must") == len(st.controls)
    assert check(res, m) is not False, study


@pytest.mark.slow  # an extra arm (24 s): the study's own quick scale runs by default
def test_proxy_plan_second_family_residual_mlp(store_path):
    """proxy-plan on its second family (a residual MLP regressing a random tanh teacher,
    μP proxies of width 8–32, target 256). Findings at quick scale (3 seeds): the planned
    cell's excess over the grid's best, 2.8% ± 3.9% of the learnable loss, does not clear
    its 5% margin (power: the paired difference's seed spread is ~4× the pilot's best-cell
    spread the margin came from); and the law fitted on the proxies' checkpoints predicts
    a higher loss than the target reaches (−4.1 ± 2.4 interval half-widths)."""
    res = run_study("proxy-plan", store=store_path, overrides={"family": "mlp"}, report=False)
    m = {x.name: x for x in res.metrics}
    failing = {x.name for x in res.metrics if x.passed is False}
    assert failing == {"planned_minus_best", "predicted_interval_covers_planned"}, failing
    assert abs(m["planned_minus_best"].value) < 0.05  # the point estimate is inside
    assert m["predicted_interval_covers_planned"].value < -1  # the law over-predicts
    assert m["proxy_compute_fraction"].passed
    ctl = run_study(
        "proxy-plan", store=store_path, overrides={"family": "mlp"}, report=False, control="sp"
    )
    assert ctl.control_ok, (ctl.control_failed, ctl.control_survived)


@pytest.mark.slow  # an extra arm (30 s): the study's own quick scale runs by default
def test_wide_nets_cnn_arm(store_path):
    """wide-nets on 3×3-conv + global-average-pooling networks (8×8 digits images, the
    analytic CNTK from learnmech.theory.stax; widths are channels 16–256, 8 seeds).
    The ensemble-mean outputs and every step of the test-loss curve match the CNTK
    prediction within 2·√(L/w). Findings at quick scale: the per-network deviation and
    the kernel change do not follow one power law of width over 16–256 (the smallest
    widths bend the curves: reduced χ² ≈ 12.7 and 7.0), and the init-NTK error's
    exponent, −0.445 ± 0.04, misses the ±0.125 band around −1/2 by its 95% bound (0.133;
    power: 8 seeds × 8 draws). The init-NTK prediction of each network's deviation is not
    resolved at any width: the deviations are heavy-tailed across 8 seeds (per-seed RMS
    0.005–0.075 at 256 channels; the paired log ratio's SE is 0.1–0.2 against tolerances
    0.125–0.5), and at 16 channels the measured deviation is 4.6× the predicted one (the
    kernel's motion dominates); that motion's share falls as channels^−0.94 but not as one
    power law (χ²). The catapult control fails its claims as for the MLP."""
    res = run_study("wide-nets", store=store_path, overrides={"arch": "cnn"}, report=True)
    m = {x.name: x for x in res.metrics}
    failing = {x.name for x in res.metrics if x.passed is False}
    assert failing == {
        "output_deviation_power_law_fit",
        "ntk_init_error_exponent",
        "kernel_change_power_law_fit",
        "kernel_drift_deviation_exponent",
        "kernel_drift_deviation_power_law_fit",
        *(f"deviation_from_init_ntk@w{w}" for w in (16, 32, 64, 128, 256)),
    }, failing
    assert m["mean_output_rel_bias_sq@w256"].passed
    assert m["test_loss_curve_max_rel_error@w256"].passed
    assert m["output_deviation_exponent"].passed and m["kernel_change_exponent"].passed
    assert -0.6 < m["ntk_init_error_exponent"].value < -0.4
    assert (res.report.parent / "summary.png").exists()
    ctl = run_study(
        "wide-nets", store=store_path, overrides={"arch": "cnn"}, report=False, control="catapult"
    )
    assert ctl.control_ok, (ctl.control_failed, ctl.control_survived)
