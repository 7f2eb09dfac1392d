"""A tiny study for runtime tests: instant, with switches for failure, NaN and slowness."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from learnmech.lab.records import Curve, Metric, TrialResult
from learnmech.studies.base import Study, StudyConfig


class ToyConfig(StudyConfig):
    points: int = Field(4, ge=1)
    slope: float = 2.0
    fail_at: int = -1
    crash_at: int = -1  # the process running this point dies (os._exit)
    nan_at: int = -1
    diverge_at: int = -1
    interrupt_at: int = -1
    sleep: float = 0.0
    marker_dir: str = ""
    start_dir: str = ""  # "start-{a}-{pid}" when a point starts: which process runs it
    chatter: bool = False


class Toy(Study):
    name = "toy"
    title = "Toy: y = slope·a"
    summary = "runtime test study"
    pillar = "tests"
    Config = ToyConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"seeds": 2}, "full": {"seeds": 3}}
    sweep_fields = frozenset({"points"})
    analysis_fields = frozenset({"sleep", "marker_dir", "start_dir", "interrupt_at"})

    def grid(self, cfg: ToyConfig) -> list[dict[str, Any]]:
        return [{"a": a} for a in range(cfg.points)]

    def predict(self, cfg: ToyConfig) -> list[Curve]:
        a = np.arange(cfg.points, dtype=float)
        return [Curve("y", "a", a, cfg.slope * a)]

    def measure(self, cfg: ToyConfig, point: dict[str, Any], seeds: list[int], device: str):
        a = point["a"]
        if cfg.start_dir:
            Path(cfg.start_dir, f"start-{a}-{os.getpid()}").touch()
        if a == cfg.interrupt_at:
            raise KeyboardInterrupt
        if a == cfg.crash_at:
            os._exit(3)
        if a == cfg.fail_at:
            raise RuntimeError(f"boom at {a}")
        if a == cfg.diverge_at:
            raise FloatingPointError(f"training diverged at {a}")
        time.sleep(cfg.sleep)
        if cfg.chatter:  # what libraries do: print, and write to file descriptor 1
            print(f"chatter from point {a}")
            os.write(1, f"fd-level chatter from point {a}\n".encode())
        out = {}
        for s in seeds:
            v = cfg.slope * a + 0.01 * (s - 0.5)
            if a == cfg.nan_at:
                v = float("nan")
            out[s] = [Curve("y", "a", [a], [v]), Curve("trace", "step", [0, 1, 2], [a, a, s])]
        if cfg.marker_dir:
            Path(cfg.marker_dir, f"done-{a}").write_text("1")
        return out

    def figures(self, cfg, theory, trials, metrics, outdir):  # type: ignore[no-untyped-def]
        """Like a width-scaling panel: needs every point (fails on a partial sweep)."""
        if sum(t.status == "ok" for t in trials) < cfg.points * cfg.seeds:
            raise ValueError("a power-law fit needs at least two positive finite points")
        return []

    def compare(self, cfg: ToyConfig, theory: list[Curve], trials: list[TrialResult]):
        ok = [t for t in trials if t.status == "ok"]
        err = max((abs(t.curve("y").values[0] - cfg.slope * t.point["a"]) for t in ok), default=0.0)
        return [Metric("max_abs_error", err, 0.1, "<="), Metric("n_ok", len(ok))]
