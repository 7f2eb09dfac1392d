"""ReLU as one elementwise op vs the two-clamp sum it replaced, in a stacked sweep.

    python benchmarks/bench_activation.py [--depth 4] [--reps 3]

One point of the ``lr-transfer`` study's depth arm: a residual MLP (width 64, ``--depth``
blocks, depth-μP) on the 1,797 digits, nine Adam rates × three seeds trained as one
stacked (vmapped) ensemble, 20 full-batch steps. "clamps" is the ABReLU function
learnmech used before, a·clamp(x, max=0) + b·clamp(x, min=0); "one op" is
:func:`learnmech.theory.activations.get_activation`'s ``relu`` now (``torch.relu``). One
thread, both in this process, alternating, best of ``--reps``; prints both times, their
ratio, and the largest difference of the 27 final losses (they differ only where a
pre-activation is exactly 0, where the clamps' gradient was 1 instead of 0).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import learnmech.theory.activations as acts
from learnmech.lab.executors import limit_threads
from learnmech.studies import get_study
from learnmech.studies.lr_transfer import _sweep

NEW = acts._abrelu_fn


def _clamps(a: float, b: float):  # the implementation before 2026-12-01
    def fn(x: torch.Tensor) -> torch.Tensor:
        return a * torch.clamp(x, max=0.0) + b * torch.clamp(x, min=0.0)

    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    limit_threads(1)
    cfg = get_study("lr-transfer").config("quick")
    best: dict[str, float] = {}
    loss: dict[str, np.ndarray] = {}
    for _ in range(args.reps):
        for name, impl in (("clamps", _clamps), ("one op", NEW)):
            acts._abrelu_fn = impl  # get_activation builds each net's function from it
            t0 = time.perf_counter()
            loss[name] = _sweep(cfg, "depth", "depth-mup", args.depth, [0, 1, 2])[1]
            best[name] = min(best.get(name, np.inf), time.perf_counter() - t0)
    acts._abrelu_fn = NEW
    for name, t in best.items():
        print(f"{name:7s} {t:6.2f} s")
    print(f"ratio   {best['clamps'] / best['one op']:.2f}x")
    diff = np.max(np.abs(loss["clamps"] - loss["one op"]) / np.abs(loss["clamps"]))
    print(f"largest relative difference of the final losses: {diff:.1e}")


if __name__ == "__main__":
    main()
