"""Analytic NNGP + NTK: learnmech vs neural-tangents 0.6.5 (jit, CPU), same inputs, same run.

    python benchmarks/bench_kernels.py [--nt-python PATH] [--sizes 2000 4000] [--depth 10]

neural-tangents needs old pins (jax 0.4.26, jaxlib 0.4.26, tf2jax 0.3.6, numpy<2), so it lives
in its own environment, never as a learnmech dependency:

    python -m venv nt-venv
    nt-venv/bin/pip install jax==0.4.26 jaxlib==0.4.26 tf2jax==0.3.6 neural-tangents==0.6.5 \\
        "numpy<2" "scipy<1.14"
    python benchmarks/bench_kernels.py --nt-python nt-venv/bin/python

It is timed in a subprocess of that interpreter (compile excluded: one warm-up call, then
the best of --repeat). Without it (or LEARNMECH_NT_PYTHON) only learnmech's timing prints.
Both compute the symmetric kernel of n inputs, ReLU, W_std=1.4, b_std=0.1, float64.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import torch

from learnmech.theory.kernels import mlp_kernels

NT_SCRIPT = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax
sizes, depth, repeat, d = json.loads(sys.argv[1])
layers = []
for _ in range(depth):
    layers += [stax.Dense(512, 1.4, 0.1), stax.Relu()]
layers += [stax.Dense(1, 1.4, 0.1)]
kernel_fn = jax.jit(stax.serial(*layers)[2], static_argnames="get")
out = {}
for n in sizes:
    x = np.random.default_rng(0).standard_normal((n, d))
    kernel_fn(x, None, ("nngp", "ntk")).ntk.block_until_ready()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        k = kernel_fn(x, None, ("nngp", "ntk"))
        k.ntk.block_until_ready()
        best = min(best, time.perf_counter() - t)
    out[n] = {"seconds": best, "ntk00": float(k.ntk[0, 1])}
print(json.dumps(out))
"""


def time_learnmech(n: int, depth: int, repeat: int, d: int) -> tuple[float, float]:
    x = np.random.default_rng(0).standard_normal((n, d))
    mlp_kernels(x[:64], depth=depth, w_std=1.4, b_std=0.1)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        k = mlp_kernels(x, depth=depth, w_std=1.4, b_std=0.1)
        best = min(best, time.perf_counter() - t)
    return best, float(k.ntk[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--nt-python", default=os.environ.get("LEARNMECH_NT_PYTHON"))
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    nt = None
    if args.nt_python:
        res = subprocess.run(
            [
                args.nt_python,
                "-c",
                NT_SCRIPT,
                json.dumps([args.sizes, args.depth, args.repeat, args.dim]),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode == 0:
            nt = {int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}
        else:
            print(f"neural-tangents run failed, skipped:\n{res.stderr[-2000:]}")
    else:
        print("neural-tangents: not configured (--nt-python), printing learnmech only")
    print(f"{'n':>6} {'depth':>5} {'learnmech s':>12} {'neural-tangents s':>18} {'ratio':>7}")
    for n in args.sizes:
        t_lm, k_lm = time_learnmech(n, args.depth, args.repeat, args.dim)
        if nt and n in nt:
            t_nt = nt[n]["seconds"]
            agree = abs(nt[n]["ntk00"] - k_lm) / abs(k_lm)
            print(
                f"{n:>6} {args.depth:>5} {t_lm:>12.3f} {t_nt:>18.3f} {t_nt / t_lm:>6.1f}x"
                f"   (Θ[0,1] relative difference {agree:.1e})"
            )
        else:
            print(f"{n:>6} {args.depth:>5} {t_lm:>12.3f} {'-':>18} {'-':>7}")


if __name__ == "__main__":
    main()
