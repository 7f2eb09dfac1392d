"""A real multi-node Ray cluster on one machine, on loopback addresses.

For trying the ``ray`` executor before pointing it at a real cluster, for the tests that
kill a node mid-sweep, and for the overhead benchmark. Node i has the address
127.0.0.(i+2) — the head 127.0.0.2, not 127.0.0.1, because Ray rewrites 127.0.0.1 in an
address to the machine's own IP — no dashboard, and each node its own ``ray start
--block`` session (so that :meth:`LoopbackCluster.kill` takes a node down the way a
crash would). Linux routes all of 127.0.0.0/8 to loopback. Every address a node
advertises and every connection the cluster makes is 127.0.0.x, but Ray's gRPC servers
still *listen* on all interfaces (Ray has no option to bind them to one address), and
token authentication is off (Ray 2.60, the version tested, turns it on by default): while
it runs, anyone who can reach this machine's ports can reach the cluster. It is for tests
and trials on a trusted machine, not for a shared network.

    with LoopbackCluster(nodes=2) as cluster:
        os.environ["RAY_ADDRESS"] = cluster.address   # learnmech run ... --executor ray
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from learnmech.errors import UserError

__all__ = ["LoopbackCluster"]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _session(sid: int) -> list[int]:
    """Every process in session ``sid`` (Linux /proc; empty elsewhere)."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if os.getsid(int(d.name)) == sid:
                out.append(int(d.name))
        except (ProcessLookupError, PermissionError, ValueError):
            continue
    return out


class LoopbackCluster:
    """``nodes`` Ray nodes of ``cpus`` CPUs each on 127.0.0.2 … 127.0.0.(n+1).

    ``env`` is added to every node's environment (e.g. ``PYTHONPATH`` for a project's
    own studies: Ray's workers import them). ``address`` is the head's GCS address for
    ``RAY_ADDRESS``. Start with :meth:`start` or a ``with`` block; :meth:`close` kills
    every node and removes the session folder."""

    def __init__(
        self,
        nodes: int = 2,
        cpus: int = 1,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 253:
            raise ValueError(f"nodes must be an integer in 1..253, got {nodes!r}")
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise ValueError(f"cpus must be a positive integer, got {cpus!r}")
        self.nodes, self.cpus, self.timeout = nodes, cpus, timeout
        quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        # a dead node is declared dead after ~1 s instead of Ray's ~15 s (the GCS's
        # health checks), so that a test sees the loss while the run is still going
        fast = {"RAY_health_check_period_ms": "300", "RAY_health_check_failure_threshold": "3"}
        self.env = os.environ | quiet | fast | (env or {})
        self.ray = Path(sys.executable).with_name("ray")
        self.procs: list[subprocess.Popen] = []
        self.tmp: Path | None = None
        self.address = ""

    def _start_node(self, i: int) -> subprocess.Popen:
        assert self.tmp is not None
        host = f"127.0.0.{i + 2}"
        args = [
            str(self.ray),
            "start",
            "--block",
            "--disable-usage-stats",
            f"--node-ip-address={host}",
            f"--num-cpus={self.cpus}",
        ]
        if i == 0:
            port = _free_port(host)
            self.address = f"{host}:{port}"
            args += [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={self.tmp}",
            ]
        else:
            args.append(f"--address={self.address}")
        with (self.tmp / f"node{i}.log").open("w") as log:  # the child keeps its own copy
            return subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> int:
        """How many nodes the cluster reports alive (0 if the head does not answer)."""
        code = (
            f"import ray; ray.init(address={self.address!r}, log_to_driver=False); "
            "print(sum(bool(n['Alive']) for n in ray.nodes()))"
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            return 0
        lines = out.stdout.strip().splitlines()
        return int(lines[-1]) if out.returncode == 0 and lines else 0

    def _wait_for(self, n: int, deadline: float) -> None:
        while self.alive() < n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                logs = "\n".join(
                    f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(self.tmp.glob("*.log"))
                )
                self.close()
                raise UserError(f"the loopback Ray cluster did not start ({n} nodes):\n{logs}")
            time.sleep(1.0)

    def start(self) -> LoopbackCluster:
        if not self.ray.exists():
            raise UserError(
                f"the ray CLI is not installed next to {sys.executable}: "
                "pip install 'learnmech[ray]'"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix="lmray", dir="/tmp"))  # short socket paths
        deadline = time.monotonic() + self.timeout
        self.procs.append(self._start_node(0))
        self._wait_for(1, deadline)
        for i in range(1, self.nodes):
            self.procs.append(self._start_node(i))
        self._wait_for(self.nodes, deadline)
        return self

    def kill(self, i: int) -> None:
        """SIGKILL every process of node i — its ``ray start``, raylet, object store and
        task workers, which Ray puts in process groups of their own but in the node's
        session — at once: a node crash."""
        p = self.procs[i]
        for pid in [p.pid, *_session(p.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        p.wait(timeout=30)

    def close(self) -> None:
        for i in reversed(range(len(self.procs))):
            self.kill(i)
        self.procs = []
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
