"""μP overhead on a small GPT, and the time of a GPT coord check.

    python benchmarks/bench_parametrize.py

Goals (issue #4):
1. A parameterized model trains at the speed of the plain model: step time overhead ≤ 3 %
   on the small GPT, and not slower than the ``mup`` package's equivalent (MuReadout +
   set_base_shapes + MuAdam, attention set to 1/d by hand), all three timed side by side,
   interleaved, in one run. The ``mup`` column is skipped when ``mup`` is not installed
   (``pip install mup --no-deps``: its metadata pulls torchvision and a CUDA torch).
2. A coord check of the small GPT at 5 widths × 3 seeds × 5 steps: under 60 s on 2 cores.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch
from torch.nn import functional as F

from learnmech.hparams import coord_check, parametrize
from learnmech.nets import GPT

VOCAB, CONTEXT, DEPTH, HEADS, BATCH = 64, 64, 4, 4, 16
WIDTH, BASE = 256, 64


def _plain():
    m = GPT(VOCAB, WIDTH, DEPTH, HEADS, CONTEXT, seed=0)
    return m, torch.optim.Adam(m.parameters(), lr=1e-3)


def _ours():
    m = GPT(VOCAB, WIDTH, DEPTH, HEADS, CONTEXT, seed=0)
    with torch.device("meta"):
        base = GPT(VOCAB, BASE, DEPTH, HEADS, CONTEXT)
    return m, parametrize(m, "mup", base=base, lr=1e-3).optimizer()


def _mup():
    try:
        import mup
    except ImportError:
        return None

    def build(width):
        m = GPT(VOCAB, width, DEPTH, HEADS, CONTEXT, seed=0)
        m.readout = mup.MuReadout(width, VOCAB, bias=False)
        for b in m.blocks:  # μP attention: 1/d (as √d₀/d so the base keeps 1/√d₀)
            b.attn.attn_scale = (BASE // HEADS) ** 0.5 / b.attn.head_dim
        return m

    m = build(WIDTH)
    mup.set_base_shapes(m, build(BASE), delta=build(2 * BASE))
    return m, mup.MuAdam(m.parameters(), lr=1e-3)


def bench_step(reps: int = 7, steps: int = 10) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    tok = torch.randint(0, VOCAB, (BATCH, CONTEXT + 1), generator=g)
    x, y = tok[:, :-1], tok[:, 1:]
    setups = {"plain": _plain(), "learnmech μP": _ours()}
    m = _mup()
    if m is not None:
        setups["mup package"] = m
    times: dict[str, list[float]] = {k: [] for k in setups}

    def run(model, opt, n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).backward()
            opt.step()

    for model, opt in setups.values():  # warm-up
        run(model, opt, 3)
    for _ in range(reps):  # interleaved, so drift hits every arm alike
        for k, (model, opt) in setups.items():
            t0 = time.perf_counter()
            run(model, opt, steps)
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_coord_check() -> float:
    with torch.device("meta"):
        base = GPT(VOCAB, 64, 2, HEADS, 32)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (16, 32), generator=g)
    y = torch.randint(0, VOCAB, (16, 32), generator=g)

    def make(width, seed):
        m = GPT(VOCAB, width, 2, HEADS, 32, seed=seed)
        return m, parametrize(m, "mup", base=base, lr=1e-2).optimizer()

    t0 = time.perf_counter()
    cc = coord_check(make, [64, 128, 256, 512, 1024], (x, y), steps=5, seeds=3)
    dt = time.perf_counter() - t0
    print(f"  verdict: {'PASS' if cc.passed else 'FAIL'} over {len(cc.layers)} layers")
    return dt


def main() -> None:
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"small GPT: width {WIDTH} (base {BASE}), depth {DEPTH}, heads {HEADS}, "
        f"context {CONTEXT}, batch {BATCH}, vocab {VOCAB}; Adam"
    )
    t = bench_step()
    for k, v in t.items():
        print(f"  {k:<14} {v * 1e3:8.2f} ms/step")
    print(f"  overhead vs plain: {100 * (t['learnmech μP'] / t['plain'] - 1):+.2f} % (goal ≤ +3 %)")
    if "mup package" in t:
        print(f"  learnmech / mup:   {t['learnmech μP'] / t['mup package']:.3f} (goal ≤ 1)")
    print("coord check, small GPT (depth 2, context 32), widths 64…1024 × 3 seeds × 5 steps:")
    dt = bench_coord_check()
    print(f"  {dt:.1f} s (goal < 60 s)")


if __name__ == "__main__":
    main()
