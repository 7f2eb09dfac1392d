"""Vectorized ensemble training vs the machine's matmul rate and a Python loop over seeds.

    python benchmarks/bench_ensemble.py [--seeds 16] [--widths 64 128 256 512 1024]

Measures in one run: (1) the fp32 rate of one large ``torch.mm`` (the machine's practical
limit), (2) the achieved rate of ``train_ensemble`` training all seeds of an MLP by
full-batch gradient descent in one call, (3) a plain loop that trains the same seeds one
after another with autograd and ``torch.optim.SGD``. Rates count the matmul FLOPs a
training step needs: forward 2·n·Σ fan_in·fan_out, weight gradients the same again, input
gradients of every layer but the first.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import torch

from learnmech.nets import MLP
from learnmech.train import train_ensemble


def matmul_rate(size: int = 4096, repeat: int = 5) -> float:
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def step_flops(n: int, sizes: list[int]) -> float:
    pairs = list(itertools.pairwise(sizes))
    fwd = sum(2 * n * i * o for i, o in pairs)
    wgrad = fwd
    igrad = sum(2 * n * i * o for i, o in pairs[1:])
    return fwd + wgrad + igrad


def loop_train(models: list[MLP], x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> None:
    for m in models:
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * ((m(x) - y) ** 2).mean()
            loss.backward()
            opt.step()


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--n", type=int, default=2048, help="training examples (full batch)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    peak = matmul_rate()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); fp32 torch.mm 4096²: {peak:.1f} GFLOP/s"
    )
    print(
        f"{args.seeds} seeds, n={args.n}, d={args.dim}, depth={args.depth}, "
        f"{args.steps} GD steps per timing"
    )
    print(
        f"{'width':>6} {'ensemble GFLOP/s':>17} {'% of mm':>8} {'loop GFLOP/s':>13} "
        f"{'% of mm':>8} {'ensemble/loop':>14}"
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, args.dim, generator=g)
    y = torch.randn(args.n, 1, generator=g)
    for w in args.widths:
        # NTK parameterization, ReLU, active biases (b_std = 0.1)
        models = [MLP(args.dim, w, args.depth, b_std=0.1, seed=s) for s in range(args.seeds)]
        flops = step_flops(args.n, [args.dim] + [w] * args.depth + [1]) * args.steps * args.seeds
        t_ens = best_of(
            lambda models=models: train_ensemble(
                models, x, y, lr=0.1, steps=args.steps, record_every=[args.steps]
            ),
            args.repeat,
        )
        copies = [MLP(args.dim, w, args.depth, b_std=0.1, seed=s) for s in range(args.seeds)]
        t_loop = best_of(
            lambda copies=copies: loop_train(copies, x, y, 0.1, args.steps), args.repeat
        )
        r_ens, r_loop = flops / t_ens / 1e9, flops / t_loop / 1e9
        print(
            f"{w:>6} {r_ens:>17.1f} {100 * r_ens / peak:>7.0f}% {r_loop:>13.1f} "
            f"{100 * r_loop / peak:>7.0f}% {t_loop / t_ens:>13.2f}x"
        )


if __name__ == "__main__":
    main()
