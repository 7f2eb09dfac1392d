"""The learnmech command end to end, and its bad-input contract (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from learnmech.cli import main

SMALL = [
    "--set",
    "widths=16,32",
    "--set",
    "steps=5",
    "--set",
    "n_train=8",
    "--set",
    "n_test=6",
    "--set",
    "kernel_points=4",
    "--set",
    "kernel_seeds=1",
    "--seeds",
    "2",
]


def test_studies_lists_catalog(capsys):
    assert main(["studies"]) == 0
    assert "wide-nets" in capsys.readouterr().out


def test_run_json_runs_and_export(tmp_path, capsys):
    store = tmp_path / "runs" / "s.duckdb"
    code = main(["run", "wide-nets", *SMALL, "--store", str(store), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == (1 if out["verdict"] == "fail" else 0)  # exit 1: ran, verdict fail
    assert set(out) == {"study", "run_id", "verdict", "metrics", "report", "claims_hash", "device"}
    assert out["device"] == "cpu"  # the device the trials actually ran on
    claim = out["metrics"]["failed_or_diverged_trials"]
    assert claim["kind"] == "exact" and claim["passed"] is True and claim["bound"] == 0
    assert out["study"] == "wide-nets" and out["verdict"] in ("pass", "fail")
    assert (tmp_path / "runs" / out["run_id"] / "report.html").exists()
    run_id = out["run_id"]
    assert main(["runs", "list", "--store", str(store)]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["runs", "show", run_id[:14], "--store", str(store), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == run_id and shown["provenance"]["torch"]
    assert (
        main(
            [
                "runs",
                "export",
                run_id,
                "--format",
                "csv",
                "--out",
                str(tmp_path / "x"),
                "--store",
                str(store),
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "x").glob("*.csv"))) == 3
    capsys.readouterr()
    assert main(["report", run_id, "--store", str(store)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")


def _learnmech(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """The installed command in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "learnmech", *args], capture_output=True, text=True, timeout=timeout
    )


