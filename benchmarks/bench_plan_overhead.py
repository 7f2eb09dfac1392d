"""The planner's own overhead against the proxy training it orchestrates (issue #17).

    python benchmarks/bench_plan_overhead.py [--spec docs.examples.plan_mlp:spec]

Runs ``make_plan`` on a fresh store and prints the seconds the proxies' trials spent
(training, evaluation and the measurements inside them: coord check, noise scale, Hessian)
against everything else the workflow did in the same call (spec loading, store writes,
analysis, the law fit with its bootstrap, figures, JSON/HTML). Goal: overhead < 5%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataclasses import replace

from learnmech.plan import PlanSpec, make_plan


def long_spec() -> PlanSpec:
    """The example family with 4× longer proxy runs (1,200 steps)."""
    from docs.examples.plan_mlp import spec

    return replace(spec(), steps=1200)


def longer_spec() -> PlanSpec:
    """The example family with 16× longer proxy runs (4,800 steps)."""
    from docs.examples.plan_mlp import spec

    return replace(spec(), steps=4800)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", action="append", default=None)
    ap.add_argument("--width", type=int, default=1024)
    args = ap.parse_args()
    for ref in args.spec or [
        "docs.examples.plan_mlp:spec",
        "__main__:long_spec",
        "__main__:longer_spec",
    ]:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            p = make_plan(ref, target_width=args.width, store=Path(d) / "s.duckdb")
            wall = time.perf_counter() - t0
        print(
            f"{ref}: wall {wall:.1f} s, proxy trials {p.proxy_seconds:.1f} s, workflow "
            f"overhead {p.overhead_seconds:.2f} s = {p.overhead_seconds / p.proxy_seconds:.1%}"
            " of the proxy training (goal < 5%)",
            flush=True,
        )


if __name__ == "__main__":
    main()
