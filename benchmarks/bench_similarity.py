"""Representation-similarity speed vs straightforward implementations of the same formulas.

    python benchmarks/bench_similarity.py [--n 10000] [--d 768] [--layers 12] [--samples 2000]

Goals (issue #7), on 2 cores:
- linear CKA at 10,000 × 768 under 2 s;
- mutual kNN (k = 10) at the same size under 15 s;
- layer × layer linear CKA between two 12-layer models at 2,000 samples under 30 s.

Baselines, each the formula as commonly written (and checked equal to ours here):
- CKA: Kornblith et al.'s reference code — Gram matrices XXᵀ, YYᵀ, centred, then
  ⟨K̄, L̄⟩/(‖K̄‖‖L̄‖) (numpy, float64);
- mutual kNN: Huh et al.'s reference code — the full n×n similarity, argsort of every row,
  n×n neighbour masks, their elementwise product (torch, float64);
- layer × layer: the same activations, then Kornblith's feature-space CKA pair by pair
  (144 calls of ‖XᵀY‖²/(‖XᵀX‖‖YᵀY‖)).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from torch import nn

from learnmech.measure.similarity import layer_similarity, linear_cka, mutual_knn


def _center_gram(g: np.ndarray) -> np.ndarray:
    means = g.mean(0)
    g = g - means[:, None]
    g -= means[None, :]
    g += means.mean()
    return g


def kornblith_gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    K, L = _center_gram(x @ x.T), _center_gram(y @ y.T)
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


def kornblith_feature_cka(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean(0)
    y = y - y.mean(0)
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def huh_mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    def knn(f: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional.normalize(f, dim=-1)
        return (f @ f.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]

    ka, kb = knn(a), knn(b)
    n = ka.shape[0]
    r = torch.arange(n).unsqueeze(1)
    ma = torch.zeros(n, n, dtype=a.dtype)
    mb = torch.zeros(n, n, dtype=a.dtype)
    ma[r, ka] = 1.0
    mb[r, kb] = 1.0
    return float(((ma * mb).sum(1) / k).mean())


def _timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--samples", type=int, default=2000)
    a = ap.parse_args()
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads; float64")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(a.n, a.d, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(a.d, a.d, generator=g, dtype=torch.float64) / a.d**0.5
    Y += torch.randn(a.n, a.d, generator=g, dtype=torch.float64)
    linear_cka(X[:500], Y[:500])  # warm-up

    ours, t_ours = _timed(linear_cka, X, Y)
    ref, t_ref = _timed(kornblith_gram_cka, X.numpy(), Y.numpy())
    print(
        f"linear CKA {a.n}×{a.d}: learnmech {t_ours:.2f} s (goal < 2 s), reference Gram "
        f"code {t_ref:.1f} s → {t_ref / t_ours:.0f}×; values {ours:.12f} vs {ref:.12f}"
    )

    ours, t_ours = _timed(mutual_knn, X, Y, k=10)
    ref, t_ref = _timed(huh_mutual_knn, X, Y, 10)
    print(
        f"mutual kNN (k=10) {a.n}×{a.d}: learnmech {t_ours:.2f} s (goal < 15 s), reference "
        f"code {t_ref:.1f} s → {t_ref / t_ours:.1f}×; values {ours:.6f} vs {ref:.6f}"
    )

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        blocks = []
        for _ in range(a.layers):
            blocks += [nn.Linear(a.d, a.d), nn.ReLU()]
        return nn.Sequential(*blocks).double()

    ma, mb = model(1), model(2)
    names = [str(2 * i + 1) for i in range(a.layers)]  # the ReLU outputs
    inp = torch.randn(a.samples, a.d, generator=g, dtype=torch.float64)
    res, t_ours = _timed(layer_similarity, ma, mb, inp, layers_a=names, layers_b=names)
    t = time.perf_counter()
    acts = []
    for m in (ma, mb):
        feats, h = [], inp
        with torch.no_grad():
            for i, layer in enumerate(m):
                h = layer(h)
                if str(i) in names:
                    feats.append(h.numpy())
        acts.append(feats)
    ref_m = np.array([[kornblith_feature_cka(p, q) for q in acts[1]] for p in acts[0]])
    t_ref = time.perf_counter() - t
    err = float(np.abs(ref_m - res.matrix).max())
    print(
        f"layer × layer {a.layers}×{a.layers} at {a.samples} samples (width {a.d}): "
        f"learnmech {t_ours:.2f} s (goal < 30 s), pairwise reference {t_ref:.1f} s → "
        f"{t_ref / t_ours:.1f}×; max |difference| {err:.1e}"
    )


if __name__ == "__main__":
    main()
