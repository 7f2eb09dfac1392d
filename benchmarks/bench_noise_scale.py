"""``noise_scale`` streaming its per-example gradients vs holding the (n, P) matrix.

    python benchmarks/bench_noise_scale.py [--width 256] [--examples 256] [--reps 3]

A HuggingFace GPT-2 built from a config (random weights; 1 layer, 2 heads, vocabulary 16,
context 8) on a Zipfian Markov chain, as in the planner's noise-scale check. "matrix" is the
one-matrix computation ``noise_scale`` used before: all per-example gradients in float64,
their deviations, their squares. "streamed" is :func:`learnmech.measure.noise_scale`. Each
runs in its own fresh process (so each peak resident memory is its own), alternating,
best of ``--reps``; prints both, the time ratio and the largest relative difference of
the statistics.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
import transformers as tf
from learnmech.data.language import ZipfMarkov
from learnmech.measure.gradients import noise_scale, per_example_gradients
from learnmech.train.language import lm_loss

tf.logging.set_verbosity_error()
mode, width, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
torch.manual_seed(0)
cfg = tf.GPT2Config(vocab_size=16, n_positions=8, n_embd=width, n_layer=1, n_head=2,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = tf.GPT2LMHeadModel(cfg).eval()
seq = ZipfMarkov(16, order=1, exponent=1.0, seed=0).sample(n, 9, seed=1)
x, y = seq[:, :-1], seq[:, 1:]
t0 = time.perf_counter()
if mode == "matrix":
    g = per_example_gradients(model, lm_loss, x, y).to(torch.float64)
    mean = g.mean(0)
    tr = float((g - mean).square().sum(1).mean()) * n / (n - 1)
    g2 = float(mean @ mean) - tr / n
else:
    ns = noise_scale(model, lm_loss, x, y)
    tr, g2 = ns.trace_sigma, ns.grad_sq
dt = time.perf_counter() - t0
params = sum(p.numel() for p in model.parameters())
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (Linux: KiB)
print(json.dumps({"s": dt, "gib": rss, "tr": tr, "g2": g2, "params": params}))
"""


def run(mode: str, width: int, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(width), str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    best: dict[str, dict] = {}
    for _ in range(a.reps):
        for mode in ("matrix", "streamed"):
            r = run(mode, a.width, a.examples)
            if mode not in best or r["s"] < best[mode]["s"]:
                best[mode] = r
    m, s = best["matrix"], best["streamed"]
    diff = max(abs(s[k] - m[k]) / abs(m[k]) for k in ("tr", "g2"))
    print(f"GPT-2 width {a.width}: {m['params']:,} parameters, {a.examples} examples, 1 thread")
    print(f"matrix   {m['s']:6.2f} s  peak {m['gib']:.2f} GiB")
    print(f"streamed {s['s']:6.2f} s  peak {s['gib']:.2f} GiB")
    ratio = f"{m['s'] / s['s']:.2f}x time, {m['gib'] / s['gib']:.2f}x memory"
    print(f"ratio (matrix / streamed): {ratio}")
    print(f"largest relative difference of tr Σ, |G|²: {diff:.1e}")


if __name__ == "__main__":
    main()
