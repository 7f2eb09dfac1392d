"""Closed-form stacked training of two-layer ReLU nets: cache-sized blocks vs whole arrays.

    python benchmarks/bench_two_layer.py [--width 2048] [--steps 400] [--reps 3]

The ``mean-field`` study's reference networks: 8 seeds, ``--width`` hidden units, 64
two-dimensional inputs, float64, α = 1. "whole" is
:func:`learnmech.nets.two_layer.train_scaled_stacked` as it was before 2026-12-01 (einsum
contractions over whole (S, n, m) arrays); "blocks" is the function now (blocks of hidden
units whose arrays stay in cache). One thread, alternating, best of ``--reps``; prints both
times, the ratio and the largest difference of the final weights.
"""

from __future__ import annotations

import argparse
import time

import torch

from learnmech.lab.executors import limit_threads
from learnmech.nets.two_layer import train_scaled_stacked


@torch.no_grad()
def whole(X, y, w0, a0, alpha, lr, steps):  # the implementation before 2026-12-01
    m, n = w0.shape[1], X.shape[0]
    w, a = w0.clone(), a0.clone()
    for step in range(steps + 1):
        pre = torch.einsum("nd,smd->snm", X, w)
        act = torch.relu(pre)
        r = alpha / m * torch.einsum("snm,sm->sn", act, a) - y
        if step == steps:
            break
        c = lr / (alpha * n)
        ga = torch.einsum("snm,sn->sm", act, r)
        gw = torch.einsum("snm,nd->smd", (pre > 0).to(w.dtype) * r[:, :, None], X)
        w -= c * a[:, :, None] * gw
        a -= c * ga
    return w, a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    limit_threads(1)
    g = torch.Generator().manual_seed(0)
    kw = dict(dtype=torch.float64, generator=g)
    X, y = torch.randn(64, 2, **kw), torch.randn(64, **kw)
    w0, a0 = torch.randn(8, args.width, 2, **kw), torch.randn(8, args.width, **kw)
    best, out = {}, {}
    for _ in range(args.reps):
        for name in ("whole", "blocks"):
            t0 = time.perf_counter()
            if name == "whole":
                out[name] = whole(X, y, w0, a0, 1.0, 0.5, args.steps)
            else:
                out[name] = train_scaled_stacked(X, y, w0, a0, 1.0, 0.5, args.steps, set())[:2]
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    for name, t in best.items():
        print(f"{name:6s} {t:6.2f} s")
    print(f"ratio  {best['whole'] / best['blocks']:.2f}x")
    diff = max(float((u - v).abs().max()) for u, v in zip(out["whole"], out["blocks"], strict=True))
    print(f"largest difference of the final weights: {diff:.1e}")


if __name__ == "__main__":
    main()
