"""The config toolkit of the study protocol: checked list fields, sweeps and the grid."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from learnmech.studies.base import Analysis, Study, StudyConfig, Sweep, Values


class Cfg(StudyConfig):
    lrs: list[float] = Sweep([0.4, 0.1, 0.2], key="lr", n=2, gt=0, le=1)
    scales: list[float] = Sweep([0.1, 1.0], key="scale", order="desc", gt=0)
    arms: list[str] = Sweep(["b", "a"], key="arm", order=None, choices=("a", "b", "c"))
    extra: list[float] = Sweep([], key="x", n=0, ge=0)
    ns: list[int] = Values([64, 16], n=2, ge=2)
    margin: float = Analysis(0.1)


class Toy(Study):
    name = "toy-base"
    title = summary = pillar = "toy"
    Config = Cfg

    def measure(self, cfg: Any, point: dict[str, Any], seeds: list[int], device: str) -> dict:
        return {}


def test_defaults_are_checked_and_ordered() -> None:
    c = Cfg()
    assert c.lrs == [0.1, 0.2, 0.4]  # ascending
    assert c.scales == [1.0, 0.1]  # descending
    assert c.arms == ["b", "a"]  # given order
    assert c.ns == [16, 64]
    assert c.extra == []  # n=0: may be empty


def test_duplicates_collapse_when_ordered() -> None:
    assert Cfg(lrs=[0.5, 0.5, 0.25]).lrs == [0.25, 0.5]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"lrs": [0.1]}, "lrs needs at least 2 distinct values, each finite and > 0 and ≤ 1"),
        ({"lrs": [0.5, 0.5]}, "at least 2 distinct values"),
        ({"lrs": [0.1, 2.0]}, "≤ 1"),
        ({"lrs": [0.1, math.nan]}, "each finite"),
        ({"lrs": [0.1, math.inf]}, "each finite"),
        ({"lrs": [0.0, 0.1]}, "> 0"),
        ({"ns": [16]}, "ns needs at least 2 distinct values"),
        ({"arms": ["a", "z"]}, "arms must be a non-empty subset of a, b, c"),
        ({"arms": ["a", "a"]}, "arms must not repeat a value"),
        ({"arms": []}, "arms must be a non-empty subset"),
        ({"extra": [-1.0]}, "≥ 0"),
        ({"scales": []}, "scales needs at least one value"),
    ],
)
def test_bad_lists_name_the_field_and_the_rule(values: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        Cfg(**values)
    first = err.value.errors()[0]
    assert first["loc"] == (next(iter(values)),)
    assert needle in first["msg"]


def test_study_config_error_is_one_line_naming_the_field() -> None:
    from learnmech.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^invalid toy-base config: lrs: lrs needs"):
        Toy().config(overrides={"lrs": [-1.0, 0.5]})


def test_grid_is_the_product_of_sweeps_and_roles_drop_from_the_trial_hash() -> None:
    study, cfg = Toy(), Cfg(extra=[0.0])
    grid = study.grid(cfg)
    assert len(grid) == 3 * 2 * 2 * 1
    assert {tuple(sorted(p)) for p in grid} == {("arm", "lr", "scale", "x")}
    tc = study.trial_config(cfg, grid[0])
    assert "ns" in tc  # a checked list that is not an axis is hashed
    assert not {"lrs", "scales", "arms", "extra", "margin", "seeds"} & set(tc)


def test_bounds_must_be_known() -> None:
    with pytest.raises(TypeError, match="unknown list bound"):
        Values([1], gte=0)


def test_trials_table_keeps_the_seeds_seen_at_every_point() -> None:
    from learnmech.records import TrialResult, scalars
    from learnmech.studies.base import Trials

    def trial(w: int, seed: int, v: float, status: str = "ok") -> TrialResult:
        return TrialResult(
            f"k{w}{seed}", {"width": w}, seed, status, None, 0.0, scalars("width", w, gap=v)
        )

    ts = Trials(
        [
            trial(64, 0, 1.0),
            trial(64, 1, 2.0),
            trial(128, 1, 3.0),
            trial(128, 0, 4.0),
            trial(64, 2, 9.0),
            trial(128, 3, 5.0, status="error"),
        ]
    )
    ws, v = ts.table("width", "gap")
    assert ws.tolist() == [64.0, 128.0]
    assert v.tolist() == [[1.0, 4.0], [2.0, 3.0]]  # seeds 0 and 1; seed 2 lacks width 128
    assert ts.table("width", "absent")[1].size == 0


def test_trials_tables_is_table_for_every_observable() -> None:
    from learnmech.records import TrialResult, scalars
    from learnmech.studies.base import Trials

    def trial(w: int, seed: int, **obs: float) -> TrialResult:
        return TrialResult(
            f"k{w}{seed}", {"width": w}, seed, "ok", None, 0.0, scalars("width", w, **obs)
        )

    ts = Trials(
        [
            trial(64, 0, gap=1.0, knn=0.5),
            trial(128, 0, gap=2.0),  # knn recorded at one width only: a one-column table
            trial(64, 1, gap=3.0, loss=0.1),
            trial(128, 1, gap=4.0, loss=0.2),
        ]
    )
    assert ts.observables == ["gap", "knn", "loss"]
    tabs = ts.tables("width")
    assert set(tabs) == {"gap", "knn", "loss"}
    assert tabs["knn"][0].tolist() == [64.0] and tabs["knn"][1].tolist() == [[0.5]]
    for name, (ws, v) in tabs.items():
        ws2, v2 = ts.table("width", name)
        assert ws.tolist() == ws2.tolist() and v.tolist() == v2.tolist()
    assert tabs["loss"][1].tolist() == [[0.1, 0.2]]


def test_hashed_for_leaves_a_field_out_of_the_points_that_do_not_read_it() -> None:
    class OnlyA(Toy):
        hashed_for = {"ns": {"arm": "a"}}  # noqa: RUF012

    study, cfg = OnlyA(), Cfg()
    a, b = {"lr": 0.1, "scale": 1.0, "arm": "a"}, {"lr": 0.1, "scale": 1.0, "arm": "b"}
    assert study.trial_config(cfg, a)["ns"] == [16, 64]
    assert "ns" not in study.trial_config(cfg, b)
    assert study.trial_config(Cfg(ns=[8, 32]), b) == study.trial_config(cfg, b)
    assert "ns" in Toy().trial_config(cfg, b)  # the default hashes every field
