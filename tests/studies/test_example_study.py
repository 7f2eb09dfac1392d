"""The complete example study of docs/tutorial-writing-a-study.md, loaded as a plugin
through ``LEARNMECH_STUDIES``: it passes the catalog contract, its quick verdict passes,
and its negative control fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnmech.lab.runner import run_study
from learnmech.records import verdict_of
from learnmech.studies import get_study, list_studies

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("LEARNMECH_STUDIES", "ols-risk=ols_study:OLSRisk")


def test_example_is_a_short_complete_study():
    assert len((EXAMPLES / "ols_study.py").read_text().splitlines()) <= 130


def test_example_plugin_runs_passes_and_its_control_fails(plugin, store_path):
    assert "ols-risk" in [s.name for s in list_studies()]
    st = get_study("ols-risk")
    cfg = st.config("quick")
    assert [p["n"] for p in st.grid(cfg)] == [20, 40, 80, 160]
    assert verdict_of(st.evaluate(cfg, st.predict(cfg), []).metrics) == "fail"
    res = run_study("ols-risk", store=store_path, report=True)
    assert res.verdict == "pass", [m.as_dict() for m in res.metrics]
    ctl = run_study("ols-risk", store=store_path, control="nonlinear", report=False)
    assert ctl.control_ok and ctl.verdict == "fail"
