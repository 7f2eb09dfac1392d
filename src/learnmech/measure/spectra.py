"""Spectra of data, kernels and weights: power-law exponents, effective dimension, MP bulk.

The "universal structure in data" statistics (REFERENCES §1, §5): natural data has
power-law covariance and kernel spectra, and their exponents set learning-curve and
scaling-law exponents (:mod:`learnmech.theory.exponents`). Trained weight matrices keep a
random-matrix (Marchenko–Pastur) bulk and grow heavy tails and outliers.

* :func:`eigenspectrum` — eigenvalues of a data covariance (or of a Gram matrix).
* :func:`powerlaw_exponent` — a in λ_k ≈ C·k^−a over a rank range, by least squares in
  log–log space, with its standard error and R².
* :func:`effective_rank` — exp(entropy) of the normalised spectrum (Roy & Vetterli 2007,
  eq. 2); :func:`participation_ratio` — (Σλ)²/Σλ² (e.g. Gao et al. 2017);
  :func:`stable_rank` — ‖W‖²_F/‖W‖²₂ (Rudelson & Vershynin 2007).
* :func:`marchenko_pastur_fit` — the noise level σ² of a weight matrix from its bulk (the
  median eigenvalue matched to the Marchenko–Pastur law, 1967), the bulk edges, the
  eigenvalues above the edge (outliers) and the KS distance of the bulk to the law.
* :func:`tail_exponent` — the power-law tail exponent of a sample by maximum likelihood
  with the lower cutoff chosen by minimal KS distance (Clauset, Shalizi & Newman 2009,
  eq. 3.1 and §3.3), with its standard error (α − 1)/√n_tail (their eq. 3.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learnmech.errors import UserError

__all__ = [
    "MPFit",
    "SpectrumFit",
    "TailFit",
    "effective_rank",
    "eigenspectrum",
    "marchenko_pastur_cdf",
    "marchenko_pastur_fit",
    "participation_ratio",
    "powerlaw_exponent",
    "stable_rank",
    "tail_exponent",
]


def _values(values: Any, name: str = "values", positive: bool = False) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be numbers") from None
    if v.size == 0:
        raise UserError(f"{name} is empty")
    if not np.all(np.isfinite(v)):
        raise UserError(f"{name} contains NaN or inf")
    if positive and np.any(v <= 0):
        raise UserError(f"{name} must be positive")
    return v


def _matrix(x: Any, name: str) -> torch.Tensor:
    t = (
        x.detach()
        if isinstance(x, torch.Tensor)
        else torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float64)))
    )
    if t.ndim != 2 or min(t.shape) == 0:
        raise UserError(f"{name} must be a non-empty 2-D matrix, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise UserError(f"{name} contains NaN or inf")
    return t


def eigenspectrum(x: Any, *, center: bool = True, gram: bool = False) -> np.ndarray:
    """Eigenvalues, largest first, of the covariance of the rows of ``x`` (n × d):
    (1/n)·XᵀX after centring; ``gram=True``: ``x`` is a symmetric PSD Gram matrix (e.g. a
    kernel on n points) and the eigenvalues of x/n are returned (the kernel operator's
    empirical spectrum). Computed from the smaller of the two products."""
    X = _matrix(x, "x")
    if gram:
        if X.shape[0] != X.shape[1]:
            raise UserError(f"a Gram matrix must be square, got {tuple(X.shape)}")
        ev = torch.linalg.eigvalsh(0.5 * (X + X.T)) / X.shape[0]
    else:
        if center:
            X = X - X.mean(0, keepdim=True)
        n, d = X.shape
        M = X.T @ X if d <= n else X @ X.T
        ev = torch.linalg.eigvalsh(M) / n
    return np.sort(ev.clamp_min(0).numpy())[::-1].copy()


@dataclass(frozen=True)
class SpectrumFit:
    """λ_k ≈ prefactor · k^−exponent over ranks ``k_min…k_max`` (1-based)."""

    exponent: float
    stderr: float
    prefactor: float
    k_min: int
    k_max: int
    r2: float

    def __call__(self, k: Any) -> np.ndarray:
        return self.prefactor * np.asarray(k, dtype=np.float64) ** (-self.exponent)


def powerlaw_exponent(values: Any, fit_range: tuple[int, int] | None = None) -> SpectrumFit:
    """Exponent a of λ_k ∝ k^−a: ordinary least squares of log λ on log k over the ranks
    ``fit_range = (k_min, k_max)`` (1-based, inclusive; default: 1 … the last rank whose
    eigenvalue exceeds 1e-12 of the largest). ``stderr`` is the OLS standard error; the
    residuals of adjacent eigenvalues are correlated, so treat it as a lower bound and
    prefer a bootstrap over samples when the data allow (the ``data-spectra`` study does)."""
    v = np.sort(_values(values))[::-1]
    if v[0] <= 0:
        raise UserError("the spectrum has no positive values")
    if fit_range is None:
        k_max = int(np.sum(v > v[0] * 1e-12))
        fit_range = (1, k_max)
    k_min, k_max = (int(fit_range[0]), int(fit_range[1]))
    if not (1 <= k_min < k_max <= v.size) or k_max - k_min < 2:
        raise UserError(
            f"fit_range must satisfy 1 <= k_min < k_max <= {v.size} with at "
            f"least 3 ranks, got {fit_range}"
        )
    k = np.arange(k_min, k_max + 1, dtype=np.float64)
    lam = v[k_min - 1 : k_max]
    if np.any(lam <= 0):
        raise UserError("the fit range contains non-positive eigenvalues; shorten it")
    A = np.stack([np.ones_like(k), np.log(k)], 1)
    y = np.log(lam)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    dof = k.size - 2
    se = math.sqrt(float(resid @ resid) / dof * np.linalg.inv(A.T @ A)[1, 1]) if dof else math.nan
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / ss if ss > 0 else 1.0
    return SpectrumFit(-float(coef[1]), se, float(math.exp(coef[0])), k_min, k_max, r2)


def _normalised(values: Any) -> np.ndarray:
    v = _values(values)
    if np.any(v < 0):
        raise UserError("spectrum values must be non-negative")
    s = v.sum()
    if not s > 0:
        raise UserError("the spectrum is all zeros")
    return v / s


def effective_rank(values: Any) -> float:
    """exp(−Σ p_k log p_k), p = values/Σ values (Roy & Vetterli 2007, eq. 2; they apply
    it to singular values — pass eigenvalues for the covariance version). r equal values
    give r."""
    p = _normalised(values)
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


def participation_ratio(values: Any) -> float:
    """(Σλ)²/Σλ² of eigenvalues λ; r equal values give r."""
    p = _normalised(values)
    return float(1.0 / (p * p).sum())


def stable_rank(w: Any) -> float:
    """‖W‖²_F/‖W‖²₂ (Rudelson & Vershynin 2007), ≤ rank(W)."""
    W = _matrix(w, "w")
    s = torch.linalg.svdvals(W)
    if not float(s[0]) > 0:
        raise UserError("w is all zeros")
    return float(s.square().sum() / s[0] ** 2)


# --------------------------------------------------------------------------------------
# Marchenko–Pastur


def marchenko_pastur_cdf(x: Any, sigma2: float, q: float, grid: int = 4097) -> np.ndarray:
    """CDF of the Marchenko–Pastur law with variance σ² and ratio q = M/N ≤ 1 (the ESD of
    (1/N)·WᵀW for an N×M matrix W of i.i.d. entries of variance σ²). Density
    √((λ₊ − x)(x − λ₋))/(2πσ²qx) on [λ₋, λ₊], λ± = σ²(1 ± √q)²; integrated on the grid
    x(t) = λ₋ + (λ₊ − λ₋)(1 − cos t)/2, where the integrand is smooth."""
    if not (0 < q <= 1) or not sigma2 > 0:
        raise UserError(f"need 0 < q <= 1 and sigma2 > 0, got q={q}, sigma2={sigma2}")
    lm, lp = sigma2 * (1 - math.sqrt(q)) ** 2, sigma2 * (1 + math.sqrt(q)) ** 2
    t = np.linspace(0, math.pi, grid)
    xt = lm + (lp - lm) * (1 - np.cos(t)) / 2
    w = (lp - lm) ** 2 / 4 * np.sin(t) ** 2 / (2 * math.pi * sigma2 * q * np.maximum(xt, 1e-300))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(t))])
    cdf /= cdf[-1]  # q = 1 puts the singularity at 0; normalise the quadrature
    return np.interp(np.asarray(x, dtype=np.float64), xt, cdf, left=0.0, right=1.0)


@dataclass(frozen=True)
class MPFit:
    """Marchenko–Pastur fit of a weight matrix's eigenvalue bulk."""

    sigma2: float
    q: float
    lambda_minus: float
    lambda_plus: float
    n_outliers: int
    outliers: np.ndarray
    ks: float  # KS distance between the bulk ESD and the fitted law
    eigenvalues: np.ndarray


