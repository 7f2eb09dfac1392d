"""Cost and accuracy of the sharpness probe in the edge-of-stability quick setting.

    python benchmarks/bench_sharpness_probe.py

Goal (issue #6): a sharpness probe every 10 steps costs under 30% of training time in the
edge-of-stability study at quick scale (a depth-2 tanh MLP of width 64 on 300 digits, MSE,
full-batch GD at η = 0.4 and 0.8, 800 steps).

Each row trains the same run (seed 0) with one probe setting, timed as the study times
it: the training step (zero_grad, forward, backward, optimizer step) against the
``Recorder.step`` that reads the probe. The overhead is probe time ÷ training time. Each
reading's relative error is measured against a tight cold-start Lanczos (tol 1e-9) at
the same parameters, computed outside the timed loop. Errors are reported from step 50
on (the first readings start cold).

The table is the probe's accuracy/cost frontier: one Hessian-vector product costs about
one training step here, so 30% at every 10 steps leaves about 2–3 products per reading.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from learnmech.data.real import digits_subset
from learnmech.measure.hessian import LossHessian, SharpnessProbe, lanczos
from learnmech.train.recorder import Recorder

STEPS, EVERY = 800, 10

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("default: residual bound, tol 1e-3, mix 0.3", {}),
    ("pure warm start (mix 0)", {"mix": 0.0}),
    ("Ritz-gap bound, tol 1e-3", {"bound": "gap"}),
    ("residual bound, tol 1e-2", {"tol": 1e-2}),
    ("at most 3 products", {"max_products": 3}),
    ("at most 2 products", {"max_products": 2}),
]


def loss_fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((z - t) ** 2).sum(1).mean()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)
    )


def run(
    lr: float, kwargs: dict[str, Any], X: torch.Tensor, T: torch.Tensor, every: int = EVERY
) -> dict[str, Any]:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probe = SharpnessProbe(loss_fn, (X, T), opt, every=every, **kwargs)
    snaps: dict[int, list[torch.Tensor]] = {}
    t_train = t_probe = 0.0
    with Recorder(model, [probe], every=1) as rec:
        for step in range(1, STEPS + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X), T).backward()
            opt.step()
            t1 = time.perf_counter()
            rec.step(step)
            t_train += t1 - t0
            t_probe += time.perf_counter() - t1
            if step % every == 0 and step >= 50:
                snaps[step] = [p.detach().clone() for p in model.parameters()]
        steps, lam = rec.series("sharpness")
    got = dict(zip(steps, lam, strict=True))
    errs = []
    for step, ps in snaps.items():
        with torch.no_grad():
            for p, q in zip(model.parameters(), ps, strict=True):
                p.copy_(q)
        H = LossHessian(model, loss_fn, (X, T), cache_graph=True)
        ref = float(lanczos(H.matvec, H.dim, 1, which="LA", tol=1e-9, max_iter=300).eigenvalues[0])
        errs.append(abs(got[step] - ref) / ref)
    e = np.array(errs)
    return {
        "overhead": t_probe / t_train,
        "products": probe.matvecs / len(steps),
        "step_ms": 1e3 * t_train / STEPS,
        "median": float(np.median(e)),
        "p90": float(np.quantile(e, 0.9)),
        "max": float(e.max()),
    }


def main() -> None:
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    X, lab = digits_subset(300, 0)
    T = nn.functional.one_hot(lab, 10).float()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"edge-of-stability quick setting, probe every {EVERY} steps, {STEPS} steps")
    for lr in (0.4, 0.8):
        print(f"\nGD η = {lr} (2/η = {2 / lr:.2f})")
        print(
            f"  {'setting':44s} {'products':>8s} {'overhead':>9s} {'median':>9s} "
            f"{'p90':>9s} {'max':>9s}"
        )
        for name, kwargs in SETTINGS:
            r = run(lr, kwargs, X, T)
            print(
                f"  {name:44s} {r['products']:8.1f} {100 * r['overhead']:8.0f}% "
                f"{r['median']:9.1e} {r['p90']:9.1e} {r['max']:9.1e}"
            )
        print(f"  (training step {r['step_ms']:.2f} ms; goal: overhead < 30%)")
        for every in (50, 100):
            r = run(lr, {}, X, T, every=every)
            print(
                f"  default setting, a reading every {every} steps: "
                f"{r['products']:.1f} products, overhead {100 * r['overhead']:.0f}%, "
                f"max error {r['max']:.1e}"
            )


if __name__ == "__main__":
    main()
