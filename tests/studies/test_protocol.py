"""The catalog contract, run over every registered study (plugins included)."""

from __future__ import annotations

import json

import pytest

from learnmech.errors import ConfigError
from learnmech.records import verdict_of
from learnmech.studies import _registry, get_study
from learnmech.studies.base import Study

#: built-in studies still on the v1 protocol (they override ``compare``): none remain
LEGACY: set[str] = set()

NAMES = list(_registry())
V2 = [n for n in NAMES if n not in LEGACY]


@pytest.fixture(params=NAMES)
def study(request) -> Study:
    return get_study(request.param)


@pytest.fixture(params=V2)
def v2_study(request) -> Study:
    return get_study(request.param)


def test_scales_validate_and_grids_are_json(study):
    for scale in study.scales:
        cfg = study.config(scale)
        grid = study.grid(cfg)
        assert grid, f"{study.name} {scale}: empty grid"
        for point in grid:
            json.dumps(study.trial_config(cfg, point))
            assert study.seeds_for(cfg, point)
            # a point measured as another keeps the grid's keys (the analysis reads both)
            assert set(study.measured_as(cfg, point)) == set(point)
        assert study.measured_points(cfg)
        assert study.predict is not None


def test_declared_fields_exist(study):
    fields = set(study.Config.model_fields)
    assert set(study.sweep_fields) <= fields
    assert set(study.analysis_fields) <= fields
    for role in ("sweep", "analysis"):
        assert set(study.Config.fields_with_role(role)) <= fields


def test_unknown_scale_is_a_config_error(study):
    with pytest.raises(ConfigError, match="scale"):
        study.config("huge")


def test_v2_studies_declare_controls_that_validate(v2_study):
    study = v2_study
    assert not study.legacy
    assert study.controls, f"{study.name} declares no negative control"
    for c in study.controls:
        assert c.fails and c.why
        study.config(c.scale, c.overrides)  # the control's configuration is valid


def test_v2_claims_run_without_trials(v2_study):
    """With no trials at all the claims still evaluate, and none passes by default."""
    study = v2_study
    cfg = study.config("quick")
    ev = study.evaluate(cfg, study.predict(cfg), [])
    assert verdict_of(ev.metrics) == "fail"
    scored = [m for m in ev.metrics if m.scored and m.name != "failed_or_diverged_trials"]
    assert not any(m.passed for m in scored), [m.name for m in scored if m.passed]


def test_legacy_list_is_exact():
    """Migrating a study to v2 must remove it from LEGACY (and nothing new is v1)."""
    builtin = [n for n in NAMES if n in LEGACY or get_study(n).__module__.startswith("learnmech")]
    assert {n for n in builtin if get_study(n).legacy} == LEGACY


def test_unknown_control_is_a_config_error():
    with pytest.raises(ConfigError, match=r"no control 'nope'.*frozen-features"):
        get_study("neural-collapse").control("nope")
