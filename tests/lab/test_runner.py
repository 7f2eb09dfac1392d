"""The study runtime: resume, failures, divergence, killed runs, executors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnmech.errors import ConfigError, UserError
from learnmech.lab.runner import run_study
from learnmech.lab.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    monkeypatch.setenv("LEARNMECH_STUDIES", "toy=tests.lab.toy_study:Toy")


def test_run_resume_and_reuse(store_path):
    r1 = run_study("toy", store=store_path, report=False)
    assert r1.verdict == "pass" and r1.trials_run == 8 and r1.trials_skipped == 0
    r2 = run_study("toy", store=store_path, report=False)
    assert r2.run_id == r1.run_id and r2.trials_run == 0 and r2.trials_skipped == 8
    r2b = run_study("toy", store=store_path, report=False, fresh=True)
    assert r2b.trials_run == 8
    # a different analysis-only field: new run, same measurements
    r3 = run_study("toy", store=store_path, overrides={"sleep": 0.001}, report=False)
    assert r3.run_id != r1.run_id and r3.trials_run == 0
    # a field that changes the measurement: everything re-runs
    r4 = run_study("toy", store=store_path, overrides={"slope": 3.0}, report=False)
    assert r4.trials_run == 8
    with Store(store_path, read_only=True) as st:
        n = st.con.execute("SELECT count(*) FROM trials").fetchone()[0]
        assert n == 16


def test_failures_and_divergence_are_recorded_and_retried(store_path):
    res = run_study("toy", store=store_path, overrides={"fail_at": 1, "nan_at": 2}, report=False)
    assert len(res.failed) == 2 and "boom at 1" in res.failed[0]
    with Store(store_path, read_only=True) as st:
        status = dict(
            st.con.execute("SELECT status, count(*) FROM trials GROUP BY status").fetchall()
        )
        assert status == {"ok": 4, "error": 2, "diverged": 2}
        err = st.con.execute("SELECT error FROM trials WHERE status='error'").fetchone()[0]
        assert "RuntimeError: boom at 1" in err
    again = run_study("toy", store=store_path, overrides={"fail_at": 1, "nan_at": 2}, report=False)
    assert again.trials_run == 2  # only the errors are retried; diverged is a result


def test_a_raised_divergence_is_a_result_not_an_error(store_path):
    """Issue #19 (3): FloatingPointError from a diverging run was stored as an error and
    re-run on every resume."""
    res = run_study("toy", store=store_path, overrides={"diverge_at": 3}, report=False)
    with Store(store_path, read_only=True) as st:
        rows = st.con.execute("SELECT status, error FROM trials WHERE status <> 'ok'").fetchall()
    assert [r[0] for r in rows] == ["diverged", "diverged"]
    assert "FloatingPointError: training diverged at 3" in rows[0][1]
    again = run_study("toy", store=store_path, overrides={"diverge_at": 3}, report=False)
    assert again.trials_run == 0 and again.trials_skipped == res.trials_run


def test_interrupted_run_keeps_finished_trials(store_path):
    with pytest.raises(KeyboardInterrupt):
        run_study("toy", store=store_path, overrides={"interrupt_at": 2}, report=False)
    with Store(store_path, read_only=True) as st:
        assert st.runs()[0]["status"] == "interrupted"
        assert st.con.execute("SELECT count(*) FROM trials").fetchone()[0] == 4
    res = run_study("toy", store=store_path, report=False)
    assert res.trials_skipped == 4 and res.trials_run == 4 and res.verdict == "pass"


def test_killed_process_loses_no_finished_trial(tmp_path):
    """SIGKILL the CLI mid-sweep; the re-run resumes without loss or duplicates."""
    store = tmp_path / "kill.duckdb"
    markers = tmp_path / "markers"
    markers.mkdir()
    env = os.environ | {"LEARNMECH_STUDIES": "toy=tests.lab.toy_study:Toy", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "learnmech",
        "run",
        "toy",
        "--quiet",
        "--store",
        str(store),
        "--set",
        "points=40",
        "--set",
        "sleep=0.2",
        "--set",
        f"marker_dir={markers}",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list(markers.iterdir())) < 3 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Store(store, read_only=True) as st:  # the file opens cleanly after the kill
        saved = st.con.execute("SELECT count(*) FROM trials").fetchone()[0]
        recs = st.con.execute("SELECT count(*) FROM records WHERE source='experiment'").fetchone()[
            0
        ]
    assert 4 <= saved < 80 and saved % 2 == 0
    assert recs == saved * 4  # every saved trial has all its records (1 + 3 rows)
    res = subprocess.run(
        [*cmd[:-4], "--set", "points=40", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    with Store(store, read_only=True) as st:
        n = st.con.execute("SELECT count(*), count(DISTINCT key) FROM trials").fetchone()
        recs = st.con.execute("SELECT count(*) FROM records WHERE source='experiment'").fetchone()[
            0
        ]
    assert n == (80, 80) and recs == 320


def test_process_pool_executor(store_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # spawned workers import the toy study
    res = run_study("toy", store=store_path, workers=2, report=False)
    assert res.trials_run == 8 and res.verdict == "pass"
    # issue #19 (10): what a float32 result depends on is recorded: each worker ran with
    # cores // workers torch threads, the in-process executor with all of them
    pool = max(1, (os.cpu_count() or 1) // 2)
    with Store(store_path, read_only=True) as st:
        assert {t.threads for t in st.trials(res.run_id)} == {pool}
        assert st.run(res.run_id)["provenance"]["trial_threads"] == [pool]
    import torch

    again = run_study("toy", store=store_path, fresh=True, report=False)
    with Store(store_path, read_only=True) as st:
        assert st.run(again.run_id)["provenance"]["trial_threads"] == [torch.get_num_threads()]


@pytest.mark.xdist_group("ray")
def test_ray_executor(store_path):
    pytest.importorskip("ray")
    tiny = dict(widths=[8, 16], steps=3, n_train=8, n_test=4, kernel_points=4, kernel_seeds=1)
    res = run_study(
        "wide-nets", store=store_path, executor="ray", report=False, overrides=tiny, seeds=2
    )
    assert res.trials_run == 4 and not res.failed
    local = run_study(
        "wide-nets", store=store_path.with_name("l.duckdb"), report=False, overrides=tiny, seeds=2
    )
    # float32 training; a Ray worker may use another thread count (summation order)
    lm = {m.name: m.value for m in local.metrics}
    assert {m.name: m.value for m in res.metrics} == pytest.approx(
        lm, rel=1e-5, abs=1e-7, nan_ok=True
    )


def test_bad_config_writes_nothing(store_path):
    with pytest.raises(ConfigError, match="points"):
        run_study(
            "toy", store=store_path, overrides={"points": -3}, sources={"points": "--set points=-3"}
        )
    with pytest.raises(ConfigError, match="not permitted"):
        run_study("toy", store=store_path, overrides={"bogus": 1})
    with pytest.raises(UserError, match="unknown study"):
        run_study("nope", store=store_path)
    with pytest.raises(UserError, match="executor"):
        run_study("toy", store=store_path, executor="slurm")
    assert not store_path.exists()


def test_report_of_a_run_whose_config_no_longer_validates(store_path):
    """A run stored by an older version of a study (a renamed field) gets a one-line error."""
    from learnmech.cli import main
    from learnmech.lab.runner import render_report

    r = run_study("toy", store=store_path, report=False)
    with Store(store_path) as st:
        (config,) = st.con.execute("SELECT config FROM runs WHERE id = ?", [r.run_id]).fetchone()
        stale = json.dumps(json.loads(config) | {"renamed": 1})
        st.con.execute("UPDATE runs SET config = ? WHERE id = ?", [stale, r.run_id])
        with pytest.raises(UserError, match="no longer accepts"):
            render_report(st, r.run_id)
    assert main(["report", r.run_id, "--store", str(store_path)]) == 2


def test_report_renders_whatever_finished(store_path):
    """Issue #19 (1): a failed trial crashed report writing in a figure that needs every
    point; the report now shows the claims, the failed trials and a note."""
    res = run_study("toy", store=store_path, overrides={"fail_at": 1}, report=True)
    page = Path(res.report).read_text()
    assert "could not be drawn from the 6 of 8 trials that finished" in page
    assert "RuntimeError: boom at 1" in page


@pytest.mark.xdist_group("ray")
def test_an_unreachable_ray_address_is_one_line_and_exit_2(store_path, monkeypatch, capsys):
    """Issue #19 (8): ``ray.init`` retried an unreachable RAY_ADDRESS for minutes."""
    pytest.importorskip("ray")
    import socket

    from learnmech.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    t0 = time.perf_counter()
    assert main(["run", "toy", "--executor", "ray", "--store", str(store_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1 and time.perf_counter() - t0 < 30
    assert not store_path.exists()


def test_limit_threads_limits_torch_and_every_blas_pool():
    """A pool worker gets ``cores // workers`` threads in torch *and* in numpy's BLAS: with
    torch alone limited, two processes' OpenBLAS pools busy-waited against each other and
    a 2.8 s kernel test took 60–80 s (run in a fresh process: the limit is process-wide).
    A BLAS loaded afterwards (scipy's own OpenBLAS) is limited too: unlimited, a scipy fit
    took 152 s instead of 6 s next to a second process."""
    from learnmech.lab.executors import _THREAD_VARS

    code = (
        "import numpy, torch; from threadpoolctl import threadpool_info; "
        "from learnmech.lab.executors import limit_threads; limit_threads(1); "
        "import scipy.linalg, scipy.optimize; "
        "pools = threadpool_info(); "
        "print(torch.get_num_threads(), len(pools), sorted({p['num_threads'] for p in pools}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in _THREAD_VARS},  # as unset
    )
    assert out.returncode == 0, out.stderr
    torch_threads, n_pools, sizes = out.stdout.split(maxsplit=2)
    assert torch_threads == "1" and int(n_pools) >= 1 and sizes.strip() == "[1]"


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_limit_threads_refuses_a_bad_count(bad):
    from learnmech.lab.executors import limit_threads

    with pytest.raises(UserError, match="threads must be a positive integer"):
        limit_threads(bad)


def test_a_point_measured_as_another_is_measured_once_and_analysed_under_both(
    store_path, monkeypatch
):
    """Study.measured_as: the runner measures the shared point once (and a resumed run
    nothing), the analysis sees its trials under both points, and the failed-trials
    claim counts stored trials, not their aliases."""
    from tests.lab import alias_study

    monkeypatch.setenv("LEARNMECH_STUDIES", "alias=tests.lab.alias_study:Alias")
    alias_study.CALLS.clear()
    res = run_study("alias", store=store_path, seeds=2, report=False)
    assert sorted((c["scheme"], c["size"]) for c in alias_study.CALLS) == [
        ("plain", 1),
        ("plain", 2),
        ("plain", 4),
        ("scaled", 2),
        ("scaled", 4),
    ]
    m = {x.name: x for x in res.metrics}
    assert m["scaled@1"].value == m["plain@1"].value == 1.5  # size 1, seeds 0 and 1
    assert m["scaled@4"].value == 16.5 and m["plain@4"].value == 4.5
    assert res.trials_run == 10 and m["failed_or_diverged_trials"].value == 0
    with Store(store_path, read_only=True) as st:
        assert len(st.trials(res.run_id)) == 10
    alias_study.CALLS.clear()
    again = run_study("alias", store=store_path, seeds=2, report=False)
    assert alias_study.CALLS == [] and again.trials_skipped == 10
