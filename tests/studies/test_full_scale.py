"""Every study at full scale (``-m slow``): the claims that fail there are the recorded
findings, exactly. Recorded under protocol v2 on 2026-11-30 (2-core CPU unless noted);
``None`` would mark a study whose full scale has not been run under protocol v2 (none
does)."""

from __future__ import annotations

import pytest

from learnmech.lab.runner import run_study

FULL_SCALE_FINDINGS: dict[str, set[str] | None] = {
    # widths 64 … 4096, 32 seeds (first on an H200; rerun on the 2-core CPU with the init-NTK
    # prediction, 25 min): the per-network deviation decays as width^−0.47 ± 0.02 (passes;
    # quick scale's −0.42 is a small-width effect); the kernel change is not one power law
    # of width within its errors (χ²/dof 2.90 vs 2.21). The init-NTK prediction of the
    # deviation holds at 64–2048 (log ratios within ±0.04); at 4096 its bound 0.04425 misses
    # the 0.04419 tolerance by 1e-4 (value −0.005: power, 32 seeds). The kernel's motion
    # falls as w^−0.67, not as 1/w, and not as one power law (χ²/dof 3.13)
    "wide-nets": {
        "kernel_change_power_law_fit",
        "kernel_drift_deviation_exponent",
        "kernel_drift_deviation_power_law_fit",
        "deviation_from_init_ntk@w4096",
    },
    "data-spectra": set(),
    "conservation": set(),
    "deep-linear": set(),
    "feature-ansatz": set(),
    "lazy-rich": set(),
    # 16 seeds, widths 16–1024, reference 8192, α 0.1–100 (19 min): the deviation from the
    # mean-field limit falls as m^−0.62 … m^−0.75 (widths 16–32 above the CLT law; from 64
    # on ≈ m^−0.52); the regime map's claims pass
    "mean-field": {f"mf_exponent@alpha{a:g}" for a in (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)},
    # every k whose step stays below 2/λ (k ≤ 16) follows the rule; the breaks at
    # k = 32–125 lie past the stability edge
    "linear-scaling-rule": {"sgd_linear_large_k_break"},
    # the synthetic curve passes (quick scale's miss was power); digits still misses at
    # n = 256, ridgeless: 0.01321 ± 0.00008 vs 0.0125 predicted (bound 1.07 × tolerance).
    # The digits CNTK curve passes (worst cell 0.88 × tolerance; largest miss 4.5% at
    # n = 16; 256 s in all)
    "learning-curves": {"digits_learning_curve"},
    # the model slope passes (−1.564 ± 0.010 vs −1.562); the data slope (−2.577 ± 0.027 vs
    # −2.532) and both curves at their smallest sizes (n = 16: +35%, P = 32: +12%) miss;
    # the GPT arm never goes below the Bayes floor (its fitted E does: reported)
    "scaling-laws": {"data_exponent", "data_curve", "model_curve"},
    # at η = 1.2 the threshold is reached within a few dozen steps and the loss rises on
    # 5.6 ± 3.2% of those early steps; Adam at 1e-3: ratio 0.969 ± 0.015 over 4 seeds, its
    # bound (0.116) just outside the band (power). The central-flow claims pass at all four
    # GD rates (loss error 0.69–0.87 oscillation terms; quick scale's 1.10 is the onset).
    # RMSProp at 3e-4 (its arm run alone 2026-12-01, 4.5 min): the threshold claims pass
    # (the loss rises on 36% of the steps at the edge); the central flow holds the
    # preconditioned sharpness (0.068) and ends 8× nearer than the stable flow (stopped
    # past 100·2/η near step 1,040), but the time-averaged loss misses by 1.75 ± 0.10 Δ
    "edge-of-stability": {
        "gd_lr1.2_loss_increase_fraction_before",
        "adam_lr0.001_plateau_ratio",
        "rmsprop_lr0.0003_flow_loss",
    },
    # B_crit = 118 ± 5 sits inside the B_noise bracket (66 … 34,000) but 160× below the
    # step-weighted B̄_noise; S(B) is not a hyperbola within its errors (χ²/dof 46.8)
    "critical-batch-size": {"hyperbola_fit", "b_crit_vs_b_noise"},
    # 3 seeds, widths to 512 (MLP) and 64 (GPT), depths 2–32: every claim passes; without
    # depth scaling the optimum drifts −1.96 ± 0.29 grid steps (quick scale: not resolved)
    "lr-transfer": set(),
    # init exponents −0.987 ± 0.016 (NNGP) and −0.974 ± 0.012 (cross-seed): the quick
    # scale's NNGP failure was one of power
    "universality": set(),
    # with cross-entropy the spread of the class-mean cosines does not shrink in 600 epochs
    # (log ratio −0.012 ± 0.009) though their mean is already −0.109 (simplex −0.111)
    "neural-collapse": {"ce_nc2_equiangular_decrease"},
    # proxies 8–64, target 512, 4 seeds (17 min): under μP η* still drifts over the proxies
    # (width^−0.69: 2^−5.1 … 2^−6.9), the target's best is 2^−8; the planned cell's
    # learnable loss is 21% above the best (bound 0.234 vs margin 0.20); the interval
    # covers it and the proxies cost 1.6% of the grid search
    "proxy-plan": {"planned_minus_best"},
    # 8 seeds, 40,000 steps, widths 8–64 (4.3 min): L ∝ D^−0.544 ± 0.003 (predicted −0.5),
    # onsets ∝ p_k^−0.93, ρ = 0.94, L ∝ N^−0.80 ± 0.03 (predicted −1; the widest net is
    # still learning at 30,000 steps). One power law does not fit L(D) within its errors
    # (χ²/dof 4.4): with 14 of 64 subtasks learned the finite tail steepens the curve
    "quanta": {"data_power_law"},
    # init 1e-5, n = 32,768, 16 seeds (5 min): the linear net's escapes are on the map
    # (0.12 e-fold); ReLU passes both theories (population dynamics: modes 1–2 within
    # 0.01 e-fold); tanh's modes 1–2 follow the population dynamics exactly but mode 3
    # escapes 4.6 ± 0.4 e-folds early, which neither theory predicts
    "saddle-to-saddle": {"tanh_step_times", "tanh_reduced_step_times"},
    # 16 seeds, λ = 0.25–2, α = 1.5–3 (3 min): Gromov's solution passes; t_gen ∝ λ^−1.23 ±
    # 0.05 (ηλt rises 2.6 → 5.2 as λ falls); the init delay per ln α is 3.2, 4.3 and 15
    # at α = 1.5, 2, 3 (the lazy fit slows at large init)
    "grokking": {"delay_exponent", "init_delay"},
    # 12 seeds at σ = 0.003 and 0.01, 30,000 steps: every seed in order; the mean of
    # ln(measured/predicted) is within 2% in every cell (0.5% at σ = 0.003), the worst
    # cell's bound 0.14 of its band; onset ∝ |x̂|^−2.88 ± 0.04
    "fourier-order": set(),
    # 8 seeds, widths 256–16,384, 11 learning rates (17 s): every run in its predicted
    # phase; peak loss ∝ n^0.97–1.005 (± 0.01–0.02); the catapult ends at η·λ = 0.2–1.3
    "catapult": set(),
}


