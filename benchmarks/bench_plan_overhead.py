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

from learnmech.plan import make_plan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="docs.examples.plan_mlp:spec")
    ap.add_argument("--width", type=int, default=1024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p = make_plan(args.spec, target_width=args.width, store=Path(d) / "s.duckdb")
        wall = time.perf_counter() - t0
    print(
        f"spec {args.spec}: wall {wall:.1f} s, proxy trials {p.proxy_seconds:.1f} s, "
        f"workflow overhead {p.overhead_seconds:.2f} s"
    )
    print(f"overhead / proxy training = {p.overhead_seconds / p.proxy_seconds:.1%} (goal < 5%)")


if __name__ == "__main__":
    main()
