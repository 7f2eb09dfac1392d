"""Deterministic tasks with a known structure of "units of learning".

* :func:`modular_arithmetic` — (a, b) ↦ (a ∘ b) mod p over a small prime p, the grokking
  task (Power et al. 2022; Nanda et al. 2023, "Progress measures for grokking via
  mechanistic interpretability"; Gromov 2023, "Grokking modular arithmetic").
* :func:`fourier_template_task` — modular addition on a template x ∈ R^p with chosen
  Fourier magnitudes: input (x_a, x_b) (x cyclically shifted by a and by b), target
  x_{a+b} (Kunin et al. 2025, "Alternating gradient flows", §5: one-hot encoding is the
  case of a flat spectrum; unequal magnitudes give AGF an order to predict).
* :func:`multitask_sparse_parity` — Michaud et al. 2023 ("The quantization model of neural
  scaling", §3): n_tasks subtasks, each the parity of its own k of the n_bits task bits,
  chosen by a one-hot control prefix; subtask i is drawn with probability
  p_i ∝ i^−(α+1) (Zipf), so a model that has learned the first m "quanta" has loss
  ∝ Σ_{i>m} p_i ∝ m^−α.
* :func:`planted_singular_task` — linear regression onto y = U·diag(s)·Vᵀ x with planted
  singular values (Saxe, McClelland & Ganguli 2014), so the deep-linear theory predicts
  which mode each saddle-to-saddle step learns and when.

Everything is a function of its arguments and ``seed``: the same call returns the same
tensors on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = [
    "ModularTask",
    "PlantedTask",
    "SparseParityTask",
    "TemplateTask",
    "fourier_template_task",
    "modular_arithmetic",
    "multitask_sparse_parity",
    "planted_singular_task",
    "zipf_frequencies",
]


def _posint(v: object, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % q for q in range(2, math.isqrt(p) + 1))


@dataclass(frozen=True)
class ModularTask:
    """All p² pairs split into train and test. ``x_*`` are (n, 2) int64 operands,
    ``y_*`` (n,) int64 results; ``p`` the modulus."""

    p: int
    op: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def modular_arithmetic(
    p: int = 59,
    *,
    op: Literal["add", "sub", "mul"] = "add",
    train_fraction: float = 0.4,
    seed: int = 0,
) -> ModularTask:
    """Every pair (a, b) ∈ Z_p², labelled (a + b), (a − b) or (a·b) mod p, split at random
    into ``train_fraction`` of the p² pairs for training and the rest for testing.

    ``p`` must be prime (the Fourier analysis of the group Z_p, and the multiplicative
    group for ``mul``, assume it)."""
    p = _posint(p, "p", 2)
    if not _is_prime(p):
        raise ValueError(f"p must be prime, got {p}")
    if op not in ("add", "sub", "mul"):
        raise ValueError(f"op must be 'add', 'sub' or 'mul', got {op!r}")
    if not (isinstance(train_fraction, int | float) and 0 < train_fraction < 1):
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    y = {"add": a + b, "sub": a - b, "mul": a * b}[op] % p
    order = np.random.default_rng(seed).permutation(p * p)
    n_train = max(1, min(p * p - 1, round(train_fraction * p * p)))
    tr, te = order[:n_train], order[n_train:]
    x = torch.from_numpy(np.stack([a, b], 1).astype(np.int64))
    yt = torch.from_numpy(y.astype(np.int64))
    return ModularTask(p, op, x[tr], yt[tr], x[te], yt[te])


@dataclass(frozen=True)
class TemplateTask:
    """All p² pairs (a, b): ``x`` (p², 2p) the inputs [x_a, x_b], ``y`` (p², p) the targets
    x_{a+b}, ``pairs`` (p², 2) int64 (a, b); ``template`` (p,) x itself, with DFT
    x̂[k] = √p·m_k·e^{iψ_k} at each of ``frequencies`` (and its conjugate at p − k) and 0
    elsewhere; ``magnitudes`` the m_k, ``phases`` the ψ_k."""

    p: int
    template: np.ndarray
    frequencies: np.ndarray
    magnitudes: np.ndarray
    phases: np.ndarray
    x: torch.Tensor
    y: torch.Tensor
    pairs: torch.Tensor


def fourier_template_task(
    p: int,
    frequencies: list[int] | tuple[int, ...] | np.ndarray,
    magnitudes: list[float] | tuple[float, ...] | np.ndarray,
    *,
    seed: int = 0,
) -> TemplateTask:
    """Modular addition on a template (Kunin et al. 2025, arXiv:2506.06489, §5): the group
    element a is encoded as x_a = x(· − a), the cyclic shift of a fixed zero-mean template
    x ∈ R^p, and the target of (a, b) is x_{a+b}. The template is
    x[n] = (2/√p)·Σ_k m_k cos(2πkn/p + ψ_k), so its DFT has magnitude √p·m_k at frequency
    k (and p − k) and the per-entry scale stays O(1) as p grows; the phases ψ_k are drawn
    from ``seed``. A frequency k ∈ 1 … (p−1)/2 appears at most once; ``p`` must be prime."""
    p = _posint(p, "p", 3)
    if not _is_prime(p):
        raise ValueError(f"p must be prime, got {p}")
    try:
        k = np.asarray(frequencies).ravel()
        m = np.asarray(magnitudes, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError("frequencies and magnitudes must be numeric lists") from None
    if k.size == 0 or k.dtype.kind not in "iu":
        raise ValueError(f"frequencies must be a non-empty list of integers, got {frequencies!r}")
    if np.any(k < 1) or np.any(k > (p - 1) // 2) or np.unique(k).size != k.size:
        raise ValueError(f"frequencies must be distinct integers in 1..{(p - 1) // 2}, got {k}")
    if m.shape != k.shape or not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(
            f"magnitudes must be {k.size} positive finite numbers (one per frequency), got {m}"
        )
    psi = np.random.default_rng(seed).uniform(0.0, 2 * math.pi, k.size)
    n = np.arange(p)
    x = (2 / math.sqrt(p)) * (m[:, None] * np.cos(2 * math.pi * np.outer(k, n) / p + psi[:, None]))
    x = x.sum(0)
    shifted = np.stack([np.roll(x, a) for a in range(p)])  # shifted[a] = x_a
    a, b = (g.ravel() for g in np.meshgrid(n, n, indexing="ij"))
    inputs = np.concatenate([shifted[a], shifted[b]], 1)
    return TemplateTask(
        p,
        x,
        k.astype(np.int64),
        m,
        psi,
        torch.from_numpy(inputs),
        torch.from_numpy(shifted[(a + b) % p].copy()),
        torch.from_numpy(np.stack([a, b], 1).astype(np.int64)),
    )


def zipf_frequencies(n: int, alpha: float) -> np.ndarray:
    """p_i ∝ i^−(α+1), i = 1 … n, normalised (Michaud et al. 2023, eq. 2). ``alpha=0`` is
    not uniform; pass ``alpha=-1`` for uniform frequencies (the quanta study's control)."""
    n = _posint(n, "n")
    if not math.isfinite(alpha) or alpha < -1:
        raise ValueError(f"alpha must be finite and >= -1, got {alpha!r}")
    w = np.arange(1, n + 1, dtype=np.float64) ** -(alpha + 1.0)
    return w / w.sum()


@dataclass(frozen=True)
class SparseParityTask:
    """Inputs (n, n_tasks + n_bits) in {0, 1} as float: a one-hot control prefix naming
    the subtask, then the task bits. ``y`` (n,) int64 parity labels, ``task`` (n,) int64
    subtask ids (0 = most frequent), ``subsets`` (n_tasks, k) the bits each subtask reads,
    ``frequencies`` (n_tasks,) their probabilities."""

    x: torch.Tensor
    y: torch.Tensor
    task: torch.Tensor
    subsets: torch.Tensor
    frequencies: np.ndarray


def multitask_sparse_parity(
    n: int,
    *,
    n_tasks: int = 100,
    n_bits: int = 50,
    k: int = 3,
    alpha: float = 0.4,
    seed: int = 0,
    subset_seed: int = 0,
) -> SparseParityTask:
    """``n`` samples of multitask sparse parity (Michaud et al. 2023, §3).

    Subtask i reads its own k-subset S_i of the n_bits task bits (drawn once from
    ``subset_seed``, so train and test sets from different ``seed`` share the subtasks);
    a sample draws i with probability ∝ (i+1)^−(α+1), uniform task bits, and the label is
    the parity of the bits in S_i. The subsets are distinct (two subtasks reading one
    subset would be one quantum), so n_tasks may be at most C(n_bits, k)."""
    n = _posint(n, "n")
    n_tasks = _posint(n_tasks, "n_tasks")
    n_bits = _posint(n_bits, "n_bits")
    k = _posint(k, "k")
    if k > n_bits:
        raise ValueError(f"k must be at most n_bits={n_bits}, got {k}")
    if n_tasks > math.comb(n_bits, k):
        raise ValueError(
            f"n_tasks={n_tasks} distinct subtasks need at most C(n_bits, k) = "
            f"{math.comb(n_bits, k)} bit subsets"
        )
    freq = zipf_frequencies(n_tasks, alpha)
    sub_rng = np.random.default_rng(subset_seed)
    seen: set[tuple[int, ...]] = set()
    rows = []
    while len(rows) < n_tasks:  # rejection: fast while n_tasks is well below C(n_bits, k)
        s = tuple(int(b) for b in np.sort(sub_rng.choice(n_bits, k, replace=False)))
        if s not in seen:
            seen.add(s)
            rows.append(s)
    subsets = np.array(rows)
    rng = np.random.default_rng(seed)
    task = rng.choice(n_tasks, size=n, p=freq)
    bits = rng.integers(0, 2, size=(n, n_bits))
    y = bits[np.arange(n)[:, None], subsets[task]].sum(1) % 2
    x = np.zeros((n, n_tasks + n_bits), dtype=np.float32)
    x[np.arange(n), task] = 1.0
    x[:, n_tasks:] = bits
    return SparseParityTask(
        torch.from_numpy(x),
        torch.from_numpy(y.astype(np.int64)),
        torch.from_numpy(task.astype(np.int64)),
        torch.from_numpy(subsets.astype(np.int64)),
        freq,
    )


@dataclass(frozen=True)
class PlantedTask:
    """x (n, d_in) white Gaussian inputs, y = x·V·diag(s)·Uᵀ (n, d_out); ``u`` (d_out, r),
    ``v`` (d_in, r) orthonormal, ``s`` (r,) the planted singular values (descending)."""

    x: torch.Tensor
    y: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor


def planted_singular_task(
    n: int,
    d_in: int,
    d_out: int,
    singular_values: list[float] | tuple[float, ...] | np.ndarray,
    *,
    seed: int = 0,
    whiten: bool = True,
    dtype: torch.dtype = torch.float64,
) -> PlantedTask:
    """Regression onto a linear teacher with planted singular values (Saxe et al. 2014).

    With ``whiten`` the n inputs are rotated so that XᵀX/n = I exactly (needs n ≥ d_in):
    the input–output correlation Σ_yx = YᵀX/n is then exactly U·diag(s)·Vᵀ, the matrix
    whose modes the deep-linear theory learns one by one."""
    n, d_in, d_out = _posint(n, "n"), _posint(d_in, "d_in"), _posint(d_out, "d_out")
    s = np.asarray(singular_values, dtype=np.float64).ravel()
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"singular_values must be positive and finite, got {singular_values!r}")
    if s.size > min(d_in, d_out):
        raise ValueError(f"at most min(d_in, d_out) = {min(d_in, d_out)} singular values")
    if whiten and n < d_in:
        raise ValueError(f"whitening needs n >= d_in, got n={n}, d_in={d_in}")
    order = np.argsort(-s, kind="stable")
    s = s[order]
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d_out, s.size)))
    v, _ = np.linalg.qr(rng.standard_normal((d_in, s.size)))
    x = rng.standard_normal((n, d_in))
    if whiten:
        evals, evecs = np.linalg.eigh(x.T @ x / n)
        x = x @ evecs @ np.diag(evals**-0.5) @ evecs.T
    y = x @ v @ np.diag(s) @ u.T

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    return PlantedTask(t(x), t(y), t(u), t(s), t(v))
