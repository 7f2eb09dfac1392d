"""Executors run batches of trials and hand results back to the single writer (the driver).

* ``local`` (default): in this process when ``workers == 1``, else a pool of spawned
  processes, each with ``cores // workers`` threads (torch's, and numpy's BLAS/OpenMP
  pools: see :func:`limit_threads`).
* ``ray``: a Ray cluster (address from ``RAY_ADDRESS``, or a local one), imported lazily.

A job is one config point with the seeds still to run, so a study can train all of them
in one vectorized call. Workers return records; they never touch the store.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from learnmech.errors import RunInterrupted, UserError
from learnmech.lab.records import Curve, TrialResult

__all__ = [
    "Executor",
    "Job",
    "LocalExecutor",
    "RayExecutor",
    "check_reachable",
    "limit_threads",
    "make_executor",
    "run_job",
]


@dataclass(frozen=True)
class Job:
    study: str
    config: dict[str, Any]
    point: dict[str, Any]
    seeds: tuple[int, ...]
    keys: tuple[str, ...]


#: thread-count variables that BLAS/OpenMP libraries read when they load
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads in this process: torch's intra-op pool and every
    BLAS/OpenMP pool loaded (numpy's OpenBLAS among them, through ``threadpoolctl``).

    Limiting torch alone is not enough when several processes share the cores: numpy's
    OpenBLAS keeps one busy-waiting thread per core in each process, and a kernel test
    that took 2.8 s alone took 60–80 s next to a second such process on 2 cores.

    A BLAS loaded *later* (scipy ships its own OpenBLAS, loaded by ``scipy.linalg`` or
    ``scipy.optimize``) reads its thread count from the environment when it loads, so the
    limit is also set in ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
    and ``VECLIB_MAXIMUM_THREADS`` (inherited by child processes too). Without it, a test
    that fits with scipy took 152 s next to a second process instead of 6 s."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a positive integer, got {threads!r}")
    import torch
    from threadpoolctl import threadpool_limits

    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def run_job(job: Job, device: str = "cpu", threads: int | None = None) -> list[TrialResult]:
    """Run one job (in whichever process); never raises: failures become trial statuses."""
    import torch

    from learnmech.studies import get_study

    if threads:
        limit_threads(threads)
    t0 = time.perf_counter()
    watch = _DeviceWatch(device)
    try:
        study = get_study(job.study)
        cfg = study.Config(**job.config)
        by_seed = study.measure(cfg, job.point, list(job.seeds), device)
    except Exception as err:  # a failing trial is recorded, the sweep goes on
        msg = f"{type(err).__name__}: {err}"
        tb = traceback.format_exc(limit=4)
        dur = time.perf_counter() - t0
        # a run that blew up is a result (reused on resume), not an error to retry: studies
        # and measurements raise FloatingPointError when training diverges or a quantity
        # of a diverged run is undefined (issue #19, item 3)
        status = "diverged" if isinstance(err, FloatingPointError) else "error"
        return [
            TrialResult(k, job.point, s, status, f"{msg}\n{tb}", dur, [], watch.used())
            for s, k in zip(job.seeds, job.keys, strict=True)
        ]
    used = watch.used()
    nthreads = torch.get_num_threads()
    dur = (time.perf_counter() - t0) / max(len(job.seeds), 1)
    out = []
    for s, k in zip(job.seeds, job.keys, strict=True):
        curves: list[Curve] = by_seed.get(s, [])
        if not curves:
            out.append(
                TrialResult(k, job.point, s, "error", "measure returned no records", dur, [], used)
            )
            continue
        bad = [c.observable for c in curves if not c.finite]
        status = "diverged" if bad else "ok"
        err = f"non-finite values in {sorted(set(bad))}" if bad else None
        out.append(TrialResult(k, job.point, s, status, err, dur, curves, used, nthreads))
    return out


class _DeviceWatch:
    """Which device a measurement really ran on: on CUDA, the allocator's cumulative
    allocation count must grow during the call (a study that ignores ``device`` and
    computes on the CPU allocates nothing there and is recorded as ``cpu``)."""

    def __init__(self, device: str) -> None:
        import torch

        self.device = device
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self.before = self._count() if self.cuda else 0

    def _count(self) -> int:
        import torch

        return int(torch.cuda.memory_stats(self.device).get("allocation.all.allocated", 0))

    def used(self) -> str:
        if not self.cuda:
            return "cpu"
        return self.device if self._count() > self.before else "cpu"


class Executor:
    name = "base"

    def map(self, jobs: list[Job]) -> Iterator[list[TrialResult]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int = 1, device: str = "cpu") -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self.device = device

    def map(self, jobs: list[Job]) -> Iterator[list[TrialResult]]:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield run_job(job, self.device)
            return
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // self.workers)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_exit_with_parent, initargs=(os.getpid(),)
        ) as pool:
            futures = [pool.submit(run_job, job, self.device, threads) for job in jobs]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            except BrokenProcessPool:
                raise RunInterrupted(
                    "a worker process died (killed, or out of memory) while running a trial; "
                    "the finished trials are saved — run the same command to resume"
                ) from None


def _exit_with_parent(parent: int) -> None:
    """In a pool worker: exit when the driver that spawned it is gone. A driver killed by
    SIGKILL cannot shut its pool down, and its workers would otherwise wait on their queue
    forever (issue #19, item 9)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="learnmech-parent-watch", daemon=True).start()


class RayExecutor(Executor):
    """Runs each job as a Ray task; results stream back to the driver as they finish."""

    name = "ray"

    @staticmethod
    def check_available() -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'learnmech[ray]'") from None

    def __init__(
        self, address: str | None = None, device: str = "cpu", num_cpus: int | None = None
    ) -> None:
        self.check_available()
        import ray

        self.ray = ray
        self.device = device
        address = address if address is not None else os.environ.get("RAY_ADDRESS")
        if address and not ray.is_initialized():
            check_reachable(address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
            plugins = os.environ.get("LEARNMECH_STUDIES")
            if plugins:  # a project's own studies: the workers must find them too
                kwargs["runtime_env"] = {"env_vars": {"LEARNMECH_STUDIES": plugins}}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
                kwargs["include_dashboard"] = False
            ray.init(**kwargs)
            self._owns = True
        else:
            self._owns = False
        # each job asks for what it uses: one CPU, and one GPU when it trains on CUDA;
        # a job lost with its node is re-run elsewhere, at most MAX_RETRIES times
        gpus = 1 if device.startswith("cuda") else 0
        self._remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=self.MAX_RETRIES)(run_job)

    MAX_RETRIES = 3

    def _alive(self) -> set[str]:
        return {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}

    def map(self, jobs: list[Job]) -> Iterator[list[TrialResult]]:
        nodes = self._alive()
        pending = [self._remote.remote(job, self.device) for job in jobs]
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                yield self.ray.get(done[0])
        except self.ray.exceptions.RayError as err:
            # a task that failed MAX_RETRIES + 1 times on lost nodes or workers; the trials
            # finished so far are stored, and a rerun resumes from them
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"a Ray task failed after {self.MAX_RETRIES} retries ({type(err).__name__}: "
                f"{first[:200]}); rerun the same command to resume"
            ) from None
        finally:
            lost = nodes - self._alive()
            if lost:  # reported, not silent: the run went on without them
                print(
                    f"learnmech: {len(lost)} Ray node(s) were lost during the run; Ray re-ran "
                    f"their tasks elsewhere (at most {self.MAX_RETRIES} retries per task)",
                    file=sys.stderr,
                )

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in one line when a Ray address's host:port does not answer (``ray.init``
    retries an unreachable cluster for minutes). ``auto`` and ``local`` are left to Ray."""
    import socket

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    if not port.isdigit():
        raise UserError(f"RAY_ADDRESS {address!r} is not host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({err.strerror or err}); start it, or "
            "unset RAY_ADDRESS to run on a local one"
        ) from None


def make_executor(name: str, *, workers: int = 1, device: str = "cpu") -> Executor:
    if name == "local":
        return LocalExecutor(workers=workers, device=device)
    if name == "ray":
        return RayExecutor(device=device)
    raise UserError(f"executor must be 'local' or 'ray', got {name!r}")
