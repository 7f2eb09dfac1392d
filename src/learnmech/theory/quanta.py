"""The quantization model of neural scaling (Michaud, Liu, Girit & Tegmark 2023).

Learning decomposes into discrete "quanta" used with Zipf frequencies p_k ∝ k^−(α+1)
(k = 1, 2, …). A model that has learned the n most frequent quanta has expected loss

    L(n) = b · Σ_{k>n} p_k                       (eq. 3; b: the loss of an unlearned quantum)

which for large n is ≈ b·n^−α / (α·Z), Z = Σ_k k^−(α+1) (eq. 4). Two a-priori scaling laws
follow from α alone (§2):

* parameters: if the number of quanta a model can hold grows in proportion to its
  parameters N, then L ∝ N^−α;
* data: a quantum is learned once it has been seen about τ times; after D samples the
  learned quanta are those with D·p_k ≥ τ, so n(D) ∝ D^{1/(α+1)} and L ∝ D^−α/(α+1).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["loss_after_learning", "quanta_learned_from_data", "scaling_exponents"]


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 for a power law, got {alpha}")
    return float(alpha)


def scaling_exponents(alpha: float) -> dict[str, float]:
    """The predicted loss exponents from the Zipf exponent: L ∝ N^−α (parameters) and
    L ∝ D^−α/(α+1) (data) (Michaud et al. 2023, §2)."""
    a = _check_alpha(alpha)
    return {"params": a, "data": a / (a + 1.0)}


def loss_after_learning(
    n_learned: np.ndarray | float,
    frequencies: np.ndarray | None = None,
    *,
    alpha: float | None = None,
    unlearned_loss: float = math.log(2),
) -> np.ndarray:
    """L(n) = b·Σ_{k>n} p_k (b defaults to log 2, the cross-entropy of a parity bit at
    chance), for a finite list of quantum ``frequencies`` (most frequent first; fractional
    n interpolates between whole quanta) or, with ``alpha``, for infinitely many Zipf
    quanta: Σ_{k>n} p_k = ζ(α+1, n+1)/ζ(α+1) (Hurwitz zeta), exact."""
    if (frequencies is None) == (alpha is None):
        raise ValueError("give exactly one of frequencies and alpha")
    n = np.asarray(n_learned, dtype=np.float64)
    if alpha is not None:
        from scipy.special import zeta

        a = _check_alpha(alpha)
        return unlearned_loss * zeta(a + 1.0, np.maximum(n, 0) + 1.0) / zeta(a + 1.0)
    p = np.asarray(frequencies, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("frequencies must be a non-empty list of non-negative numbers")
    tail = np.concatenate([np.cumsum(p[::-1])[::-1], [0.0]])  # tail[k] = Σ_{j≥k} p_j
    n = np.clip(n, 0, p.size)
    lo = np.floor(n).astype(int)
    hi = np.minimum(lo + 1, p.size)
    frac = n - lo
    return unlearned_loss * ((1 - frac) * tail[lo] + frac * tail[hi])


def quanta_learned_from_data(
    samples: np.ndarray | float,
    frequencies: np.ndarray | None = None,
    *,
    alpha: float | None = None,
    threshold: float,
) -> np.ndarray:
    """Number of quanta seen at least ``threshold`` times in expectation after
    ``samples`` draws: #{k : samples·p_k ≥ threshold}; with ``alpha`` (infinitely many
    Zipf quanta) ⌊(samples/(threshold·ζ(α+1)))^{1/(α+1)}⌋."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    if (frequencies is None) == (alpha is None):
        raise ValueError("give exactly one of frequencies and alpha")
    d = np.asarray(samples, dtype=np.float64)
    if alpha is not None:
        from scipy.special import zeta

        a = _check_alpha(alpha)
        return np.floor((d / (threshold * zeta(a + 1.0))) ** (1.0 / (a + 1.0)))
    p = np.sort(np.asarray(frequencies, dtype=np.float64))[::-1]
    return (d[..., None] * p >= threshold).sum(-1)
