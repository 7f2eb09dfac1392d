"""`learnmech fit scaling` on growing CSVs: wall time and peak memory (issue #19, item 2).

    python benchmarks/bench_fit_rows.py [--rows 10000 100000 1000000]

Writes a synthetic Chinchilla-law CSV of each size (N, D log-uniform, 2% log-normal noise),
runs the CLI on it in a child process, and prints the wall time and the child's peak
resident memory. Goal: memory linear in rows with a small constant, 10⁶ rows in under a
minute (before: 10⁴ rows 78 s / 0.9 GB, 10⁶ rows killed at 13 GB).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        for n in args.rows:
            N, D = 10 ** rng.uniform(6, 9, n), 10 ** rng.uniform(8, 11, n)
            L = (1.69 + 406.4 / N**0.34 + 410.7 / D**0.28) * np.exp(rng.normal(0, 0.02, n))
            path = Path(d) / f"rows{n}.csv"
            np.savetxt(path, np.c_[N, D, L], delimiter=",", header="N,D,loss", comments="")
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "learnmech", "fit", "scaling", str(path), "--json"]
            subprocess.run(cmd, check=True, capture_output=True)
            wall = time.perf_counter() - t0
            # ru_maxrss of the children so far: the largest child, i.e. the largest n so far
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"{n:>9,} rows: {wall:6.1f} s, peak RSS {peak:,.0f} MB", flush=True)


if __name__ == "__main__":
    main()
