"""A proxy learning-rate sweep trained as one stacked ensemble against a per-run loop
(issue #17: "proxy sweeps train seeds and learning rates as vectorized ensembles").

    python benchmarks/bench_plan_sweep.py [--repeats 3] [--crossover]

For each family, one proxy width's sweep (every rate × every seed of the spec) is timed
both ways in this process, alternating, best of ``--repeats``: ``sweep_runs`` with
``vectorize=True`` (:func:`learnmech.train.stacked.train_steps_stacked`) and with
``vectorize=False`` (one ``train_steps`` run after another). Prints the loop/stacked ratio
and the largest difference in the final losses of runs that did not diverge.

Families: the plain-PyTorch MLP on digits of the tutorial (``docs.examples.plan_mlp``) and
the small GPT on the Zipfian Markov language of the ``proxy-plan`` study, at their
narrowest and widest proxy widths. ``--crossover`` also times 21 members (7 rates × 3
seeds, 40 steps) at growing widths: where the ratio falls to 1 fixes
``learnmech.train.stacked.CPU_STACK_MAX_PARAMS``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from learnmech.plan.study import LOSS_CAP, sweep_runs


def families() -> list[tuple[str, object, list[int]]]:
    from docs.examples.plan_mlp import spec as mlp_spec

    from learnmech.studies import get_study

    study = get_study("proxy-plan")
    cfg = study.Config(**study.scales["quick"])
    gpt = study.spec(cfg)
    mlp = mlp_spec()
    return [
        ("MLP on digits (tutorial)", mlp, [mlp.widths[0], mlp.widths[-1]]),
        ("GPT on Zipf-Markov (proxy-plan quick)", gpt, [gpt.widths[0], gpt.widths[-1]]),
    ]


def finals(curves: dict[int, list]) -> np.ndarray:
    out = []
    for seed in sorted(curves):
        c = next(c for c in curves[seed] if c.observable == "final_loss")
        out.append(c.values)
    return np.array(out, dtype=float)


def crossover() -> None:
    from learnmech.plan.study import count_params, train_grid

    for name, spec, _ in families():
        gpt = "GPT" in name
        for w in (32, 64, 128) if gpt else (128, 256, 512):
            t = {}
            for vec in (True, False):
                s = replace(spec, vectorize=vec)
                t0 = time.perf_counter()
                # train_grid stacks only where stacking_pays: call the engine directly
                with _force_stacking():
                    train_grid(s, w, spec.lrs[:7], [0, 1, 2], 40, [40], "cpu")
                t[vec] = time.perf_counter() - t0
            print(
                f"crossover {name}, width {w} ({count_params(spec, w):,} params), 21 members "
                f"× 40 steps: loop {t[False]:.2f} s, stacked {t[True]:.2f} s: "
                f"{t[False] / t[True]:.2f}×",
                flush=True,
            )


class _force_stacking:
    def __enter__(self) -> None:
        import learnmech.plan.study as ps

        self.saved = ps.stacking_pays
        ps.stacking_pays = lambda params, device: True

    def __exit__(self, *exc: object) -> None:
        import learnmech.plan.study as ps

        ps.stacking_pays = self.saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--crossover", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for name, spec, widths in families():
        seeds = list(range(spec.seeds))
        for w in widths:
            best = {True: np.inf, False: np.inf}
            res = {}
            for _ in range(args.repeats):
                for vec in (True, False):
                    s = replace(spec, vectorize=vec)
                    t0 = time.perf_counter()
                    res[vec] = sweep_runs(s, w, seeds, "cpu")
                    best[vec] = min(best[vec], time.perf_counter() - t0)
            a, b = finals(res[True]), finals(res[False])
            ok = (a < LOSS_CAP) & (b < LOSS_CAP)
            diff = float(np.max(np.abs(a[ok] - b[ok]))) if ok.any() else float("nan")
            stacked = next(c for c in res[True][seeds[0]] if c.observable == "stacked").values[0]
            print(
                f"{name}, width {w}: {len(spec.lrs)} rates × {len(seeds)} seeds × "
                f"{spec.steps} steps — loop {best[False]:.2f} s, stacked {best[True]:.2f} s "
                f"(engine {'stacked' if stacked else 'loop'}): {best[False] / best[True]:.2f}× "
                f"faster; max |Δ final loss| {diff:.1e}",
                flush=True,
            )
    if args.crossover:
        crossover()


if __name__ == "__main__":
    main()