def marchenko_pastur_fit(w: Any, *, edge_margin: float | None = None) -> MPFit:
    """Fit the MP law to the eigenvalues of (1/N)·WᵀW (W is N×M, transposed if needed so
    that q = M/N ≤ 1).

    σ² is chosen so that the median eigenvalue equals the MP median — robust to a few
    outliers, which move the median by at most their count. Eigenvalues above
    λ₊·(1 + margin) are outliers. The default margin, 4·N^{−2/3}·(1 + √q)^{−2/3}·q^{−1/6}
    relative to λ₊, is four Tracy–Widom scale units of the largest bulk eigenvalue
    (Johnstone 2001, Thm 1: centring (√N + √M)², scale (√N + √M)(1/√N + 1/√M)^{1/3},
    divided by N); the TW₁ law puts well under 1e-3 of its mass beyond that.
    """
    W = _matrix(w, "w")
    if W.shape[0] < W.shape[1]:
        W = W.T
    N, M = W.shape
    if M < 2:
        raise UserError("w needs at least 2 columns and 2 rows")
    q = M / N
    ev = np.sort(torch.linalg.eigvalsh(W.T @ W / N).clamp_min(0).numpy())
    med = float(np.median(ev))
    if not med > 0:
        raise UserError("w has too many zero eigenvalues for a Marchenko–Pastur fit")
    # the MP median for σ² = 1, then scale (the law scales with σ²)
    xs = np.linspace((1 - math.sqrt(q)) ** 2, (1 + math.sqrt(q)) ** 2, 20001)
    m1 = float(np.interp(0.5, marchenko_pastur_cdf(xs, 1.0, q), xs))
    sigma2 = med / m1
    lm, lp = sigma2 * (1 - math.sqrt(q)) ** 2, sigma2 * (1 + math.sqrt(q)) ** 2
    if edge_margin is None:
        edge_margin = 4 * N ** (-2 / 3) * (1 + math.sqrt(q)) ** (-2 / 3) * q ** (-1 / 6)
    out = ev[ev > lp * (1 + edge_margin)]
    bulk = ev[ev <= lp * (1 + edge_margin)]
    emp = np.arange(1, bulk.size + 1) / bulk.size
    F = marchenko_pastur_cdf(bulk, sigma2, q)
    ks = float(np.max(np.maximum(np.abs(emp - F), np.abs(emp - 1 / bulk.size - F))))
    return MPFit(sigma2, q, lm, lp, int(out.size), out[::-1].copy(), ks, ev[::-1].copy())


