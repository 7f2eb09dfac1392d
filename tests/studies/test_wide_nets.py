"""wide-nets on the v2 protocol: the quick verdict, its finding, the catapult control."""

from __future__ import annotations

from learnmech.lab.runner import run_study


def test_quick_scale_claims_and_the_catapult_control(store_path):
    res = run_study("wide-nets", store=store_path, report=True)
    m = {x.name: x for x in res.metrics}
    # the analytic prediction holds for the ensemble mean and the loss curve …
    assert m["mean_output_rel_bias_sq@w1024"].passed
    assert m["test_loss_curve_max_rel_error@w1024"].passed
    assert m["ntk_init_error_exponent"].passed and m["kernel_change_exponent"].passed
    # … and the finding: one network's deviation from its linearization decays more
    # slowly than width^{-1/2} over 64–1024 (quick: −0.42 ± 0.02), so the verdict fails
    assert not m["output_deviation_exponent"].passed
    assert m["output_deviation_exponent"].value > -0.5
    assert res.verdict == "fail"
    assert (res.report.parent / "summary.png").exists()

    ctl = run_study("wide-nets", store=store_path, report=False, control="catapult")
    assert ctl.control_ok, (ctl.control_failed, ctl.control_survived)
