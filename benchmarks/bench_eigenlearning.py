"""Eigenlearning learning curves: 10⁶ modes × 100 sample sizes (goal: under 1 s on 2 cores).

    python benchmarks/bench_eigenlearning.py [--modes 1000000] [--points 100]

Baseline in the same run: the textbook implementation — for each n, scipy's brentq on
Σλ/(λ+κ) + δ/κ = n in log κ, then the test MSE — timed on --baseline-points sample sizes
and reported per point, since a full baseline run takes minutes. Both use float64 and must
agree to 1e-9 relative on the shared points.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy.optimize import brentq

from learnmech.theory import eigenlearning


def baseline(lam: np.ndarray, v2: np.ndarray, n: float) -> float:
    def h(u: float) -> float:
        return float(np.sum(lam / (lam + np.exp(u)))) - n

    u = brentq(h, np.log(lam.min()) - 60, np.log(lam.sum() / n) + 1, xtol=1e-14, rtol=1e-15)
    k = np.exp(u)
    L = lam / (lam + k)
    e0 = n / (n - np.sum(L * L))
    return float(e0 * np.sum((1 - L) ** 2 * v2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, default=1_000_000)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--baseline-points", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    k = np.arange(1, a.modes + 1, dtype=np.float64)
    ns = np.geomspace(1, a.modes / 10, a.points)
    for name, lam in (
        ("power law k^-2", k**-2.0),
        ("geometric, 30 decades", np.geomspace(1, 1e-30, a.modes)),
    ):
        v2 = k**-1.2
        v2 /= v2.sum()
        best = np.inf
        for _ in range(a.repeat):
            t = time.perf_counter()
            pred = eigenlearning.predict(lam, np.sqrt(v2), ns)
            best = min(best, time.perf_counter() - t)
        idx = np.linspace(0, a.points - 1, a.baseline_points).astype(int)
        t = time.perf_counter()
        ref = np.array([baseline(lam, v2, ns[i]) for i in idx])
        per_point = (time.perf_counter() - t) / len(idx)
        err = np.max(np.abs(ref / pred.test_mse[idx] - 1))
        print(
            f"{name}: {a.modes:,} modes × {a.points} sample sizes: learnmech {best:.3f} s "
            f"(goal < 1 s); brentq baseline {per_point:.3f} s per point → "
            f"{per_point * a.points:.1f} s for all, ratio {per_point * a.points / best:.0f}×; "
            f"max rel. difference {err:.1e}"
        )


if __name__ == "__main__":
    main()
