"""Units of learning, measured on any model: Fourier features over a cyclic group, the
rank of weight updates over a run, and per-subtask learning curves.

* :func:`fourier_power` — the power of a (p, d) array (an embedding, or a weight matrix's
  input side) at each frequency of Z_p (Nanda et al. 2023, "Progress measures for grokking
  via mechanistic interpretability", §4: embeddings of modular addition are sparse in
  the Fourier basis). :func:`neuron_frequencies` gives each neuron's dominant frequency
  and the fraction of its power there (Gromov 2023: in the analytic solution every neuron
  uses one frequency). :func:`restricted_excluded_loss` are Nanda et al.'s progress
  measures on the full (a, b) grid of logits. :func:`frequency_fit` is how much of each
  frequency of a cyclic target a model's output has learned (the per-feature learning
  curve of Kunin et al. 2025, "Alternating gradient flows", §5).
* :func:`effective_rank` — exp of the entropy of the normalised singular values (Roy &
  Vetterli 2007); :func:`update_ranks` tracks it (and the count of singular values above
  a fraction of the largest) for ΔW_t = W_t − W_0 over checkpoints, and :func:`rank_jumps`
  finds the steps where the count rises (the saddle-to-saddle steps of Saxe et al. 2014,
  Jacot et al. 2021; Kunin et al. 2025, "Alternating gradient flows").
* :func:`subtask_curves` and :func:`onset_times` — per-subtask loss curves from
  per-example losses and the step at which each subtask is learned (Michaud et al. 2023:
  quanta are learned abruptly, in order of frequency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "RankTrajectory",
    "effective_rank",
    "fourier_power",
    "frequency_components",
    "frequency_fit",
    "neuron_frequencies",
    "onset_times",
    "rank_jumps",
    "restricted_excluded_loss",
    "subtask_curves",
    "update_ranks",
]


def _array(x: Any, name: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        a = x.detach().cpu().double().numpy()
    else:
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be numeric, got {type(x).__name__}") from None
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in dims:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, dims))} dimensions, got shape {a.shape}"
        )
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


# -- Fourier features over Z_p ------------------------------------------------------------
def fourier_power(x: Any, axis: int = 0) -> np.ndarray:
    """Power at each frequency k = 0 … ⌊p/2⌋ of the Z_p axis ``axis`` (length p) of ``x``,
    summed over the other axes: P_k = Σ |X̂_k|² (+ |X̂_{p−k}|² for 0 < k < p/2, the same
    real frequency), with X̂ the unitary DFT, so Σ_k P_k = ‖x‖² (Parseval)."""
    a = _array(x, "x", (1, 2, 3))
    a = np.moveaxis(a, axis, 0)
    p = a.shape[0]
    f = np.fft.fft(a, axis=0) / math.sqrt(p)
    power = (np.abs(f) ** 2).reshape(p, -1).sum(1)
    half = p // 2
    out = np.empty(half + 1)
    out[0] = power[0]
    for k in range(1, half + 1):
        out[k] = power[k] + (power[p - k] if p - k != k else 0.0)
    return out


@dataclass(frozen=True)
class NeuronFrequencies:
    """Per neuron: the dominant nonzero frequency and the fraction of the neuron's
    (non-constant) power at it."""

    frequency: np.ndarray
    concentration: np.ndarray


def neuron_frequencies(w: Any) -> NeuronFrequencies:
    """For a (p, m) matrix — the weights from a one-hot Z_p input to m neurons — each
    neuron's dominant frequency k ∈ 1 … ⌊p/2⌋ and the fraction of its non-constant power
    at k (1 for the analytic solution's cos(2πk·a/p + φ) neurons; ≈ 2/(p−1) for noise)."""
    a = _array(w, "w", 2)
    p = a.shape[0]
    f = np.fft.fft(a, axis=0) / math.sqrt(p)
    power = np.abs(f) ** 2  # (p, m)
    half = p // 2
    per = np.stack(
        [power[k] + (power[p - k] if p - k != k else 0.0) for k in range(1, half + 1)]
    )  # (half, m)
    total = per.sum(0)
    best = per.argmax(0)
    conc = np.where(total > 0, per.max(0) / np.where(total > 0, total, 1.0), 0.0)
    return NeuronFrequencies(best + 1, conc)


def frequency_components(targets: Any, frequencies: Sequence[int]) -> np.ndarray:
    """The part of ``targets`` (n, p) at each frequency k along its last (cyclic) axis,
    i.e. the inverse DFT of the bins ±k alone: (K, n, p). They sum to the targets when the
    frequencies cover every nonzero bin of a zero-mean target."""
    y = _array(targets, "targets", 2)
    p = y.shape[1]
    ks = np.asarray(frequencies).ravel()
    if ks.size == 0 or ks.dtype.kind not in "iu" or np.any(ks < 1) or np.any(2 * ks > p):
        raise ValueError(f"frequencies must be integers in 1..{p // 2}, got {frequencies!r}")
    spec = np.fft.rfft(y, axis=1)
    out = np.empty((ks.size, *y.shape))
    for i, k in enumerate(ks):
        keep = np.zeros_like(spec)
        keep[:, k] = spec[:, k]
        out[i] = np.fft.irfft(keep, n=p, axis=1)
    return out


def frequency_fit(outputs: Any, targets: Any, frequencies: Sequence[int]) -> np.ndarray:
    """How much of the target's frequency-k part the outputs carry: ⟨f, y_k⟩/⟨y_k, y_k⟩
    for each k, where y_k is :func:`frequency_components` of ``targets`` (n, p) and
    ``outputs`` is (n, p) or a stack (S, n, p). 0 before the feature is learned, 1 once
    it is: (K,) or (S, K). A frequency the target lacks is an error (nothing to learn)."""
    f = _array(outputs, "outputs", (2, 3))
    comp = frequency_components(targets, frequencies)
    if f.shape[-2:] != comp.shape[1:]:
        raise ValueError(f"outputs {f.shape} do not match targets {comp.shape[1:]}")
    norm = np.einsum("knp,knp->k", comp, comp)
    total = float(np.sum(_array(targets, "targets", 2) ** 2))
    empty = norm <= 1e-24 * max(total, 1e-300)  # round-off, not power
    if np.any(empty):
        missing = np.asarray(frequencies).ravel()[empty]
        raise ValueError(f"the targets have no power at frequencies {missing.tolist()}")
    return np.einsum("...np,knp->...k", f, comp) / norm


def restricted_excluded_loss(
    logits: Any, p: int, key_frequencies: Sequence[int], labels: Any | None = None
) -> tuple[float, float]:
    """Nanda et al. (2023, §5.1) progress measures for modular addition.

    ``logits`` (p, p, p): the model's logits for every pair (a, b) and answer c. In the
    2-D Fourier basis over (a, b), the algorithm of cos(w(a + b − c)) lives on the
    components (w, w) and (−w, −w) (and the constant). *Restricted* loss keeps only those
    components for the key frequencies (and the mean over (a, b)); *excluded* loss removes
    them. Cross-entropy against (a + b) mod p, or ``labels`` (p, p), over the full grid.
    """
    lg = _array(logits, "logits", 3)
    if lg.shape != (p, p, p):
        raise ValueError(f"logits must have shape (p, p, p) = {(p, p, p)}, got {lg.shape}")
    keys = sorted({int(k) % p for k in key_frequencies} - {0})
    if not keys:
        raise ValueError("key_frequencies must name at least one nonzero frequency")
    f = np.fft.fft2(lg, axes=(0, 1))
    mask = np.zeros((p, p), dtype=bool)
    mask[0, 0] = True
    for k in keys:
        mask[k, k] = mask[p - k, p - k] = True
    restricted = np.fft.ifft2(np.where(mask[:, :, None], f, 0), axes=(0, 1)).real
    keep_excl = mask.copy()
    keep_excl[0, 0] = False
    excluded = np.fft.ifft2(np.where(keep_excl[:, :, None], 0, f), axes=(0, 1)).real
    if labels is None:
        a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        y = (a + b) % p
    else:
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (p, p):
            raise ValueError(f"labels must have shape (p, p), got {y.shape}")

    def ce(z: np.ndarray) -> float:
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return float(-np.take_along_axis(logp, y[:, :, None], -1).mean())

    return ce(restricted), ce(excluded)


# -- ranks of weight updates ----------------------------------------------------------------
def effective_rank(m: Any) -> float:
    """exp(H(σ/Σσ)) of a matrix's singular values σ (Roy & Vetterli 2007): 1 for rank
    one, r for r equal singular values, 0 for the zero matrix."""
    a = _array(m, "m", 2)
    s = np.linalg.svd(a, compute_uv=False)
    total = s.sum()
    if total <= 0:
        return 0.0
    q = s[s > 0] / total
    return float(np.exp(-(q * np.log(q)).sum()))


@dataclass(frozen=True)
class RankTrajectory:
    """Per checkpoint: the effective rank of ΔW_t and the number of its singular values
    above ``rel_threshold`` × the final update's largest one, and the singular values."""

    steps: np.ndarray
    effective: np.ndarray
    count: np.ndarray
    singular_values: np.ndarray  # (T, min(shape))


def update_ranks(
    weights: Sequence[Any], steps: Sequence[int] | None = None, rel_threshold: float = 0.1
) -> RankTrajectory:
    """Ranks of ΔW_t = W_t − W_0 over a run's checkpoints ``weights`` (W_0 first).

    The count uses a fixed threshold — ``rel_threshold`` times the largest singular value
    of the *final* update — so that a mode counts once it has grown to that fraction of
    the learned scale (a relative-to-current threshold would count a mode that is still
    at its small-init size as soon as it is the largest)."""
    if len(weights) < 2:
        raise ValueError("weights needs at least two checkpoints (W_0 and one more)")
    if not (0 < rel_threshold < 1):
        raise ValueError(f"rel_threshold must be in (0, 1), got {rel_threshold!r}")
    ws = [_array(w, f"weights[{i}]", 2) for i, w in enumerate(weights)]
    if len({w.shape for w in ws}) > 1:
        raise ValueError("every checkpoint must have the same shape")
    st = np.arange(len(ws)) if steps is None else np.asarray(steps)
    if st.shape != (len(ws),):
        raise ValueError(f"steps must have one entry per checkpoint ({len(ws)})")
    svals = np.stack([np.linalg.svd(w - ws[0], compute_uv=False) for w in ws])
    top = svals[-1, 0]
    count = (svals > rel_threshold * top).sum(1) if top > 0 else np.zeros(len(ws), int)
    eff = np.array([_entropy_rank(s) for s in svals])
    return RankTrajectory(st, eff, count, svals)


def _entropy_rank(s: np.ndarray) -> float:
    total = s.sum()
    if total <= 0:
        return 0.0
    q = s[s > 0] / total
    return float(np.exp(-(q * np.log(q)).sum()))


def rank_jumps(traj: RankTrajectory) -> list[tuple[int, int]]:
    """(step, new count) at every checkpoint where the count of learned modes rises: the
    steps of a saddle-to-saddle staircase, in order."""
    out = []
    for i in range(1, len(traj.count)):
        if traj.count[i] > traj.count[i - 1]:
            out.append((int(traj.steps[i]), int(traj.count[i])))
    return out


# -- per-subtask learning curves ------------------------------------------------------------
def subtask_curves(losses: Any, task: Any, n_tasks: int | None = None) -> np.ndarray:
    """(T, n_tasks) mean loss of each subtask at each of T checkpoints, from per-example
    losses (T, n) and the examples' subtask ids (n,). A subtask without examples is NaN."""
    lo = _array(losses, "losses", (1, 2))
    if lo.ndim == 1:
        lo = lo[None]
    t = np.asarray(task.detach().cpu() if isinstance(task, torch.Tensor) else task)
    if t.shape != (lo.shape[1],) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"task must be {lo.shape[1]} integer ids, got {t.dtype} {t.shape}")
    if t.min() < 0:
        raise ValueError("task ids must be non-negative")
    k = int(t.max()) + 1 if n_tasks is None else int(n_tasks)
    sums = np.zeros((lo.shape[0], k))
    np.add.at(sums.T, t, lo.T)
    counts = np.bincount(t, minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / np.where(counts > 0, counts, np.nan)


def onset_times(curves: Any, steps: Sequence[float], threshold: float) -> np.ndarray:
    """First step at which each subtask's loss falls to ``threshold`` or below, linearly
    interpolated between checkpoints (NaN if never): (n_tasks,)."""
    c = np.asarray(curves, dtype=np.float64)  # NaN allowed: a subtask without examples
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"curves must be a non-empty (T, n_tasks) array, got shape {c.shape}")
    st = np.asarray(steps, dtype=np.float64)
    if st.shape != (c.shape[0],):
        raise ValueError(f"steps must have one entry per checkpoint ({c.shape[0]})")
    out = np.full(c.shape[1], np.nan)
    for j in range(c.shape[1]):
        col = c[:, j]
        hit = np.nonzero(col <= threshold)[0]
        if hit.size == 0:
            continue
        i = hit[0]
        if i == 0 or not np.isfinite(col[i - 1]):
            out[j] = st[i]
        else:  # interpolate the crossing between checkpoints i−1 and i
            frac = (col[i - 1] - threshold) / (col[i - 1] - col[i])
            out[j] = st[i - 1] + frac * (st[i] - st[i - 1])
    return out
