"""A study on a local two-node Ray cluster vs the local executor, same total CPUs (#19).

    python benchmarks/bench_ray_overhead.py [--study saddle-to-saddle] [--repeats 2]

Starts a :class:`learnmech.lab.raycluster.LoopbackCluster` of two one-CPU nodes (not
timed: a user's cluster is already up), then runs ``learnmech run STUDY --fresh`` at quick
scale, alternating ``--executor ray`` with the local executor at ``--workers 2`` (the same
two CPUs), each as a fresh CLI process, and prints the wall times, their ratio (target
≤ 1.3), and where Ray's extra time goes: connecting the driver to the cluster, and a Ray
worker's first task (a fresh Python that imports torch and learnmech), measured
separately with trivial tasks.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from learnmech.lab.raycluster import LoopbackCluster


def _run(study: str, store: Path, extra: list[str], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "learnmech", "run", study, "--fresh", "--quiet"]
    t0 = time.perf_counter()
    out = subprocess.run(
        [*cmd, "--store", str(store), *extra], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1):  # 1: the verdict is fail (a finding), still a run
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return wall


_PROBE = """
import time, ray
t0 = time.perf_counter(); ray.init(address={address!r}, log_to_driver=False)
connect = time.perf_counter() - t0

@ray.remote(num_cpus=1)
def warm():
    import learnmech.studies, torch  # what a learnmech task imports first
    return 0

@ray.remote(num_cpus=1)
def empty():
    return 0

t0 = time.perf_counter(); ray.get([warm.remote() for _ in range(2)])
first = time.perf_counter() - t0
t0 = time.perf_counter(); ray.get([empty.remote() for _ in range(20)])
per_task = (time.perf_counter() - t0) / 20
print(connect, first, per_task)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="saddle-to-saddle")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as tmp, LoopbackCluster(nodes=2, cpus=1) as cluster:
        ray_env = env | {"RAY_ADDRESS": cluster.address}
        local, ray = [], []
        for r in range(args.repeats):
            local.append(_run(args.study, Path(tmp, f"l{r}.duckdb"), ["--workers", "2"], env))
            ray.append(_run(args.study, Path(tmp, f"r{r}.duckdb"), ["--executor", "ray"], ray_env))
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE.format(address=cluster.address)],
            env=ray_env,
            capture_output=True,
            text=True,
            check=True,
        )
        connect, first, per_task = map(float, probe.stdout.split()[-3:])
    best_l, best_r = min(local), min(ray)
    print(f"study {args.study} (quick), best of {args.repeats}:")
    print(f"  local executor, 2 workers      {best_l:7.2f} s   (all: {local})")
    print(f"  Ray, 2 loopback nodes x 1 CPU  {best_r:7.2f} s   (all: {ray})")
    print(f"  ratio Ray / local: {best_r / best_l:.2f}  (target <= 1.3)")
    print("where Ray's time goes (separate probe on the same cluster):")
    print(f"  driver connects to the cluster          {connect:6.2f} s")
    print(f"  first task per worker (imports torch)   {first:6.2f} s")
    print(f"  an empty task, warm                     {per_task * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
