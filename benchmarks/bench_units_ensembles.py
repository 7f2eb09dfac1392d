"""The units-of-learning studies' stacked ensembles vs plain PyTorch loops over seeds (#20).

    python benchmarks/bench_units_ensembles.py [--seeds 5] [--steps 2000] [--width 128]

Grokking: ``Grokking.measure`` (every seed one member of a stacked quadratic network,
decoupled weight decay then Adam) against a loop of one ``nn.Module``-free weight pair and
one ``torch.optim.AdamW`` per seed, same data and init; the final test accuracies must
agree. Quanta:

Both train the same seeds on the same online batches of multitask sparse parity (the
study's sampler, one generator per seed) with Adam: (1) ``learnmech.studies.quanta._train``,
every seed one member of a stacked ensemble (one batched matmul per layer, one Adam over the
stacked tensors); (2) a loop that trains one ``nn.Sequential`` per seed with its own
``torch.optim.Adam``, one after another. Prints both wall times, their ratio, and the
largest difference between the two final per-subtask test losses (they are the same
computation; float32 round-off only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from learnmech.data.algorithmic import modular_arithmetic, multitask_sparse_parity
from learnmech.studies.grokking import Grokking, GrokkingConfig, _onehot
from learnmech.studies.quanta import QuantaConfig, _freq, _train


def loop(cfg: QuantaConfig, steps: int, seeds: list[int]) -> np.ndarray:
    """The baseline: one module and one Adam per seed, the study's data streams."""
    T, d = cfg.n_tasks, cfg.n_tasks + cfg.n_bits
    sub = multitask_sparse_parity(1, n_tasks=T, n_bits=cfg.n_bits, k=cfg.k).subsets
    cdf = torch.tensor(np.cumsum(_freq(cfg)))

    def sample(g: torch.Generator, task: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if task is None:
            u = torch.rand(cfg.batch_size, generator=g, dtype=torch.float64)
            task = torch.searchsorted(cdf, u).clamp_(max=T - 1)
        bits = torch.randint(0, 2, (task.numel(), cfg.n_bits), generator=g)
        x = torch.cat([torch.nn.functional.one_hot(task, T), bits], 1).float()
        return x, bits.gather(1, sub[task]).sum(1) % 2

    tt = torch.arange(T).repeat_interleave(cfg.test_per_task)
    xt, yt = sample(torch.Generator().manual_seed(10_007 + cfg.data_seed), tt)
    out = []
    for s in seeds:
        torch.manual_seed(s)
        a, b = torch.nn.Linear(d, cfg.width), torch.nn.Linear(cfg.width, 2)
        net = torch.nn.Sequential(a, torch.nn.ReLU(), b)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        g = torch.Generator().manual_seed(1_000_003 * s + cfg.data_seed)
        for _ in range(steps):
            x, y = sample(g)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            lt = torch.nn.functional.cross_entropy(net(xt), yt, reduction="none")
        out.append(lt.view(T, cfg.test_per_task).mean(1).numpy())
    return np.array(out)


def grokking_loop(cfg: GrokkingConfig, seeds: list[int], wd: float) -> list[float]:
    """The baseline: per seed, its own weights and ``torch.optim.AdamW`` (decoupled decay
    before the Adam step, as the study does)."""
    p = cfg.p
    task = modular_arithmetic(p, train_fraction=cfg.train_fraction, seed=cfg.data_seed)
    xtr, xte = _onehot(task.x_train, p), _onehot(task.x_test, p)
    target = torch.nn.functional.one_hot(task.y_train, p).double()
    accs = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        w1 = torch.randn(2 * p, cfg.width, generator=g, dtype=torch.float64) / (2 * p) ** 0.5
        w2 = torch.randn(cfg.width, p, generator=g, dtype=torch.float64) / cfg.width**0.5
        w1.requires_grad_(True)
        w2.requires_grad_(True)
        opt = torch.optim.AdamW([w1, w2], lr=cfg.lr, weight_decay=wd)
        for _ in range(cfg.steps):
            loss = 0.5 * ((((xtr @ w1) ** 2) @ w2 - target) ** 2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            accs.append(float(((((xte @ w1) ** 2) @ w2).argmax(1) == task.y_test).double().mean()))
    return accs


def bench_grokking(n_seeds: int, steps: int) -> None:
    cfg = GrokkingConfig(steps=steps, eval_every=steps)
    seeds = list(range(n_seeds))
    t = time.perf_counter()
    res = Grokking().measure(cfg, {"wd": 1.0, "init": 1.0}, seeds, "cpu")
    t_stack = time.perf_counter() - t
    stacked = [next(c for c in res[s] if c.observable == "test_acc").values[-1] for s in seeds]
    t = time.perf_counter()
    looped = grokking_loop(cfg, seeds, 1.0)
    t_loop = time.perf_counter() - t
    print(
        f"grokking net 2·{cfg.p}→{cfg.width}→{cfg.p} (x²), full batch, {steps} steps, "
        f"{n_seeds} seeds"
    )
    print(
        f"stacked ensemble: {t_stack:.2f} s   loop over seeds: {t_loop:.2f} s   "
        f"loop / stacked = {t_loop / t_stack:.2f}x"
    )
    print(
        f"largest |Δ final test accuracy| stacked vs loop: "
        f"{np.abs(np.array(stacked) - np.array(looped)).max():.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--width", type=int, default=128)
    args = ap.parse_args()
    cfg = QuantaConfig(width=args.width, records=5, steps=args.steps)
    seeds = list(range(args.seeds))
    _train(cfg, cfg.width, 20, seeds, "cpu")  # warm-up
    t = time.perf_counter()
    stacked = _train(cfg, cfg.width, args.steps, seeds, "cpu")[-1]
    t_stack = time.perf_counter() - t
    t = time.perf_counter()
    looped = loop(cfg, args.steps, seeds)
    t_loop = time.perf_counter() - t
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"quanta MLP {cfg.n_tasks + cfg.n_bits}→{cfg.width}→2, batch {cfg.batch_size}, "
        f"Adam, {args.steps} steps, {args.seeds} seeds"
    )
    print(
        f"stacked ensemble: {t_stack:.2f} s   loop over seeds: {t_loop:.2f} s   "
        f"loop / stacked = {t_loop / t_stack:.2f}x"
    )
    print(f"largest |Δ final subtask loss| stacked vs loop: {np.abs(stacked - looped).max():.2e}")
    bench_grokking(args.seeds, args.steps)


if __name__ == "__main__":
    main()
