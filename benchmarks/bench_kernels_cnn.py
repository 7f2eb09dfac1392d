"""CNN kernels (NNGP + NTK): learnmech vs neural-tangents 0.6.5 (jit, CPU), same run.

    python benchmarks/bench_kernels_cnn.py --nt-python nt-venv/bin/python [--n 200]
        [--large 2000] [--budget-gb 4]

The network is issue #16's: three 3×3 ReLU convolutions (SAME padding, W_std 1, no bias
variance) and global average pooling, then a Dense readout, on n single-channel 8×8
inputs, float64, the symmetric kernel. Each side runs in a fresh subprocess so that its
peak resident memory (ru_maxrss of the child, interpreter and libraries included) is its
own; neural-tangents is timed after one warm-up (compile) call on 8 inputs, as is
learnmech. ``--large`` also times learnmech alone at that n under ``--budget-gb``.
neural-tangents lives in its own environment (see bench_kernels.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

import torch

NT_SCRIPT = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax
n = int(sys.argv[1])
layers = []
for _ in range(3):
    layers += [stax.Conv(64, (3, 3), (1, 1), "SAME", 1.0, 0.0), stax.Relu()]
layers += [stax.GlobalAvgPool(), stax.Dense(1, 1.0, 0.0)]
kernel_fn = jax.jit(stax.serial(*layers)[2], static_argnames="get")
x = np.random.default_rng(0).standard_normal((n, 1, 8, 8)).transpose(0, 2, 3, 1)
kernel_fn(x[:8], None, ("nngp", "ntk")).ntk.block_until_ready()
t = time.perf_counter()
k = kernel_fn(x, None, ("nngp", "ntk"))
k.ntk.block_until_ready()
print(json.dumps({"seconds": time.perf_counter() - t, "ntk01": float(k.ntk[0, 1])}))
"""

LM_SCRIPT = r"""
import json, sys, time
import numpy as np
from learnmech.theory import stax
n, budget = int(sys.argv[1]), float(sys.argv[2])
layers = []
for _ in range(3):
    layers += [stax.Conv(64, 3, padding="SAME", w_std=1.0, b_std=0.0), stax.Relu()]
net = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, 1.0, 0.0))
x = np.random.default_rng(0).standard_normal((n, 1, 8, 8))
stax.kernels(net, x[:8])
t = time.perf_counter()
k = stax.kernels(net, x, memory_budget=int(budget), progress=n > 1000)
print(json.dumps({"seconds": time.perf_counter() - t, "ntk01": float(k.ntk[0, 1])}))
"""


def run(python: str, script: str, *args: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{python} failed:\n{res.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the largest child so far: run the smaller side first
    out["peak_gb"] = max(peak, before) / 1024**2
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--large", type=int, default=2000)
    ap.add_argument("--budget-gb", type=float, default=4.0)
    ap.add_argument("--nt-python", default=os.environ.get("LEARNMECH_NT_PYTHON"))
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    budget = args.budget_gb * 1024**3
    lm = run(sys.executable, LM_SCRIPT, str(args.n), str(budget))
    print(f"learnmech        n={args.n}: {lm['seconds']:.2f} s, peak {lm['peak_gb']:.2f} GB")
    if args.nt_python:
        nt = run(args.nt_python, NT_SCRIPT, str(args.n))
        rel = abs(lm["ntk01"] - nt["ntk01"]) / abs(nt["ntk01"])
        print(f"neural-tangents  n={args.n}: {nt['seconds']:.2f} s, peak {nt['peak_gb']:.2f} GB")
        print(
            f"ratio: {nt['seconds'] / lm['seconds']:.1f}x faster (goal >= 3x), memory "
            f"{lm['peak_gb'] / nt['peak_gb']:.3f} of neural-tangents' (goal <= 1/4); "
            f"Θ[0,1] relative difference {rel:.1e}"
        )
    else:
        print("neural-tangents not timed: pass --nt-python (see the docstring)")
    if args.large:
        big = run(sys.executable, LM_SCRIPT, str(args.large), str(budget))
        print(
            f"learnmech        n={args.large}: {big['seconds']:.1f} s, peak "
            f"{big['peak_gb']:.2f} GB (budget {args.budget_gb:g} GB for the working set)"
        )


if __name__ == "__main__":
    main()
