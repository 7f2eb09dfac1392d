"""The run planner: spec checks, counted FLOPs, the workflow end to end, verify, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from learnmech.cli import main
from learnmech.errors import UserError
from learnmech.plan import Plan, PlanSpec, PlanStopped, load_spec, make_plan, verify_plan
from learnmech.plan.study import count_params, step_flops

SMALL = "docs.examples.plan_mlp:small"


def _spec(**kw: object) -> PlanSpec:
    x = torch.randn(32, 4)
    y = torch.randint(0, 3, (32,))
    base = dict(
        model=lambda w: nn.Linear(4, 3),
        data=(x, y),
        eval_data=(x, y),
        widths=[8, 16, 32],
        lrs=[1e-3, 1e-2, 1e-1, 1.0, 10.0],
        steps=3,
        batch_size=4,
        seeds=2,
    )
    return PlanSpec(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("widths", [8, 16], "widths"),
        ("widths", [16, 8, 32], "widths"),
        ("widths", [8, 16, -1], "width"),
        ("lrs", [1e-3, 1e-2, 1e-1], "lrs"),
        ("lrs", [1e-3, 1e-2, float("nan"), 1.0, 2.0], "lrs"),
        ("steps", 0, "steps"),
        ("seeds", 1, "seeds"),
        ("optimizer", "lion", "optimizer"),
        ("scheme", "ntk", "scheme"),
        ("data", (torch.zeros(3, 4), torch.zeros(2)), "data"),
        ("eval_data", torch.zeros(3), "eval_data"),
        ("vectorize", "yes", "vectorize"),
        ("roles", {"cls_token": 1}, "roles"),
        ("roles", ["cls_token"], "roles"),
        ("base_width", 0, "base_width"),
        ("base_width", 16, "base_width must be at most the first proxy width 8"),
    ],
)
def test_a_bad_spec_is_refused_by_name(field: str, value: object, match: str) -> None:
    with pytest.raises(UserError, match=match):
        _spec(**{field: value}).check()


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("nocolon", "module:function"),
        ("no_such_module_xyz:spec", "cannot import"),
        ("tests.plan.specs:missing", "no function"),
        ("tests.plan.specs:not_a_spec", "not a learnmech.plan.PlanSpec"),
    ],
)
def test_a_bad_spec_reference_is_refused(ref: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        load_spec(ref)


def test_roles_and_base_width_reach_parametrize_and_the_hash_only_when_set() -> None:
    from learnmech.plan.study import build

    class Two(nn.Module):  # two hidden layers
        def __init__(self, width: int) -> None:
            super().__init__()
            self.a, self.h = nn.Linear(4, width), nn.Linear(width, width)
            self.b = nn.Linear(width, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.h(torch.relu(self.a(x)))))

    plain = _spec(model=Two)
    assert "base_width" not in plain.settings() and "roles" not in plain.settings()
    spec = _spec(model=Two, base_width=4, roles={"a.bias": "vector"})
    assert spec.check().settings()["base_width"] == 4
    _, opt = build(spec, 32, 1e-2, 0, "cpu")
    _, opt_plain = build(plain, 32, 1e-2, 0, "cpu")
    # μP + Adam: a hidden weight's rate is lr·base/width — base 4, not the first proxy's 8
    lr = {tuple(p.shape): g["lr"] for g in opt.param_groups for p in g["params"]}
    lr_plain = {tuple(p.shape): g["lr"] for g in opt_plain.param_groups for p in g["params"]}
    assert lr[(32, 32)] == pytest.approx(1e-2 * 4 / 32)
    assert lr_plain[(32, 32)] == pytest.approx(1e-2 * 8 / 32)


def test_a_plan_whose_proxies_fail_says_why_and_where(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "s.duckdb"
    with pytest.raises(
        PlanStopped,
        match=r"3 trial\(s\) failed, the first \(coord run, seed 0\): ValueError: Picky cannot",
    ):
        make_plan("tests.plan.specs:picky", target_width=512, store=store)
    run = json.loads(_cli(["runs", "list", "--store", str(store), "--json"], capsys))[0]["id"]
    shown = _cli(["runs", "show", run, "--store", str(store)], capsys)
    assert "errors: 3 trial(s) failed" in shown and "part=sweep width=256 seed 1" in shown
    errors = json.loads(_cli(["runs", "show", run, "--store", str(store), "--json"], capsys))
    assert len(errors["errors"]) == 3
    assert "Traceback" in errors["errors"][0]["error"]


def _cli(args: list[str], capsys) -> str:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    assert main(args) == 0, capsys.readouterr()
    return capsys.readouterr().out


def test_flops_are_counted_not_assumed() -> None:
    spec, _ = load_spec(SMALL)
    w, b = 16, spec.batch_size
    dims = [(64, w), (w, w), (w, 10)]
    fwd = [2 * b * i * o for i, o in dims]
    # backward: the weight gradient for every layer, the input gradient for all but the
    # first (the data need none): one matmul of the forward's size each
    expect = sum(fwd) + sum(fwd) + sum(fwd[1:])
    train, ev = step_flops(spec, w, "cpu")
    assert train == expect
    n_eval = spec.eval_data[0].shape[0]
    assert ev == sum(2 * n_eval * i * o for i, o in dims)
    assert count_params(spec, w) == sum(i * o + o for i, o in dims)


def test_the_workflow_plans_resumes_and_verifies(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    p = make_plan(SMALL, budget=3e9, store=store, out=tmp_path / "plan")
    assert (tmp_path / "plan" / "plan.json").exists()
    assert (tmp_path / "plan" / "plan.html").exists()
    assert (tmp_path / "plan" / "plan.png").exists()
    lo, hi = p.predicted_interval
    assert lo <= p.predicted_loss <= hi
    assert p.lr_interval[0] <= p.lr <= p.lr_interval[1]
    assert p.width % 1 == 0 and p.params == count_params(load_spec(SMALL)[0], p.width)
    assert p.steps * p.batch_size == p.tokens
    # C = k·N·D with the counted k: the plan spends its budget (to one step's rounding)
    spent = p.flops_per_param_token * p.params * p.tokens
    assert spent == pytest.approx(3e9, rel=p.batch_size / p.tokens + 1e-9)
    assert p.proxy_flops > 0 and p.checks["coord_check"]["passed"] is True
    # resuming re-measures nothing and gives the same plan
    again = make_plan(SMALL, budget=3e9, store=store, out=tmp_path / "plan")
    assert again.as_dict() | {"proxy_seconds": 0, "overhead_seconds": 0} == p.as_dict() | {
        "proxy_seconds": 0,
        "overhead_seconds": 0,
    }
    # verify from a CSV: inside the interval passes, far outside fails
    good = tmp_path / "good.csv"
    good.write_text("loss\n" + "\n".join(f"{(lo + hi) / 2 + d:.6f}" for d in (-1e-4, 0, 1e-4)))
    assert verify_plan(p, losses_csv=good)["verdict"] == "pass"
    bad = tmp_path / "bad.csv"
    bad.write_text("loss\n" + "\n".join(f"{hi * 3 + d:.6f}" for d in (-1e-4, 0, 1e-4)))
    res = verify_plan(Plan.load(tmp_path / "plan"), losses_csv=bad)
    assert res["verdict"] == "fail"
    assert (
        json.loads((tmp_path / "plan" / "plan.json").read_text())["verified"]["verdict"] == "fail"
    )


def test_a_failing_coord_check_stops_the_plan_with_its_diagnosis(tmp_path: Path) -> None:
    with pytest.raises(PlanStopped, match="coord check failed") as err:
        make_plan("tests.plan.specs:blown", target_width=1024, store=tmp_path / "s.duckdb")
    assert "grow" in str(err.value)


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = str(tmp_path / "s.duckdb")
    for args in (
        ["plan", SMALL, "--store", store],
        ["plan", SMALL, "--budget", "-1", "--store", store],
        ["plan", SMALL, "--width", "0", "--store", store],
        ["plan", "nocolon", "--width", "64", "--store", store],
        ["plan", "verify", "--store", store],
        ["plan", "verify", str(tmp_path / "nowhere"), "--store", store],
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("learnmech: error:") and "Traceback" not in err
    assert not (tmp_path / "s.duckdb").exists()


def test_cli_plans_and_verifies_from_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = str(tmp_path / "s.duckdb")
    out = tmp_path / "p"
    assert (
        main(["plan", SMALL, "--budget", "3e9", "--store", store, "--out", str(out), "--json"]) == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert plan["width"] >= 1 and Path(plan["path"]).exists()
    lo, hi = plan["predicted_interval"]
    csv = tmp_path / "l.csv"
    csv.write_text(f"loss\n{(lo + hi) / 2}\n{(lo + hi) / 2 + 1e-6}\n")
    assert main(["plan", "verify", str(out), "--csv", str(csv), "--store", store]) == 0
    assert "PASS" in capsys.readouterr().out
    csv.write_text("loss\nabc\n")
    assert main(["plan", "verify", str(out), "--csv", str(csv), "--store", store]) == 2
    assert np.isfinite(plan["flops_per_param_token"])


def test_a_huggingface_gpt2_family_is_planned(tmp_path: Path) -> None:
    """GPT-2 built from configs (fixed-std init, tied readout, ModelOutput): μP coord check,
    sweeps, noise scale (per-example gradients) and the preconditioned Hessian all run."""
    pytest.importorskip("transformers")
    p = make_plan("tests.plan.specs:hf_gpt2", budget=1e9, store=tmp_path / "s.duckdb")
    assert p.checks["coord_check"]["passed"] is True
    assert p.width % 2 == 0 and np.isfinite(p.predicted_loss)
    assert p.tokens == p.steps * p.batch_size * 8
    assert all(np.isfinite(p.checks["stability"]["sharpness_over_threshold"]))
    assert p.batch_size_noise > 0


@pytest.mark.parametrize("ref", [SMALL, "tests.plan.specs:hf_gpt2"])
def test_stacked_sweeps_equal_the_per_run_loop(ref: str) -> None:
    """A proxy width's sweep (every rate × seed) trained as one stacked ensemble gives the
    loop's losses: float32, so to within 100 ulps per step (|ΔL|/L ≤ 100·steps·ε₃₂), and
    the same runs diverge. The GPT-2 family has tied weights and returns ModelOutputs."""
    if "hf" in ref:
        pytest.importorskip("transformers")
    from dataclasses import replace

    from learnmech.plan.study import LOSS_CAP, sweep_runs

    spec = load_spec(ref)[0]
    w = spec.widths[0]

    def finals(s: PlanSpec) -> tuple[np.ndarray, float]:
        out = sweep_runs(s, w, [0, 1], "cpu")
        rows = [next(c for c in out[k] if c.observable == "final_loss").values for k in (0, 1)]
        engine = next(c for c in out[0] if c.observable == "stacked").values[0]
        return np.array(rows), float(engine)

    (a, stacked), (b, looped) = finals(spec), finals(replace(spec, vectorize=False))
    assert (stacked, looped) == (1.0, 0.0)
    assert np.array_equal(a >= LOSS_CAP, b >= LOSS_CAP)
    ok = a < LOSS_CAP
    assert ok.sum() >= 5
    bound = 100 * spec.steps * float(np.finfo(np.float32).eps)
    assert np.max(np.abs(a[ok] - b[ok]) / b[ok]) <= bound


def test_fixed_init_without_saying_so_stops_with_a_hint(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from dataclasses import replace

    from tests.plan import specs

    spec = replace(specs.hf_gpt2(), init="sp")
    specs.hf_gpt2_sp = lambda: spec  # type: ignore[attr-defined]
    with pytest.raises(PlanStopped, match="init='fixed'"):
        make_plan("tests.plan.specs:hf_gpt2_sp", budget=1e9, store=tmp_path / "s.duckdb")


def test_plan_json_is_strict_json_and_round_trips_non_finite_numbers(tmp_path: Path) -> None:
    """plan.json used to carry bare Infinity/NaN (not JSON: jq and JSON.parse reject it)."""
    import math

    from learnmech.plan.workflow import dumps

    def strict(text: str) -> object:
        def refuse(c: str) -> None:
            raise ValueError(f"non-standard JSON constant {c}")

        return json.loads(text, parse_constant=refuse)

    text = dumps({"a": math.inf, "b": [-math.inf, np.float64("nan")], "c": np.int64(3)})
    assert strict(text) == {"a": "inf", "b": ["-inf", "nan"], "c": 3}
    p = make_plan(SMALL, target_width=256, store=tmp_path / "s.duckdb")
    out = Path(p.path)
    data = strict(out.read_text())
    data["batch_size_noise"] = "inf"  # as a run near its minimum writes it
    out.write_text(json.dumps(data))
    assert math.isinf(Plan.load(out.parent).batch_size_noise)
