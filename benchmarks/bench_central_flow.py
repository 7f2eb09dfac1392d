"""Cost of integrating the central flow against running the GD steps it describes.

    python benchmarks/bench_central_flow.py [--steps 1000] [--dtype float32] [--optimizer gd]

Goal (issue #18): the central-flow integrator for a 100k-parameter MLP over 1,000 GD steps'
worth of time costs at most 5× those 1,000 GD steps, measured side by side in one run.

Setting: a depth-2 tanh MLP 64 → 300 → 300 → 10 (112,810 parameters) on 1,000 digits
images, MSE on one-hot targets, full-batch GD at η = 0.2 (it reaches 2/η within the
run, so the flow spends most of its time at the edge, where it is dearest). Both run in
the same dtype on the same threads from the same initialisation. Timed: GD's steps
(zero_grad, forward, backward, step); the flow's whole call, split into its gradient
evaluations, eigenvector refreshes (warm-started Lanczos) and third-order products (∇S by
triple backpropagation). Rows: the library's defaults (substep ½, refresh every 8 substeps,
4k + 4 products per warm refresh), a coarser refresh, and ``k="auto"`` (a direction
more whenever the next eigenvalue reaches 2/η).

``--optimizer rmsprop``: the same model under ``torch.optim.RMSprop`` (η = 1e-3, β₂ = 0.99,
ε = 1e-8, square_avg started at ∇L(w₀)²) against ``rmsprop_central_flow`` at its defaults
(no target is set for it; the row records what it costs).

``--dtype float64`` (the edge-of-stability study's dtype): the flow's default derivatives
are then differences of gradients (one gradient per Hessian-vector product, two per ∇S),
and a row with ``derivatives="autograd"`` (double and triple backpropagation) is added.
In float32 the default is autograd, whose rows are the same as before.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from torch import nn

from learnmech.data.real import digits_subset
from learnmech.theory.central_flow import central_flow
from learnmech.theory.rmsprop_flow import matching_rmsprop, rmsprop_central_flow

LR = 0.2
LR_RMSPROP = 1e-3


def loss_fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((z - t) ** 2).sum(1).mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--optimizer", default="gd", choices=["gd", "rmsprop"])
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    X, lab = digits_subset(1000, 0)
    X, T = X.to(dtype), nn.functional.one_hot(lab, 10).to(dtype)
    torch.manual_seed(0)
    init = nn.Sequential(
        nn.Linear(64, 300), nn.Tanh(), nn.Linear(300, 300), nn.Tanh(), nn.Linear(300, 10)
    ).to(dtype)
    n = sum(p.numel() for p in init.parameters())
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.dtype}; MLP with {n:,} parameters, "
        f"{X.shape[0]} examples, η = {LR if args.optimizer == 'gd' else LR_RMSPROP}, "
        f"{args.steps} steps"
    )

    import copy

    if args.optimizer == "rmsprop":
        rmsprop(init, X, T, args.steps)
        return
    m = copy.deepcopy(init)
    t_gd, losses = _run(m, torch.optim.SGD(m.parameters(), lr=LR), X, T, args.steps)
    print(f"GD: {t_gd:.2f} s ({1e3 * t_gd / args.steps:.2f} ms/step), final loss {losses[-1]:.4g}")
    rows = [
        (f"defaults ({'differences' if args.dtype == 'float64' else 'autograd'})", {}),
        ('derivatives="autograd"', {"derivatives": "autograd"}),
        ("refresh 16, ≤ 8 products", {"refresh": 16}),
        ('k="auto" (defaults otherwise)', {"k": "auto"}),
    ]
    if args.dtype != "float64":  # the default is autograd there already
        rows.pop(1)
    print(
        f"{'central flow':38s} {'ratio':>6s} {'grad':>6s} {'eig':>6s} {'∇S':>6s} "
        f"{'at edge':>8s} {'final S·η/2':>11s} {'L̄ vs GD':>8s}"
    )
    for name, kw in rows:
        f = central_flow(init, loss_fn, (X, T), LR, args.steps, **kw)
        sec = f.seconds
        edge = float(np.mean(f.sigma2.sum(1) > 0))
        gd_end = float(np.mean(losses[-20:]))
        print(
            f"{name:38s} {sec['total'] / t_gd:6.2f} {sec['gradients'] / t_gd:6.2f} "
            f"{sec['eigenvectors'] / t_gd:6.2f} {sec['third_order'] / t_gd:6.2f} "
            f"{edge:8.0%} {f.sharpness[-1] * LR / 2:11.3f} "
            f"{f.mean_loss[-1] / gd_end:8.3f}"
        )
        if kw.get("k") == "auto":
            print(f"{'':38s} directions tracked at the end: {f.sigma2.shape[1]}")
    print("ratio: flow time / GD time; grad, eig, ∇S: the flow's parts in units of GD time")


def _run(
    m: nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, T: torch.Tensor, steps: int
) -> tuple[float, list[float]]:
    """``steps`` full-batch optimizer steps: (seconds spent in them, the loss at each)."""
    seconds, losses = 0.0, []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(X), T)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - t0
        losses.append(float(loss.detach()))
    return seconds, losses


def rmsprop(init: nn.Module, X: torch.Tensor, T: torch.Tensor, steps: int) -> None:
    """torch RMSprop's steps against the RMSProp central flow over the same time."""
    import copy

    m = copy.deepcopy(init)
    opt = matching_rmsprop(m, loss_fn, (X, T), LR_RMSPROP, eps=1e-8)  # ν(0) = ∇L(w₀)²
    t_opt, losses = _run(m, opt, X, T, steps)
    ms = 1e3 * t_opt / steps
    print(f"RMSProp: {t_opt:.2f} s ({ms:.2f} ms/step), final loss {losses[-1]:.4g}")
    f = rmsprop_central_flow(init, loss_fn, (X, T), LR_RMSPROP, steps, eps=1e-8)
    sec = f.seconds
    edge = float(np.mean(f.sigma2.sum(1) > 0))
    print(
        f"RMSProp central flow (defaults): ratio {sec['total'] / t_opt:.2f}, gradients "
        f"{sec['gradients'] / t_opt:.2f}, eigenvectors {sec['eigenvectors'] / t_opt:.2f}, "
        f"∇S {sec['third_order'] / t_opt:.2f}; at the edge {edge:.0%} of records; final "
        f"S·η/2 {f.sharpness[-1] * LR_RMSPROP / 2:.3f}; L̄ / RMSProp's last-20 mean "
        f"{f.mean_loss[-1] / float(np.mean(losses[-20:])):.3f}; largest fresh reading "
        f"{f.overshoot:.2f}·2/η"
    )


if __name__ == "__main__":
    main()