def test_lab_runs_studies_and_their_controls(tmp_path):
    """`learnmech lab` through the entry point, on one study with its negative control
    (data-spectra: the cheapest, ~4 s); each study's quick scale runs in its own test
    (tests/studies)."""
    store = tmp_path / "runs" / "learnmech.duckdb"
    res = _learnmech(
        "lab",
        "--study",
        "data-spectra",
        "--controls",
        "--json",
        "--store",
        str(store),
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    outs = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert [o.get("control", {}).get("name") for o in outs] == [None, "few-samples"]
    assert outs[0]["verdict"] == "pass" and outs[1]["control"]["as_expected"] is True
    html = (tmp_path / "runs" / outs[0]["run_id"] / "report.html").read_text()
    assert "data:image/png;base64" in html and "Can this test fail?" in html
    index = (tmp_path / "runs" / "index.html").read_text()
    assert outs[0]["run_id"] in index and "failed as it must" in index


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "nope"], "unknown study 'nope'"),
        (["run", "wide-nets", "--set", "widths=-3,8"], "widths"),
        (["run", "wide-nets", "--set", "depth=-1"], "from --set depth=-1"),
        (["run", "wide-nets", "--set", "nonsense=1"], "nonsense"),
        (["run", "wide-nets", "--set", "steps"], "key=value"),
        (["run", "wide-nets", "--set", "lr_scale=nan"], "lr_scale"),
        (["run", "wide-nets", "--set", "depth=２"], "non-ASCII digits"),
        (["run", "wide-nets", "--seeds", "0"], "--seeds"),
        (["run", "wide-nets", "--scale", "huge"], "huge"),
        (["run", "wide-nets", "--device", "tpu"], "--device"),
        (["run", "wide-nets", "--bogus"], "--bogus"),
        (["runs", "show", "nope"], "no store"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(argv, match, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_store_errors(tmp_path, capsys):
    d = tmp_path / "dir"
    d.mkdir()
    assert main(["run", "wide-nets", "--store", str(d)]) == 2
    assert "directory" in capsys.readouterr().err
    bad = tmp_path / "bad.duckdb"
    bad.write_text("garbage" * 50)
    assert main(["runs", "list", "--store", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot open store" in err and len(err.strip().splitlines()) == 1
    assert bad.read_text() == "garbage" * 50
    ok = tmp_path / "ok.duckdb"
    assert main(["run", "wide-nets", *SMALL, "--store", str(ok), "--quiet"]) in (0, 1)
    capsys.readouterr()
    assert main(["runs", "show", "missing-run", "--store", str(ok)]) == 2
    assert "no run 'missing-run'" in capsys.readouterr().err


def test_paths_are_printed_as_text_not_markup(tmp_path, capsys):
    """Issue #19 (7): '--store [/x]/s.duckdb' crashed the summary after the run finished;
    'a[bold]b' lost its brackets."""
    for odd in ("[/x]", "a[bold]b"):
        store = tmp_path / odd / "s.duckdb"
        assert main(["run", "wide-nets", *SMALL, "--store", str(store)]) in (0, 1)
        out = capsys.readouterr().out
        assert f"report: {tmp_path / odd}" in out.replace("\n", "")


def test_unwritable_paths_are_one_line_before_any_work(tmp_path, capsys):
    """Issue #19 (6): a store, export or plot path that cannot be written leaked a
    traceback (the run had started, the fit had finished)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["run", "data-spectra", "--store", str(blocker / "s.duckdb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("learnmech: error: --store") and "cannot write in" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    csv = tmp_path / "runs.csv"
    csv.write_text(
        "N,D,loss\n"
        + "\n".join(f"{n},{d},{2 + 1 / n + 1 / d}" for n in (10, 20, 40) for d in (100, 200, 400))
    )
    assert main(["fit", "scaling", str(csv), "--plot", str(blocker / "fit.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("learnmech: error: --plot: cannot write in") and len(err.splitlines()) == 1
    )


def test_exit_codes_tell_pass_fail_and_control_outcomes(tmp_path, capsys, monkeypatch):
    """0: every claim passed, or a control's targeted claims all failed (as they must);
    1: the verdict is fail; scripts can tell them apart."""
    monkeypatch.setenv("LEARNMECH_STUDIES", "toy=tests.lab.toy_study:Toy")
    store = str(tmp_path / "s.duckdb")
    assert main(["run", "toy", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "pass"
    assert main(["run", "toy", "--set", "fail_at=1", "--store", store, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "fail"
    code = main(["run", "data-spectra", "--control", "few-samples", "--store", store, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "fail" and out["control"]["as_expected"] is True and code == 0


def test_a_curve_claim_without_an_expected_value_prints(capsys):
    """`learnmech run scaling-laws` (and learning-curves) finished, then crashed printing a
    curve claim ('within', no single expected value)."""
    from learnmech.cli import _print_result
    from learnmech.lab.runner import RunResult
    from learnmech.records import Metric

    m = Metric("model_curve", 1.7, 1.0, "<=", 0.2, passed=False, kind="within", bound=2.1)
    _print_result(RunResult("scaling-laws", "r1", "fail", [m], None, 1, 0, []))
    out = capsys.readouterr().out
    assert "model_curve" in out and "|v| ≤ 1" in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "wide-nets", "--set", "widths=100000,64", "--seeds", "1"], "74.5 GiB"),
        (["run", "critical-batch-size", "--set", "batch_sizes=8,32,1000000000"], "752.5 GiB"),
    ],
)
def test_sizes_that_cannot_fit_are_refused_before_running(
    argv, match, tmp_path, capsys, monkeypatch
):
    """Issue #19 (1): widths=100000 tried a 40 GB allocation (then broke the report) and
    batch_sizes=1e9 ran. The study's lower bound on its largest trial is checked against
    the free memory (here pinned at 8 GiB so the test does not depend on the machine)."""
    import learnmech.studies.base as base

    monkeypatch.setattr(base, "available_memory", lambda device="cpu": 8 * 2**30)
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert match in err and "8.0 GiB is free" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    # the quick scale fits and is not refused
    assert base.check_memory(base_study("wide-nets"), base_study("wide-nets").config()) is None


def base_study(name: str):  # type: ignore[no-untyped-def]
    from learnmech.studies import get_study

    return get_study(name)


def test_json_stdout_carries_the_json_alone(tmp_path):
    """Issue #19 (8): log lines (Ray's when a node dies) corrupted --json stdout. Whatever
    is written to stdout during the work, at the Python or the file-descriptor level, goes
    to stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"LEARNMECH_STUDIES": "toy=tests.lab.toy_study:Toy", "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "learnmech", "run", "toy", "--json", "--set", "chatter=true"]
    res = subprocess.run(
        [*cmd, "--store", str(tmp_path / "s.duckdb")], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["verdict"] == "pass"
    assert "chatter from point 0" in res.stderr and "fd-level chatter from point 0" in res.stderr


def test_kernels_command_writes_the_library_values(tmp_path):
    """`learnmech kernels NET.json X.npy --out K.npz` equals stax.kernels, whole file."""
    import json as _json

    import numpy as np

    from learnmech.theory import stax

    spec = [
        {"type": "Conv", "out": 8, "kernel_size": [3, 3], "w_std": 1.3, "b_std": 0.1},
        {"type": "Activation", "fn": "relu"},
        {"type": "AvgPool", "window": [2, 2], "stride": [2, 2]},
        {"type": "GlobalAvgPool"},
        {"type": "Dense", "out": 1},
    ]
    (tmp_path / "net.json").write_text(_json.dumps(spec))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((3, 2, 6, 6))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "sub" / "k.npz"
    code = main(
        [
            "kernels",
            str(tmp_path / "net.json"),
            str(tmp_path / "x.npy"),
            "--x2",
            str(tmp_path / "y.npy"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    got = np.load(out)
    ref = stax.kernels(stax.from_spec(spec), x, y)
    np.testing.assert_allclose(got["ntk"], ref.ntk, rtol=1e-14)
    np.testing.assert_allclose(got["nngp"], ref.nngp, rtol=1e-14)
    assert sorted(p.name for p in out.parent.iterdir()) == ["k.npz"]  # no temporary left