@pytest.mark.slow
@pytest.mark.parametrize("study", sorted(FULL_SCALE_FINDINGS))
def test_full_scale_findings(study, store_path):
    findings = FULL_SCALE_FINDINGS[study]
    if findings is None:
        pytest.skip(f"{study}: full scale not yet recorded under protocol v2")
    res = run_study(study, scale="full", store=store_path, report=True)
    failed = {m.name for m in res.metrics if m.passed is False}
    assert failed == findings, [m.as_dict() for m in res.metrics if m.passed is False]
    assert res.verdict == ("fail" if findings else "pass")


@pytest.mark.slow
def test_full_scale_proxy_plan_mlp_family(store_path):
    """Recorded 2026-11-30 (58 s): μP optima stay put over proxies 8–64 (exponent
    0.07 ± 0.16); the plan's excess over the width-512 grid's best is 4.1% ± 3.7% of the
    learnable loss (bound 0.127 vs margin 0.05) and the planned loss sits inside the law's
    interval at +0.54 ± 0.21 half-widths (bound 1.03 vs 1): both fail narrowly."""
    res = run_study(
        "proxy-plan", scale="full", store=store_path, overrides={"family": "mlp"}, report=False
    )
    failed = {m.name for m in res.metrics if m.passed is False}
    assert failed == {"planned_minus_best", "predicted_interval_covers_planned"}


@pytest.mark.slow
def test_full_scale_wide_nets_cnn_arm(store_path):
    """Recorded 2026-11-30 (21 min, 2-core CPU): CNNs of 32–1,024 channels, 32 seeds, 400
    steps. Every exponent passes (init-NTK error −0.514 ± 0.031, per-network deviation
    −0.517 ± 0.027, kernel change −1.02 ± 0.03) and every power-law fit holds (quick
    scale's fit failures were small-width effects). Finding: the ensemble-mean test loss
    deviates from the CNTK prediction by up to 4.9% ± 1.0% at 1,024 channels, its bound
    (6.65%) just outside the 2·√(1/1024) = 6.25% tolerance."""
    res = run_study(
        "wide-nets", scale="full", store=store_path, overrides={"arch": "cnn"}, report=False
    )
    failed = {m.name for m in res.metrics if m.passed is False}
    assert failed == {"test_loss_curve_max_rel_error@w1024"}, failed
