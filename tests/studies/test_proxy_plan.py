"""proxy-plan: the narrowest proxy's sweep is shared by μP and its SP control."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from learnmech.plan.study import sweep_runs
from learnmech.studies import get_study


def test_the_sp_control_re_uses_the_base_width_sweep_alone():
    st = get_study("proxy-plan")
    a = st.config("quick")
    ctl = st.config("quick", st.control("sp").overrides)
    base, wider = a.proxy_widths[0], a.proxy_widths[1]
    same = {"part": "sweep", "width": base}
    assert st.trial_config(a, same) == st.trial_config(ctl, same)
    assert "scheme" not in st.trial_config(a, same)
    for p in ({"part": "sweep", "width": wider}, {"part": "target", "batch": 16}):
        assert st.trial_config(a, p) != st.trial_config(ctl, p)


@pytest.mark.parametrize("family", ["gpt", "mlp"])
def test_at_the_base_width_mup_and_sp_sweeps_are_equal_to_the_last_bit(family):
    """What makes the sharing right: every μP multiplier is 1 at the base width. Off it
    the two must differ (else the check could not fail)."""
    st = get_study("proxy-plan")
    cfg = st.config("quick", {"family": family, "steps": 12, "lr_log2": [-9, -8, -7, -6, -5]})
    spec = st.spec(cfg)
    for width, same in ((cfg.proxy_widths[0], True), (cfg.proxy_widths[1], False)):
        got = [
            sweep_runs(replace(spec, scheme=scheme), width, [0, 1], "cpu")
            for scheme in ("mup", "sp")
        ]
        for seed in (0, 1):
            a, b = ({c.observable + c.series: c.values for c in g[seed]} for g in got)
            equal = all(np.array_equal(a[k], b[k]) for k in a if k.startswith("eval_loss"))
            assert equal == same, (family, width, seed)
