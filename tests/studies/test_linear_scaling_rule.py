"""linear-scaling-rule: one base run per optimizer, shared by its rules."""

from __future__ import annotations

import numpy as np

from learnmech.studies import get_study
from learnmech.studies.linear_scaling_rule import _curve


def test_at_k_1_the_rules_of_one_optimizer_are_the_same_run_and_at_k_2_they_differ():
    st = get_study("linear-scaling-rule")
    cfg = st.config("quick", {"epochs": 1.0, "points": 3})
    for a, b in (("sgd_linear", "sgd_none"), ("adam_linear", "adam_sqrt")):
        for k, same in ((1, True), (2, False)):
            la, lb = (_curve(cfg, r, k, 0, 1000 + k, "cpu")[1] for r in (a, b))
            assert np.array_equal(la, lb) == same, (a, b, k)


def test_the_base_runs_are_measured_once_and_the_control_re_uses_them():
    st = get_study("linear-scaling-rule")
    cfg = st.config("quick")
    ctl = st.config("quick", st.control("no-scaling").overrides)
    bases = [m for _, m in st.measured_points(cfg) if m["k"] == 1]
    assert bases == [{"rule": "sgd_linear", "k": 1}, {"rule": "adam_linear", "k": 1}]
    main = [p for p, _ in st.measured_points(cfg)]
    assert next(p for p, m in st.measured_points(ctl) if m["k"] == 1) in main
    assert st.measured_as(cfg, {"rule": "adam_sqrt", "k": 4}) == {"rule": "adam_sqrt", "k": 4}
