"""The planner's one-at-a-time runs: torch's default Adam update against the fused kernel.

    python benchmarks/bench_fused_adam.py [--steps 60] [--repeats 3] [--threads 1]

Trains proxy-plan's width-256 target GPT (the quick scale's shape: 2 blocks, 2 heads,
vocabulary 32, context 8, batch 16, μP against the width-8 base, Adam at 2^-7) with the
optimizer :func:`learnmech.plan.study.build` gave before (torch's CPU default, one op at a
time over each tensor), with ``foreach=True`` and with ``fused=True``
(:func:`learnmech.plan.study.fused_kwargs`). Arms alternate, best of ``--repeats``; the
first 10 steps of each run are not timed. Prints the mean step and the mean
``optimizer.step()`` per arm, the default/fused ratio of each, and the largest relative
parameter difference from the default after the run.
"""

from __future__ import annotations

import argparse
import time

import torch

from learnmech.hparams import parametrize
from learnmech.nets import GPT

ARMS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def run(kw: dict, steps: int) -> tuple[float, float, list[torch.Tensor]]:
    """(mean step seconds, mean optimizer.step() seconds, final parameters)."""
    torch.manual_seed(0)
    model = GPT(32, 256, 2, 2, 8, seed=0)
    with torch.device("meta"):
        base = GPT(32, 8, 2, 2, 8)
    opt = parametrize(model, "mup", base=base, optimizer="adam", lr=2**-7).optimizer(**kw)
    x = torch.randint(0, 32, (16, 9), generator=torch.Generator().manual_seed(1))
    step_t, opt_t = [], []
    for s in range(steps + 10):
        t0 = time.perf_counter()
        out = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, 32), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        if s >= 10:
            step_t.append(t2 - t0)
            opt_t.append(t2 - t1)
    params = [p.detach().clone() for p in model.parameters()]
    return sum(step_t) / steps, sum(opt_t) / steps, params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    best: dict[str, tuple[float, float]] = {}
    final: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.repeats):
        for name, kw in ARMS.items():
            step, upd, final[name] = run(kw, args.steps)
            b = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(b[0], step), min(b[1], upd))
    d_step, d_upd = best["default"]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} timed steps")
    for name, (step, upd) in best.items():
        diff = max(
            float((a - b).abs().max() / b.abs().max())
            for a, b in zip(final[name], final["default"], strict=True)
        )
        print(
            f"{name:8s} step {step * 1e3:6.2f} ms ({d_step / step:4.2f}x)  update "
            f"{upd * 1e3:5.2f} ms ({d_upd / upd:4.2f}x)  max rel. param difference {diff:.1e}"
        )


if __name__ == "__main__":
    main()
