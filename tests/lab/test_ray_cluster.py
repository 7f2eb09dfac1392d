"""A real two-node Ray cluster on this machine, bound to loopback only (issue #19).

The head node listens on 127.0.0.1, the worker node on 127.0.0.2, the dashboard is off
(:class:`learnmech.lab.raycluster.LoopbackCluster`). A sweep runs on the cluster from the
CLI, the worker node is killed (SIGKILL of its whole process group) while it holds a
task, and the stored results must equal the local executor's exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnmech.lab.raycluster import LoopbackCluster
from learnmech.lab.store import Store

ROOT = Path(__file__).resolve().parents[2]
ENV = {"LEARNMECH_STUDIES": "toy=tests.lab.toy_study:Toy", "PYTHONPATH": str(ROOT)}
NODE_ENV = {"PYTHONPATH": str(ROOT)}  # the driver passes LEARNMECH_STUDIES to the workers
# Ray tests share one xdist worker: ray.init() may join a cluster another test started
pytestmark = pytest.mark.xdist_group("ray")
SWEEP = ["--set", "points=12", "--set", "sleep=1.5"]


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    with LoopbackCluster(nodes=2, cpus=1, env=NODE_ENV) as c:
        yield c


def _cmd(store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "learnmech",
        "run",
        "toy",
        "--store",
        str(store),
        "--json",
        *SWEEP,
        *extra,
    ]


def _local_run(tmp_path: Path) -> str:
    """The same sweep with the local executor (the reference), in local.duckdb."""
    local = subprocess.run(
        _cmd(tmp_path / "local.duckdb", "--set", "sleep=0"),
        env=os.environ | ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert local.returncode == 0, local.stderr
    return json.loads(local.stdout)["run_id"]


def _results(store: Path, run_id: str) -> list[tuple]:
    with Store(store) as s:
        return sorted(
            (t.point["a"], t.seed, t.status, tuple(tuple(c.values.tolist()) for c in t.curves))
            for t in s.trials(run_id)
        )


def _running_on(node: int, cluster: LoopbackCluster, started: Path) -> int | None:
    """A point whose task has started in a process of node ``node`` (Ray's workers have
    process groups of their own, in their node's session)."""
    for f in started.iterdir():
        _, a, pid = f.name.split("-")
        try:
            if os.getsid(int(pid)) == cluster.procs[node].pid:
                return int(a)
        except ProcessLookupError:
            continue
    return None


def test_a_sweep_survives_losing_a_worker_node_and_matches_the_local_run(cluster, tmp_path):
    env = os.environ | ENV
    local_id = _local_run(tmp_path)

    store, started = tmp_path / "ray.duckdb", tmp_path / "started"
    started.mkdir()
    proc = subprocess.Popen(
        _cmd(store, "--executor", "ray", "--set", f"start_dir={started}"),
        env=env | {"RAY_ADDRESS": cluster.address},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait until the worker node runs a task (12 tasks of 1.5 s on two one-CPU nodes),
    # then kill the node the way a crash would: that task must be re-run on the head
    deadline = time.monotonic() + 120
    while (lost := _running_on(1, cluster, started)) is None:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    cluster.kill(1)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    res = json.loads(out)  # stdout stays one JSON object: no Ray log lines in it
    assert res["verdict"] == "pass"
    assert "lost" in err and "re-ran" in err, err  # the node loss is reported
    ray_results = _results(store, res["run_id"])
    assert ray_results == _results(tmp_path / "local.duckdb", local_id)
    assert any(a == lost for a, *_ in ray_results)  # the killed task's point is there
    assert len(list(started.glob(f"start-{lost}-*"))) >= 2  # ... because it ran again
    assert cluster.alive() == 1


def test_a_killed_driver_resumes_on_the_cluster(cluster, tmp_path):
    """SIGKILL the driver of a Ray sweep once some trials are stored: the rerun of the
    same command reuses them, runs the rest, and ends equal to the local executor's run;
    the killed run shows as interrupted."""
    env = os.environ | ENV
    local_id = _local_run(tmp_path)
    store, done = tmp_path / "ray.duckdb", tmp_path / "done"
    done.mkdir()
    cmd = _cmd(store, "--executor", "ray", "--set", f"marker_dir={done}", "--set", "sleep=0.5")
    renv = env | {"RAY_ADDRESS": cluster.address}
    proc = subprocess.Popen(cmd, env=renv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(done.iterdir())) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)  # let the driver store what it received
    proc.kill()
    proc.communicate()
    with Store(store, read_only=True) as st:
        stored = st.con.execute("SELECT count(*) FROM trials").fetchone()[0]
    assert 0 < stored < 24
    with Store(store, read_only=True) as st:
        assert [r["status"] for r in st.runs()] == ["interrupted"]
    started = tmp_path / "started"
    started.mkdir()
    again = subprocess.run(
        [*cmd, "--set", f"start_dir={started}"],
        env=renv,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    res = json.loads(again.stdout)
    assert _results(store, res["run_id"]) == _results(tmp_path / "local.duckdb", local_id)
    rerun = {f.name.split("-")[1] for f in started.iterdir()}
    assert len(rerun) <= 12 - stored // 2  # the stored points were reused, not re-run
    with Store(store, read_only=True) as st:
        # start_dir makes the rerun's config differ, so it is a run of its own; the
        # killed one stays on record as interrupted
        assert sorted(r["status"] for r in st.runs()) == ["finished", "interrupted"]


def test_a_task_that_keeps_killing_its_worker_fails_the_run_in_one_line(cluster, tmp_path):
    """Retries are bounded: a point whose process dies every time is retried
    ``MAX_RETRIES`` times, then the run stops with one line and exit 2; the trials that
    finished are stored and a rerun without the crash completes from them."""
    store = tmp_path / "s.duckdb"
    env = os.environ | ENV | {"RAY_ADDRESS": cluster.address}
    cmd = [*_cmd(store, "--executor", "ray", "--set", "sleep=0"), "--set", "points=3"]
    out = subprocess.run(
        [*cmd, "--set", "crash_at=2"], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 2, out.stderr
    line = [x for x in out.stderr.splitlines() if x.startswith("learnmech: error")]
    assert len(line) == 1 and "failed after 3 retries" in line[0], out.stderr
    assert "Traceback" not in out.stderr
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr


def test_the_ray_tests_share_one_worker(request):
    """`make test` keeps the Ray tests on one xdist worker (``--dist loadgroup``): xdist
    does so by adding the group to each test's id. On pytest 9.2 that no longer takes
    (pytest-xdist#1386): the Ray tests then run on both workers at once, each starting
    its own cluster. pyproject.toml pins pytest < 9.2 for this."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run under --dist loadgroup")
    assert request.node.nodeid.endswith("@ray"), (
        f"--dist loadgroup did not group {request.node.nodeid} with pytest "
        f"{pytest.__version__}: see pytest-xdist#1386 (install pytest<9.2)"
    )