# --------------------------------------------------------------------------------------
# Clauset–Shalizi–Newman tail exponent


@dataclass(frozen=True)
class TailFit:
    """p(x) ∝ x^−alpha for x ≥ xmin, by maximum likelihood (Clauset et al. 2009)."""

    alpha: float
    stderr: float
    xmin: float
    n_tail: int
    ks: float


def tail_exponent(
    values: Any, *, xmin: float | None = None, min_tail: int = 10, max_candidates: int = 1000
) -> TailFit:
    """Continuous power-law tail by MLE, α̂ = 1 + n/Σ ln(xᵢ/x_min) (Clauset et al. 2009,
    eq. 3.1), with x_min minimising the KS distance between the tail and the fit (§3.3)
    unless given; standard error (α̂ − 1)/√n (eq. 3.2). Candidates for x_min are the
    sample values leaving at least ``min_tail`` points above (at most ``max_candidates``
    of them, evenly spaced in rank)."""
    x = np.sort(_values(values, positive=True))
    n = x.size
    if n < min_tail + 1:
        raise UserError(f"need more than {min_tail} positive values, got {n}")

    def fit(i: int) -> tuple[float, float]:
        tail = x[i:]
        s = np.log(tail / tail[0]).sum()
        if not s > 0:
            return math.nan, math.inf
        a = 1 + tail.size / s
        emp = np.arange(tail.size) / tail.size
        model = 1 - (tail / tail[0]) ** (1 - a)
        return a, float(np.max(np.abs(emp - model)))

    if xmin is not None:
        if not (math.isfinite(xmin) and xmin > 0):
            raise UserError(f"xmin must be positive, got {xmin!r}")
        i = int(np.searchsorted(x, xmin))
        if n - i < min_tail:
            raise UserError(f"fewer than {min_tail} values are >= xmin = {xmin}")
        a, ks = fit(i)
        return TailFit(a, (a - 1) / math.sqrt(n - i), float(x[i]), n - i, ks)
    last = n - min_tail
    cands = np.unique(np.linspace(0, last, min(max_candidates, last + 1)).round().astype(int))
    best = (math.inf, 0, math.nan)
    for i in cands:
        a, ks = fit(int(i))
        if ks < best[0]:
            best = (ks, int(i), a)
    ks, i, a = best
    if not math.isfinite(a):
        raise UserError("no power-law tail could be fitted (the values are all equal)")
    return TailFit(a, (a - 1) / math.sqrt(n - i), float(x[i]), n - i, ks)
