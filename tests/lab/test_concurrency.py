"""Issue #19: the store can be read while a run writes, two runs share one store, a
killed run does not stay ``running``, and a pool's workers do not outlive their driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from learnmech.lab.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
ENV = os.environ | {"LEARNMECH_STUDIES": "toy=tests.lab.toy_study:Toy", "PYTHONPATH": str(ROOT)}


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "learnmech", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _default_sigint() -> None:
    # a test runner started in the background ignores SIGINT, and so would its children
    # (Python installs its Ctrl-C handler only where SIGINT is not ignored at start-up)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_run(
    store: Path, markers: Path, points: int, sleep: float, slope: float = 2.0
) -> subprocess.Popen:
    markers.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "learnmech", "run", "toy", "--quiet", "--store", str(store)]
    cmd += ["--set", f"points={points}", "--set", f"sleep={sleep}", "--set", f"slope={slope}"]
    cmd += ["--set", f"marker_dir={markers}"]
    return subprocess.Popen(
        cmd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_default_sigint,
    )


def _wait_for(proc: subprocess.Popen, markers: Path, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while len(list(markers.iterdir())) < n:
        if proc.poll() is not None:
            out, _ = proc.communicate()
            raise AssertionError(f"the run ended early ({proc.returncode}): {out.decode()}")
        if time.time() > deadline:
            raise AssertionError(f"fewer than {n} trials finished within {timeout} s")
        time.sleep(0.05)


def test_the_store_is_readable_while_a_run_writes_and_two_runs_share_it(tmp_path):
    store = tmp_path / "s.duckdb"
    a = _start_run(store, tmp_path / "a", points=24, sleep=0.25)
    _wait_for(a, tmp_path / "a", 2)
    # a second run (other trials: another slope) on the same store proceeds alongside
    b = _start_run(store, tmp_path / "b", points=6, sleep=0.25, slope=3.0)
    _wait_for(b, tmp_path / "b", 2)
    listed = _cli("runs", "list", "--store", str(store), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert any(r["status"] == "running" for r in rows)
    for proc in (a, b):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
    with Store(store, read_only=True) as st:
        runs = st.runs()
        n = st.con.execute("SELECT count(*), count(DISTINCT key) FROM trials").fetchone()
    assert sorted(r["status"] for r in runs) == ["finished", "finished"]
    assert n == (60, 60)  # 24·2 + 6·2 trials, none lost or doubled


def test_a_busy_store_waits_then_says_who_holds_it(tmp_path):
    store = tmp_path / "s.duckdb"
    Store(store).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from learnmech.lab.store import Store; s = Store(sys.argv[1]); "
            "print('held', flush=True); time.sleep(float(sys.argv[2]))",
            str(store),
            "1.5",
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StoreError, match=rf"in use by another process \(PID {holder.pid}\)"):
        Store(store, read_only=True, wait=0.2)
    t0 = time.perf_counter()
    with Store(store, read_only=True, wait=30) as st:  # waits for the holder to let go
        assert st.runs() == []
    assert time.perf_counter() - t0 > 0.5
    holder.communicate(timeout=30)


def test_a_killed_run_is_marked_interrupted_not_left_running(tmp_path):
    store = tmp_path / "s.duckdb"
    proc = _start_run(store, tmp_path / "m", points=40, sleep=0.2)
    _wait_for(proc, tmp_path / "m", 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    listed = _cli("runs", "list", "--store", str(store), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["interrupted"]
    # a later run on the store writes the status it showed
    again = _cli("run", "toy", "--quiet", "--store", str(store), "--set", "points=2")
    assert again.returncode == 0, again.stderr
    with Store(store, read_only=True) as st:
        assert sorted(r["status"] for r in st.runs()) == ["finished", "interrupted"]


def test_pool_workers_exit_when_their_driver_is_killed(tmp_path):
    """A driver killed by SIGKILL cannot shut its pool down: the workers notice that their
    parent is gone and exit (they used to wait on their queue forever, ~320 MB each)."""
    pids = tmp_path / "pids"
    script = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from learnmech.lab.executors import LocalExecutor, Job
ex = LocalExecutor(workers=2)
jobs = [Job("toy", {{"points": 8, "seeds": 1, "sleep": 30.0}}, {{"a": a}}, (0,), (f"k{{a}}",))
        for a in range(4)]
it = ex.map(jobs)
import threading
threading.Thread(target=lambda: next(it), daemon=True).start()
time.sleep(6)
import multiprocessing as mp
open({str(pids)!r}, "w").write(" ".join(str(p.pid) for p in mp.active_children()))
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV)
    deadline = time.time() + 60
    while not (pids.exists() and pids.read_text().strip()) and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p) for p in pids.read_text().split()]
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if _alive(p)]
    assert not alive, f"workers {alive} outlived their driver"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _children(pid: int, marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and marker in cmd:
            out.append(int(d.name))
    return out


def test_a_killed_worker_stops_the_run_in_one_line_and_a_rerun_completes(tmp_path):
    """Issue #19 (crash test): SIGKILL one ``--workers 2`` worker mid-sweep. The driver used
    to die with a BrokenProcessPool traceback; now it says what happened in one line, exits
    1, marks the run interrupted, and the same command finishes it: nothing lost, nothing
    doubled, nothing left running."""
    store, markers = tmp_path / "s.duckdb", tmp_path / "m"
    markers.mkdir()
    cmd = [sys.executable, "-m", "learnmech", "run", "toy", "--quiet", "--workers", "2"]
    cmd += ["--store", str(store), "--set", "points=12", "--set", "sleep=0.5"]
    proc = subprocess.Popen(
        [*cmd, "--set", f"marker_dir={markers}"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(proc, markers, 2)
    workers = _children(proc.pid, "spawn_main")
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "worker process died" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    with Store(store, read_only=True) as st:
        assert [r["status"] for r in st.runs()] == ["interrupted"]
        saved = st.con.execute("SELECT count(*) FROM trials").fetchone()[0]
    assert saved < 24
    again = subprocess.run(
        [*cmd, "--set", f"marker_dir={markers}"], env=ENV, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    with Store(store, read_only=True) as st:
        n = st.con.execute("SELECT count(*), count(DISTINCT key) FROM trials").fetchone()
        assert [r["status"] for r in st.runs()] == ["finished"]
    assert n == (24, 24)


def _trials(store: Path) -> list[tuple]:
    with Store(store, read_only=True) as st:
        rows = st.con.execute("SELECT key, status FROM trials ORDER BY key").fetchall()
        recs = st.con.execute(
            "SELECT trial_key, count(*) FROM records WHERE source='experiment' GROUP BY 1"
        ).fetchall()
    return rows, dict(recs)


def test_kills_at_random_moments_lose_nothing_double_nothing_leave_nothing_running(tmp_path):
    """Issue #19 (crash test in CI): SIGKILL the driver at seeded random moments spread
    over an uninterrupted run's wall time — start-up, mid-sweep, inside a store
    transaction, report writing — alternating the in-process executor with
    ``--workers 2``. After every kill the store opens, every stored trial is complete (all
    its records) and none is doubled; no worker outlives the driver; the final rerun
    equals the uninterrupted run and nothing stays ``running``. The kills must land at
    different stages; while none has landed after a trial (a heavier load than the
    reference run met: start-up alone outlasted the draws), each later one waits 1.5×
    longer, up to 16 kills."""
    rng = np.random.default_rng(20)
    store, ref = tmp_path / "s.duckdb", tmp_path / "ref.duckdb"
    base = [sys.executable, "-m", "learnmech", "run", "toy", "--quiet"]
    base += ["--set", "points=16", "--set", "sleep=0.15"]
    t0 = time.perf_counter()
    done = subprocess.run([*base, "--store", str(ref)], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    ref_rows, ref_recs = _trials(ref)
    per_trial = set(ref_recs.values())
    assert len(per_trial) == 1  # every complete toy trial has the same number of records
    saved: list[int] = []
    stretch = 1.0
    for i, draw in enumerate(rng.uniform(0.1, 1.05, 16) * wall):
        if i >= 8 and min(saved) < max(saved):
            break
        # the reference run may have met a lighter load than the kills: while no kill has
        # landed after a trial, later ones wait longer (up to 16 kills in all)
        delay = draw * stretch
        workers = ["--workers", "2"] if i % 2 else []
        proc = subprocess.Popen(
            [*base, "--store", str(store), *workers],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        kids = _children(proc.pid, "multiprocessing")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows, recs = _trials(store) if store.exists() else ([], {})
        keys = [k for k, _ in rows]
        saved.append(len(keys))
        assert len(keys) == len(set(keys)), "a trial was stored twice"
        assert all(recs.get(k) in per_trial for k, s in rows if s == "ok"), "records lost"
        deadline = time.time() + 15
        while (alive := [p for p in kids if _alive(p)]) and time.time() < deadline:
            time.sleep(0.2)
        assert not alive, f"workers {alive} outlived their driver (kill {i}, {delay:.2f} s)"
        if max(saved) == 0:
            stretch *= 1.5
    # the kills landed at different stages: some before any trial, some after several
    assert min(saved) < max(saved), saved
    final = subprocess.run(
        [*base, "--store", str(store)], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert final.returncode == 0, final.stderr
    with Store(store, read_only=True) as st:
        assert "running" not in {r["status"] for r in st.runs()}
    assert _trials(store) == (ref_rows, ref_recs)
    q = (
        "SELECT trial_key, observable, coord, value FROM records "
        "WHERE source='experiment' ORDER BY 1, 2, 3"
    )
    with Store(store, read_only=True) as a, Store(ref, read_only=True) as b:
        assert a.con.execute(q).fetchall() == b.con.execute(q).fetchall()


def test_ctrl_c_prints_the_resume_hint_and_the_rerun_completes(tmp_path):
    """Issue #19 (9): SIGINT mid-sweep exits 130 with one line saying finished trials are
    saved and how to resume; the run shows as interrupted; the same command finishes it."""
    store = tmp_path / "s.duckdb"
    proc = _start_run(store, tmp_path / "m", points=30, sleep=0.2)
    _wait_for(proc, tmp_path / "m", 3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out.decode()
    lines = [x for x in out.decode().splitlines() if x.startswith("learnmech:")]
    assert lines == ["learnmech: interrupted (finished trials are saved; re-run to resume)"]
    assert "Traceback" not in out.decode()
    listed = _cli("runs", "list", "--store", str(store), "--json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["interrupted"]
    again = _start_run(store, tmp_path / "m", points=30, sleep=0.0)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out.decode()
