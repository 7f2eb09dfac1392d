"""Empirical NTK of a ResNet-18 on 32 inputs under the default 2 GiB budget.

    python benchmarks/bench_ntk_resnet.py [--n 32] [--size 32] [--labels 10]

Goal (issue #15): at least 5× faster than the blocked Jacobian contraction it replaced for
this case, at the same memory budget, with progress. The model is HuggingFace's ResNet in
the ResNet-18 layout (basic blocks, depths 2-2-2-2, widths 64-128-256-512: torchvision's
``resnet18`` architecture; torchvision itself cannot be installed next to the CPU torch
here), random weights, eval mode, ``mode="trace"``. Both paths run in this process on the
same inputs; the kernels must agree to float32 rounding.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from learnmech.measure.ntk import empirical_ntk, jacobian_memory_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="image side")
    ap.add_argument("--labels", type=int, default=10)
    a = ap.parse_args()
    import transformers as tf

    tf.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = tf.ResNetConfig(
        num_channels=3,
        embedding_size=64,
        hidden_sizes=[64, 128, 256, 512],
        depths=[2, 2, 2, 2],
        layer_type="basic",
        num_labels=a.labels,
    )
    model = tf.ResNetForImageClassification(cfg).eval()
    x = torch.randn(a.n, 3, a.size, a.size, generator=torch.Generator().manual_seed(1))
    budget = 2 * 1024**3
    per_input = jacobian_memory_bytes(model, 1, a.labels)
    P = sum(p.numel() for p in model.parameters())
    print(
        f"ResNet-18 layout, {P:,} parameters, {a.labels} outputs, {a.n} inputs "
        f"{a.size}×{a.size}; one input's Jacobian {per_input / 2**20:.0f} MiB, budget 2 GiB"
    )
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    times = {}
    for impl in ("outputs", "jacobian"):
        lines: list[str] = []
        t0 = time.perf_counter()
        K = empirical_ntk(
            model, x, mode="trace", implementation=impl, memory_budget=budget, progress=lines.append
        )
        times[impl] = (time.perf_counter() - t0, K, len(lines))
        print(f"{impl:9s} {times[impl][0]:8.1f} s  ({len(lines)} progress lines)")
    d = float((times["outputs"][1] - times["jacobian"][1]).abs().max())
    scale = float(times["jacobian"][1].abs().max())
    print(f"max |difference| {d:.2e} (kernel scale {scale:.3g})")
    print(f"speed-up: {times['jacobian'][0] / times['outputs'][0]:.1f}×  (goal ≥ 5×)")


if __name__ == "__main__":
    main()
