"""Kernel and linear ridge regression learning curves from a spectrum (eigenlearning).

Kernel eigenvalues λ_i (with respect to the data distribution), target eigencoefficients
v_i, n samples, ridge δ and label-noise variance ε² determine the average test error of
kernel ridge regression f̂ = K(x, X)(K + δI)⁻¹y (Simon, Dickens, Karkada & DeWeese 2023,
"The eigenlearning framework", eq. 2–6; equivalently Bordelon, Canatar & Pehlevan 2020 and,
for isotropic linear regression, Hastie, Montanari, Rosset & Tibshirani 2022)::

    κ > 0 solves         Σ_i λ_i/(λ_i + κ) + δ/κ = n
    learnability         𝓛_i = λ_i/(λ_i + κ)
    overfitting factor   E₀ = n / (n − Σ_i 𝓛_i²)
    test MSE             E₀ (Σ_i (1 − 𝓛_i)² v_i² + ε²)
    train MSE            (δ / (nκ))² · test MSE

The test MSE is against *noisy* test labels (it tends to ε² as n → ∞). The formulas are the
deterministic equivalent of the risk: exact for Gaussian features as n, M → ∞ at fixed
ratio, and accurate to relative O(n^{-1/2}) or better at finite n for well-behaved
features (Cheng & Montanari 2022; Misiakiewicz & Saeed 2024).

Numerics. n − Σ𝓛² is evaluated as Σ𝓛(1 − 𝓛) + δ/κ and 1 − 𝓛 as κ/(λ + κ), so nothing
cancels, and spectra spanning hundreds of orders of magnitude are fine. κ is found by a
safeguarded Halley iteration: first on a log-binned compression of the spectrum (cheap),
then on the full spectrum in blocks, typically two passes. Ridgeless (δ = 0) with n at or
above the number M₊ of positive eigenvalues has κ = 0: 𝓛_i = 1 on those modes,
E₀ = n/(n − M₊) (infinite at n = M₊, the interpolation peak) and train MSE
(1 − M₊/n)(Σ_{λ_i=0} v_i² + ε²), the limits of the formulas as δ → 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learnmech.errors import UserError

__all__ = [
    "EigenlearningPrediction",
    "bcp_generalization_error",
    "kare",
    "optimal_ridge",
    "predict",
    "solve_kappa",
]

_BLOCK_ELEMS = 1 << 19  # modes × points per block (4 MiB of float64)
_BINS = 8192  # log-λ bins of the compressed spectrum used for the first guess


@dataclass(frozen=True)
class EigenlearningPrediction:
    """Predicted learning curve values; every array has the broadcast shape of (n, ridge).

    Attributes:
        n, ridge: the sample sizes and ridges, broadcast against each other.
        kappa: the effective regularization κ.
        e0: overfitting factor E₀ = n/(n − Σ𝓛²).
        dof: Σ𝓛_i, the effective number of learned modes (= n − δ/κ).
        test_mse: E₀(Σ(1 − 𝓛_i)² v_i² + ε²), against noisy test labels.
        train_mse: (δ/(nκ))² · test MSE.
        bias: E₀ Σ(1 − 𝓛_i)² v_i², the part of the test MSE from the target.
        variance: (E₀ − 1)ε², the excess test MSE caused by label noise.
        eigenvalues, target_power: the spectrum used (v_i², summed over outputs).
    """

    n: np.ndarray
    ridge: np.ndarray
    kappa: np.ndarray
    e0: np.ndarray
    dof: np.ndarray
    test_mse: np.ndarray
    train_mse: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    noise_var: float
    eigenvalues: np.ndarray
    target_power: np.ndarray

    def learnability(self) -> np.ndarray:
        """Per-mode learnability 𝓛_i = λ_i/(λ_i + κ), shape ``kappa.shape + (M,)``.

        𝓛_i is the fraction of target mode i that the average learned function recovers:
        E[v̂_i] = 𝓛_i v_i (Simon et al. 2023, eq. 5).
        """
        lam = self.eigenvalues
        k = self.kappa[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = lam / (lam + k)
        return np.where(lam > 0, np.where(k > 0, out, 1.0), 0.0)

    def function_learnability(self) -> np.ndarray:
        """Learnability of the target function, Σ𝓛_i v_i² / Σv_i² (Simon et al. 2023, §4)."""
        total = float(self.target_power.sum())
        if total == 0:
            return np.full(self.kappa.shape, np.nan)
        return (self.learnability() * self.target_power).sum(-1) / total


def _as_spectrum(eigenvalues: Any, target_coeffs: Any) -> tuple[np.ndarray, np.ndarray]:
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise UserError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise UserError("eigenvalues contain NaN or inf")
    if np.any(lam < 0):
        raise UserError(
            f"eigenvalues must be non-negative (a kernel is PSD), got min {lam.min():.3g}"
        )
    v = np.asarray(target_coeffs, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] != lam.size:
        raise UserError(
            f"target_coeffs must have one row per eigenvalue ({lam.size}), got shape {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise UserError("target_coeffs contain NaN or inf")
    return lam, np.sum(v * v, axis=1)


def _as_points(n: Any, ridge: Any) -> tuple[np.ndarray, np.ndarray]:
    nn = np.asarray(n, dtype=np.float64)
    dd = np.asarray(ridge, dtype=np.float64)
    if nn.size == 0 or dd.size == 0:
        raise UserError("n and ridge must not be empty")
    if not np.all(np.isfinite(nn)) or np.any(nn <= 0):
        raise UserError(f"n must be positive and finite, got {nn.ravel()[:5]}")
    if not np.all(np.isfinite(dd)) or np.any(dd < 0):
        raise UserError(f"ridge must be non-negative and finite, got {dd.ravel()[:5]}")
    try:
        return np.broadcast_arrays(nn, dd)
    except ValueError:
        raise UserError(
            f"n (shape {nn.shape}) and ridge (shape {dd.shape}) do not broadcast"
        ) from None


class _Sums:
    """Σ_i w_i λ_i C_i^p with C_i = 1/(λ_i + κ), for many κ at once, in blocks."""

    def __init__(self, lam: np.ndarray, weight: np.ndarray, vpow: np.ndarray) -> None:
        self.lam = torch.from_numpy(np.ascontiguousarray(lam))
        w = torch.from_numpy(np.ascontiguousarray(weight))
        # rows: w·λ (for C, C², C³) and w·v² (for C²)
        self.rows = torch.stack([w * self.lam, w * torch.from_numpy(vpow)])
        self.rounding = 8 * np.finfo(np.float64).eps * math.sqrt(lam.size)

    def __call__(self, kappa: np.ndarray, want_bias: bool) -> dict[str, np.ndarray]:
        kap = torch.from_numpy(np.ascontiguousarray(kappa))
        P = kap.numel()
        M = self.lam.numel()
        s1 = torch.zeros(P, dtype=torch.float64)
        s2 = torch.zeros(2, P, dtype=torch.float64)
        s3 = torch.zeros(P, dtype=torch.float64)
        block = max(256, _BLOCK_ELEMS // max(P, 1))
        rows2 = self.rows if want_bias else self.rows[:1]
        for i in range(0, M, block):
            lam = self.lam[i : i + block]
            c = lam[:, None] + kap[None, :]
            c.reciprocal_()
            r = self.rows[0, i : i + block]
            s1 += r @ c
            c2 = c * c
            s2[: rows2.shape[0]] += rows2[:, i : i + block] @ c2
            c2 *= c
            s3 += r @ c2
        return {"lc": s1.numpy(), "lc2": s2[0].numpy(), "vc2": s2[1].numpy(), "lc3": s3.numpy()}


def _halley(
    sums: _Sums,
    n: np.ndarray,
    delta: np.ndarray,
    kappa: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    tol: float,
    maxiter: int,
    final: bool,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Safeguarded Halley on h(κ) = Σλ/(λ+κ) + δ/κ − n (convex, decreasing in κ)."""
    kappa = kappa.copy()
    lo, hi = lo.copy(), hi.copy()
    active = np.ones(kappa.shape, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        k = kappa[idx]
        s = sums(k, want_bias=final)
        for key, val in s.items():
            out.setdefault(key, np.zeros(kappa.shape))[idx] = val
        d = delta[idx]
        h = s["lc"] + d / k - n[idx]
        dk = d / k  # δ = 0 stays 0 even where κ² or κ³ would underflow
        h1 = -s["lc2"] - dk / k
        h2 = 2 * s["lc3"] + 2 * (dk / k) / k
        lo[idx] = np.where(h > 0, k, lo[idx])
        hi[idx] = np.where(h < 0, k, hi[idx])
        newton = h / h1
        step = newton / (1 - 0.5 * newton * h2 / h1)
        cand = k - step
        bad = ~np.isfinite(cand) | (cand <= lo[idx]) | (cand >= hi[idx])
        cand = np.where(bad, np.sqrt(lo[idx] * hi[idx]), cand)
        # converged: a tiny step, or h at the rounding level of its own terms (a sum of
        # M terms carries ~√M·eps relative rounding error)
        noise = sums.rounding * (s["lc"] + d / k + n[idx])
        done = (np.abs(step) <= tol * k) | (np.abs(h) <= noise)
        kappa[idx] = np.where(done, k, cand)
        active[idx[done]] = False
        # a bracket that has collapsed is converged too
        shut = hi[idx] <= lo[idx] * (1 + tol)
        active[idx[shut]] = False
    return kappa, out


def _bracket(
    lam_pos: np.ndarray, n: np.ndarray, delta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds on κ (h(lo) > 0 > h(hi))."""
    m_pos = lam_pos.size
    hi = (lam_pos.sum() + delta) / n * (1 + 1e-12)
    lo = np.zeros_like(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        if m_pos:
            # with all M₊ modes ≥ λ_min: Σλ/(λ+κ) > n whenever κ < λ_min(M₊ − n)/n
            lo = np.where(n < m_pos, 0.5 * lam_pos.min() * (m_pos - n) / n, 0.0)
        lo = np.maximum(lo, np.where(delta > 0, 0.5 * delta / n, 0.0))
    return lo, hi


def _compressed(lam_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-binned spectrum: bin means of λ and counts (first moments match exactly)."""
    if lam_pos.size <= 4 * _BINS:
        return lam_pos, np.ones_like(lam_pos)
    logs = np.log(lam_pos)
    a, b = logs.min(), logs.max()
    if b - a < 1e-12:
        return lam_pos[:1], np.array([float(lam_pos.size)])
    idx = np.minimum(((logs - a) / (b - a) * _BINS).astype(np.int64), _BINS - 1)
    counts = np.bincount(idx, minlength=_BINS).astype(np.float64)
    sums = np.bincount(idx, weights=lam_pos, minlength=_BINS)
    keep = counts > 0
    return sums[keep] / counts[keep], counts[keep]


def solve_kappa(
    eigenvalues: Any, n: Any, ridge: Any = 0.0, tol: float = 1e-12, maxiter: int = 100
) -> np.ndarray:
    """The effective regularization κ solving Σλ_i/(λ_i + κ) + δ/κ = n (0 when δ = 0, n ≥ M₊)."""
    lam, _ = _as_spectrum(eigenvalues, np.zeros_like(np.asarray(eigenvalues, np.float64)))
    nn, dd = _as_points(n, ridge)
    return _solve(lam[lam > 0], nn.ravel(), dd.ravel(), tol, maxiter)[0].reshape(nn.shape)


def _solve(
    lam_pos: np.ndarray,
    n: np.ndarray,
    delta: np.ndarray,
    tol: float,
    maxiter: int,
    vpow_pos: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    m_pos = lam_pos.size
    zero_kappa = (delta == 0) & (n >= m_pos)
    kappa = np.zeros_like(n)
    sums_out = {k: np.zeros_like(n) for k in ("lc", "lc2", "vc2", "lc3")}
    solve = ~zero_kappa
    if np.any(solve) and m_pos:
        nn, dd = n[solve], delta[solve]
        lo, hi = _bracket(lam_pos, nn, dd)
        # First guess: the same equation on the compressed spectrum (cheap, ~1e-6 accurate).
        lam_c, cnt = _compressed(lam_pos)
        k0 = np.sqrt(np.maximum(lo, hi * 1e-300) * hi)
        guess, _ = _halley(
            _Sums(lam_c, cnt, np.zeros_like(lam_c)), nn, dd, k0, lo, hi, 1e-10, 400, False
        )
        guess = np.clip(guess, lo * (1 + 1e-9), hi * (1 - 1e-9)) if m_pos else guess
        vp = vpow_pos if vpow_pos is not None else np.zeros_like(lam_pos)
        k, s = _halley(
            _Sums(lam_pos, np.ones_like(lam_pos), vp), nn, dd, guess, lo, hi, tol, maxiter, True
        )
        kappa[solve] = k
        for key in sums_out:
            sums_out[key][solve] = s[key]
    elif np.any(solve):  # no positive modes and δ > 0: Σ = 0, κ = δ/n
        kappa[solve] = delta[solve] / n[solve]
    return kappa, sums_out, zero_kappa


def predict(
    eigenvalues: Any,
    target_coeffs: Any,
    n: Any,
    ridge: Any = 0.0,
    noise_var: float = 0.0,
    tol: float = 1e-12,
) -> EigenlearningPrediction:
    """Predicted test and train MSE of kernel ridge regression (Simon et al. 2023, eq. 2–6).

    Args:
        eigenvalues: (M,) kernel eigenvalues λ_i ≥ 0 with respect to the data distribution
            (eigenvalues of the Gram matrix divided by its size; see :mod:`.spectra`).
        target_coeffs: (M,) or (M, C) target coefficients v_i in the orthonormal eigenbasis;
            several outputs are summed (the MSE of a vector output is the sum over outputs).
        n: sample size(s); any shape, broadcast against ``ridge``; need not be integer.
        ridge: ridge δ ≥ 0 in the convention f̂ = K(x, X)(K + δI)⁻¹y (unnormalized K);
            the 1/n-normalized ridge λ of (K/n + λI) is δ = nλ.
        noise_var: label noise variance ε².
        tol: relative tolerance on κ.
    """
    lam, vpow = _as_spectrum(eigenvalues, target_coeffs)
    if not math.isfinite(noise_var) or noise_var < 0:
        raise UserError(f"noise_var must be a non-negative number, got {noise_var!r}")
    n_b, d_b = _as_points(n, ridge)
    shape = n_b.shape
    nn, dd = n_b.ravel().copy(), d_b.ravel().copy()
    pos = lam > 0
    lam_pos, v_pos = lam[pos], vpow[pos]
    v_zero = float(vpow[~pos].sum())
    m_pos = lam_pos.size
    kappa, s, zero_k = _solve(lam_pos, nn, dd, tol, 100, v_pos)
    # Σ𝓛 = κΣ λC·... : 𝓛 = λC, 1 − 𝓛 = κC, 𝓛(1 − 𝓛) = κλC²
    dof = np.where(zero_k, float(m_pos), s["lc"])
    spread = np.where(zero_k, 0.0, kappa * s["lc2"])  # Σ𝓛(1 − 𝓛)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta_over_kappa = np.where(zero_k, 0.0, np.where(dd > 0, dd / kappa, 0.0))
        denom = np.where(zero_k, nn - m_pos, spread + delta_over_kappa)  # n − Σ𝓛²
        e0 = np.where(denom > 0, nn / denom, np.inf)
        bias0 = np.where(zero_k, 0.0, kappa**2 * s["vc2"]) + v_zero
        ratio = np.where(zero_k, (nn - m_pos) / nn, delta_over_kappa / nn)  # δ/(nκ)
        bias = e0 * bias0
        test = e0 * (bias0 + noise_var)
        train = ratio**2 * test
        # at the interpolation peak (E₀ = ∞) with nothing to fit the MSE is 0·∞: it is 0
        test = np.where((bias0 + noise_var) == 0, 0.0, test)
        bias = np.where(bias0 == 0, 0.0, bias)
        train = np.where(ratio == 0, 0.0, train)
        variance = np.where(noise_var == 0, 0.0, (e0 - 1) * noise_var)

    def r(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64).reshape(shape)

    return EigenlearningPrediction(
        n=r(nn),
        ridge=r(dd),
        kappa=r(kappa),
        e0=r(e0),
        dof=r(dof),
        test_mse=r(test),
        train_mse=r(train),
        bias=r(bias),
        variance=r(variance),
        noise_var=float(noise_var),
        eigenvalues=lam,
        target_power=vpow,
    )


def optimal_ridge(
    eigenvalues: Any,
    target_coeffs: Any,
    n: Any,
    noise_var: float = 0.0,
    rtol: float = 1e-6,
) -> tuple[np.ndarray, EigenlearningPrediction]:
    """The ridge δ* ≥ 0 minimizing the predicted test MSE at each n, and the prediction there.

    A log-spaced scan over δ ∈ [10⁻¹²·tr, 10⁴·tr] (tr = Σλ, times n) plus δ = 0 brackets the
    minimum; golden-section search in log δ refines it to relative ``rtol``. For isotropic
    linear regression δ* = ε²M/‖v‖² (Hastie et al. 2022, Thm 5; Dobriban & Wager 2018).
    """
    lam, _ = _as_spectrum(eigenvalues, target_coeffs)
    nn = np.asarray(n, dtype=np.float64)
    shape = nn.shape
    nn = nn.ravel()
    scale = max(float(lam.sum()), 1e-300)
    grid = np.concatenate([[0.0], np.geomspace(1e-12, 1e4, 65)])  # in units of tr·n
    scan = predict(
        eigenvalues, target_coeffs, nn[:, None], grid[None, :] * scale * nn[:, None], noise_var
    )
    best = np.argmin(scan.test_mse, axis=1)
    lo_i = np.clip(best - 1, 1, grid.size - 1)
    hi_i = np.clip(best + 1, 1, grid.size - 1)
    a = np.log(grid[lo_i] * scale * nn)
    b = np.log(grid[hi_i] * scale * nn)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)

    def f(u: np.ndarray) -> np.ndarray:
        return predict(eigenvalues, target_coeffs, nn, np.exp(u), noise_var).test_mse

    fc, fd = f(c), f(d)
    while np.max(b - a) > rtol:
        left = fc < fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        d_new = np.where(left, c, a + g * (b - a))
        c_new = np.where(left, b - g * (b - a), d)
        fd_new = np.where(left, fc, np.nan)
        fc_new = np.where(left, np.nan, fd)
        # evaluate only the new interior point of each interval
        need_c = np.isnan(fc_new)
        need_d = np.isnan(fd_new)
        c, d = c_new, d_new
        fc, fd = fc_new, fd_new
        if need_c.any():
            fc = np.where(need_c, f(c), fc)
        if need_d.any():
            fd = np.where(need_d, f(d), fd)
    delta = np.exp(0.5 * (a + b))
    at_zero = best == 0
    cand = predict(eigenvalues, target_coeffs, nn, delta, noise_var)
    zero = predict(eigenvalues, target_coeffs, nn, 0.0, noise_var)
    # a minimum within rounding of δ = 0 is δ = 0 (flat objective at the boundary)
    use_zero = at_zero | (zero.test_mse <= cand.test_mse * (1 + 1e-12))
    delta = np.where(use_zero, 0.0, delta)
    final = predict(eigenvalues, target_coeffs, nn.reshape(shape), delta.reshape(shape), noise_var)
    return delta.reshape(shape), final


def bcp_generalization_error(
    eigenvalues: Any,
    target_coeffs: Any,
    p: float,
    ridge: float = 0.0,
    noise_var: float = 0.0,
    tol: float = 1e-15,
    maxiter: int = 2_000,
) -> tuple[float, float]:
    """Bordelon–Canatar–Pehlevan form of the same theory, solved independently.

    Canatar, Bordelon & Pehlevan 2021 (Nat. Commun. 12, 2914), eq. 4–5, with η_ρ the
    eigenvalues and η_ρ w̄_ρ² = v_ρ²::

        κ = λ + κ Σ_ρ η_ρ/(p η_ρ + κ),   γ = p Σ_ρ η_ρ²/(p η_ρ + κ)²
        E_g = 1/(1 − γ) [Σ_ρ η_ρ w̄_ρ² κ²/(p η_ρ + κ)² + σ²γ]

    Returns (κ_BCP, E_g). E_g excludes the test-label noise: E_g + ε² equals eigenlearning's
    test MSE and κ_BCP = p·κ. Provided as an independent check (it iterates the fixed point
    instead of root-finding), and for users who think in that notation. Requires ridge > 0
    or p < number of positive eigenvalues.
    """
    lam, vpow = _as_spectrum(eigenvalues, target_coeffs)
    lam_pos = lam[lam > 0]
    if ridge == 0 and p >= lam_pos.size:
        raise UserError("the fixed point needs ridge > 0 or p below the number of modes")
    # 1 = λ/κ + Σ η/(pη + κ) is monotone in κ: bisection in log κ.
    a, b = -745.0, math.log(lam_pos.sum() + ridge + 1e-300) + 5
    for _ in range(maxiter):
        mid = 0.5 * (a + b)
        if not a < mid < b:  # the bracket is down to adjacent floats
            break
        k = math.exp(mid)
        val = ridge / k + float(np.sum(lam_pos / (p * lam_pos + k))) - 1
        if val > 0:
            a = mid
        else:
            b = mid
        if b - a < tol:
            break
    k = math.exp(0.5 * (a + b))
    gamma = p * float(np.sum(lam_pos**2 / (p * lam_pos + k) ** 2))
    bias = float(np.sum(vpow[lam > 0] * k**2 / (p * lam_pos + k) ** 2)) + float(
        vpow[lam == 0].sum()
    )
    return k, (bias + noise_var * gamma) / (1 - gamma)


def kare(gram: Any, y: Any, ridge: Any) -> np.ndarray:
    """Kernel alignment risk estimator (Jacot, Şimşek, Spadaro, Hongler & Gabriel 2020, eq. 3).

    From the training kernel K (n × n) and labels y alone::

        KARE(δ) = (1/n) yᵀ(K/n + λ)⁻² y / ((1/n) tr (K/n + λ)⁻¹)²,   λ = δ/n

    which equals (train MSE) · (nκ/δ)² with κ estimated from the sample, i.e. the sample
    analogue of eigenlearning's train-to-test relation. Vectorized over ``ridge`` (any
    shape, each δ > 0; δ = 0 is the limit and needs K invertible).
    """
    K = np.asarray(gram, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise UserError(f"gram must be a non-empty square matrix, got shape {K.shape}")
    yy = np.asarray(y, dtype=np.float64)
    if yy.ndim == 1:
        yy = yy[:, None]
    if yy.shape[0] != K.shape[0]:
        raise UserError(f"y has {yy.shape[0]} rows but the gram matrix has {K.shape[0]}")
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(yy))):
        raise UserError("gram or y contain NaN or inf")
    d = np.asarray(ridge, dtype=np.float64)
    if np.any(d < 0) or not np.all(np.isfinite(d)):
        raise UserError("ridge must be non-negative and finite")
    n = K.shape[0]
    w, U = np.linalg.eigh(0.5 * (K + K.T))
    w = np.clip(w, 0, None) / n
    proj = np.sum((U.T @ yy) ** 2, axis=1)  # (n,)
    lamn = d.reshape(-1)[:, None] / n
    if np.any(lamn == 0) and w.min() <= 0:
        raise UserError("KARE at ridge 0 needs an invertible gram matrix")
    inv = 1.0 / (w[None, :] + lamn)
    num = (proj[None, :] * inv**2).sum(1) / n
    den = (inv.sum(1) / n) ** 2
    return (num / den).reshape(d.shape)
