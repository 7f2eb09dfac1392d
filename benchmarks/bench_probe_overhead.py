"""Cost of the probes that only read weights or gradients, against a training step.

    python benchmarks/bench_probe_overhead.py [--width 128] [--steps 200]

Goal (issue #15): ``WeightRMS``, ``UpdateRMS`` and ``GradNorm`` at their default
frequency (every step) cost at most 5% of a training step of the small GPT
(:class:`learnmech.nets.GPT`, depth 2, Adam, batch 32 × context 64 on a Zipfian Markov
language). Timed side by side in one process: blocks of 20 steps alternate between the
plain loop and the loop with a ``Recorder`` reading the probes, so drifts in machine load
hit both; the overhead is the ratio of the medians of the per-block step times, minus 1,
for each probe alone and for the three together.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from learnmech.data.language import ZipfMarkov
from learnmech.nets import GPT
from learnmech.train import GradNorm, Recorder, UpdateRMS, WeightRMS

BLOCK = 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--steps", type=int, default=400, help="steps per arm")
    a = ap.parse_args()
    torch.manual_seed(0)
    vocab, context, batch = 64, 64, 32
    lang = ZipfMarkov(vocab, 1, 1.0, seed=0)
    data = [lang.sample(batch, context + 1, seed=i) for i in range(BLOCK)]
    model = GPT(vocab, a.width, 2, 4, context, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(b: torch.Tensor) -> torch.Tensor:
        out = model(b[:, :-1])
        loss = F.cross_entropy(out.reshape(-1, vocab), b[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    arms = {
        "WeightRMS": [WeightRMS],
        "UpdateRMS": [UpdateRMS],
        "GradNorm": [GradNorm],
        "all three": [WeightRMS, UpdateRMS, GradNorm],
    }
    for b in data[:5]:  # warm-up
        step(b)
    times: dict[str, list[float]] = {"plain": []} | {k: [] for k in arms}
    n_blocks = max(a.steps // BLOCK, 3)
    for _ in range(n_blocks):
        t0 = time.perf_counter()
        for b in data:
            float(step(b).detach())  # a loop logs its loss anyway; the Recorder does too
        times["plain"].append((time.perf_counter() - t0) / BLOCK)
        for name, probes in arms.items():
            rec = Recorder(model, [p() for p in probes])
            t0 = time.perf_counter()
            for i, b in enumerate(data):
                loss = step(b)
                rec.step(i, loss=loss)
            times[name].append((time.perf_counter() - t0) / BLOCK)
            rec.close()
    base = float(np.median(times["plain"]))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"small GPT width {a.width}, depth 2, {n_params:,} parameters, batch {batch}×{context};")
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {n_blocks} blocks of {BLOCK} steps per arm"
    )
    print(f"training step (median): {1e3 * base:.2f} ms")
    for name in arms:
        t = float(np.median(times[name]))
        print(
            f"{name:10s} {1e3 * t:7.2f} ms/step  overhead {100 * (t / base - 1):+5.1f}%  "
            f"(goal ≤ 5%)"
        )


if __name__ == "__main__":
    main()
