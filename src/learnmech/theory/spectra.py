"""Kernel spectra: estimated from a Gram matrix, or exact for dot-product kernels.

Eigenlearning (:mod:`.eigenlearning`) needs the eigenvalues λ_i of the kernel operator
(Tf)(x) = E_x'[K(x, x') f(x')] under the data distribution, and the target's coefficients
v_i = E_x[f*(x) φ_i(x)] in its orthonormal eigenfunctions φ_i.

* From data: with N samples, the eigenpairs of K/N (K the N × N Gram matrix) estimate them:
  λ̂_i = eig_i(K/N), v̂_i = u_iᵀy/√N. Finite-sample caveats: the top eigenvalues are
  accurate to O(N^{-1/2}), while eigenvalues near and below the N-th are biased (the empirical
  spectrum stops at N modes and its tail is polluted by estimation noise), and v̂ absorbs
  the label noise (Σv̂² = mean y², noise included). Predictions are reliable for sample
  sizes n well below N; a useful rule is n ≤ N/4. If the N points *are* the population
  (n samples drawn from them, test error over all of them) the spectrum is exact.
* Dot-product kernels K(x, x') = k(⟨x, x'⟩) on the unit sphere S^{d−1} (uniform measure):
  eigenfunctions are spherical harmonics; degree ℓ has eigenvalue, by the Funk–Hecke formula,
  λ_ℓ = ω_{d−2}/ω_{d−1} ∫₋₁¹ k(t) P_ℓ(t) (1 − t²)^{(d−3)/2} dt, with P_ℓ the Gegenbauer
  polynomial normalised P_ℓ(1) = 1, and multiplicity N(d, ℓ) = (2ℓ + d − 2)(ℓ + d − 3)!/
  (ℓ!(d − 2)!) (Smola, Óvári & Williamson 2001; Bietti & Mairal 2019).
* On the boolean cube {±1}^d (uniform), K(x, x') = k(⟨x, x'⟩/d): Walsh monomials of degree
  ℓ are eigenfunctions with λ_ℓ = 2^{−d} Σ_{m=0}^{d} k((d − 2m)/d) C(d, m) K_ℓ(m)/C(d, ℓ), K_ℓ the
  Krawtchouk polynomial, multiplicity C(d, ℓ) (Yang & Salman 2019). Exact, no quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special

from learnmech.errors import UserError

__all__ = [
    "Spectrum",
    "cube_spectrum",
    "dot_product_kernel",
    "expand_degrees",
    "gram_matrix",
    "power_law_spectrum",
    "spectrum_from_gram",
    "sphere_spectrum",
]


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues (descending) and target coefficients, one row per mode."""

    eigenvalues: np.ndarray
    target_coeffs: np.ndarray  # (M,) or (M, C)


def spectrum_from_gram(gram: Any, y: Any | None = None) -> Spectrum:
    """Eigenvalues of K/N and target coefficients u_iᵀy/√N, sorted by decreasing eigenvalue.

    Tiny negative eigenvalues from rounding are clipped to 0.
    """
    K = np.asarray(gram, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise UserError(f"gram must be a non-empty square matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise UserError("gram contains NaN or inf")
    N = K.shape[0]
    w, U = np.linalg.eigh(0.5 * (K + K.T))
    w, U = w[::-1], U[:, ::-1]
    scale = max(abs(w[0]), 1e-300)
    if w[-1] < -1e-8 * scale:
        raise UserError(f"gram is not positive semi-definite (eigenvalue {w[-1]:.3g})")
    lam = np.clip(w, 0, None) / N
    if y is None:
        coeffs = np.zeros(N)
    else:
        yy = np.asarray(y, dtype=np.float64)
        if yy.shape[0] != N:
            raise UserError(f"y has {yy.shape[0]} rows but the gram matrix has {N}")
        if not np.all(np.isfinite(yy)):
            raise UserError("y contains NaN or inf")
        coeffs = (U.T @ yy) / math.sqrt(N)
    return Spectrum(lam, coeffs)


def gram_matrix(
    x: Any,
    kernel: Literal["linear", "rbf", "ntk", "nngp"] = "ntk",
    x2: Any | None = None,
    *,
    bandwidth: float = 1.0,
    **mlp: Any,
) -> np.ndarray:
    """Gram matrix of a kernel: ``linear`` xᵀx', ``rbf`` exp(−‖x − x'‖²/(2h²)), or the
    analytic ``ntk``/``nngp`` of an MLP (keyword arguments go to
    :func:`learnmech.theory.kernels.mlp_kernels`, e.g. ``depth=2, activation="relu"``)."""
    a = np.asarray(x, dtype=np.float64)
    b = a if x2 is None else np.asarray(x2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise UserError(f"inputs must be 2-D with equal feature counts, got {a.shape}, {b.shape}")
    if kernel == "linear":
        return a @ b.T
    if kernel == "rbf":
        if not bandwidth > 0:
            raise UserError(f"bandwidth must be positive, got {bandwidth!r}")
        sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-np.clip(sq, 0, None) / (2 * bandwidth**2))
    if kernel in ("ntk", "nngp"):
        from learnmech.theory.kernels import mlp_kernels

        mlp.setdefault("depth", 1)
        k = mlp_kernels(a, None if x2 is None else b, get=(kernel,), **mlp)
        return np.asarray(getattr(k, kernel), dtype=np.float64)
    raise UserError(f"unknown kernel {kernel!r}; expected linear, rbf, ntk or nngp")


def dot_product_kernel(
    kernel: Literal["ntk", "nngp"] = "ntk", dim: int = 3, **mlp: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """k(t) of an MLP kernel restricted to the unit sphere in R^dim: K(x, x') = k(⟨x, x'⟩)."""
    if dim < 2:
        raise UserError(f"dim must be at least 2, got {dim}")

    def k(t: np.ndarray) -> np.ndarray:
        tt = np.clip(np.asarray(t, dtype=np.float64).reshape(-1), -1, 1)
        e1 = np.zeros((1, dim))
        e1[0, 0] = 1
        pts = np.zeros((tt.size, dim))
        pts[:, 0] = tt
        pts[:, 1] = np.sqrt(1 - tt**2)
        return gram_matrix(e1, kernel, pts, **mlp)[0].reshape(np.shape(t))

    return k


def _gegenbauer_normalised(ell: int, dim: int, t: np.ndarray) -> np.ndarray:
    if dim == 2:
        return special.eval_chebyt(ell, t)
    alpha = (dim - 2) / 2
    return special.eval_gegenbauer(ell, alpha, t) / special.eval_gegenbauer(ell, alpha, 1.0)


def sphere_multiplicity(dim: int, ell: int) -> int:
    """Number of degree-ℓ spherical harmonics on S^{dim−1}."""
    if ell == 0:
        return 1
    if dim == 2:
        return 2
    return (2 * ell + dim - 2) * math.comb(ell + dim - 3, ell - 1) // ell


def sphere_spectrum(
    k: Callable[[np.ndarray], np.ndarray], dim: int, max_degree: int, nodes: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues per degree ℓ = 0..max_degree and multiplicities (Funk–Hecke, Gauss–Jacobi).

    ``k`` maps t = ⟨x, x'⟩ ∈ [−1, 1] to the kernel value. Quadrature with weight
    (1 − t²)^{(d−3)/2} is exact for polynomial k of degree < 2·nodes − ℓ; kernels with a kink
    at t = ±1 (ReLU NTK) converge algebraically, ~1e-9 relative at the default 2000 nodes.
    """
    if dim < 2 or max_degree < 0 or nodes < 1:
        raise UserError("need dim ≥ 2, max_degree ≥ 0 and nodes ≥ 1")
    a = (dim - 3) / 2
    t, w = special.roots_jacobi(nodes, a, a)
    norm = math.gamma(dim / 2) / (math.sqrt(math.pi) * math.gamma((dim - 1) / 2))
    kt = np.asarray(k(t), dtype=np.float64)
    eig = np.array(
        [
            norm * np.sum(w * kt * _gegenbauer_normalised(ell, dim, t))
            for ell in range(max_degree + 1)
        ]
    )
    mult = np.array([sphere_multiplicity(dim, ell) for ell in range(max_degree + 1)])
    return eig, mult


def cube_spectrum(k: Callable[[np.ndarray], np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact eigenvalues per degree ℓ = 0..dim and multiplicities C(d, ℓ) on {±1}^d."""
    if dim < 1 or dim > 128:
        raise UserError(f"dim must be in 1..128, got {dim}")
    m = np.arange(dim + 1)
    kv = np.asarray(k((dim - 2 * m) / dim), dtype=np.float64)
    # Σ over the x with m minus-ones of χ_S(x), |S| = ℓ: Σ_q (−1)^q C(ℓ, q) C(d − ℓ, m − q)
    # (q of the minus-ones inside S), i.e. C(d, m)/C(d, ℓ) times the Krawtchouk K_ℓ(m).
    eig = np.empty(dim + 1)
    for ell in range(dim + 1):
        count = np.array(
            [
                sum(
                    (-1) ** q * math.comb(ell, q) * math.comb(dim - ell, mm - q)
                    for q in range(max(0, mm - dim + ell), min(mm, ell) + 1)
                )
                for mm in range(dim + 1)
            ],
            dtype=np.float64,
        )
        eig[ell] = float(np.sum(kv * count)) / 2.0**dim
    mult = np.array([math.comb(dim, ell) for ell in range(dim + 1)])
    return eig, mult


def expand_degrees(
    eig: np.ndarray, mult: np.ndarray, coeff_power: np.ndarray | None = None
) -> Spectrum:
    """One mode per eigenfunction: repeat each degree's eigenvalue by its multiplicity.

    ``coeff_power`` gives the target power per degree (Σ over the degree's modes of v_i²);
    it is spread evenly over the degree's modes. Sorted by decreasing eigenvalue.
    """
    eig = np.asarray(eig, dtype=np.float64)
    mult = np.asarray(mult, dtype=np.int64)
    lam = np.repeat(eig, mult)
    if coeff_power is None:
        v = np.zeros_like(lam)
    else:
        cp = np.asarray(coeff_power, dtype=np.float64)
        v = np.repeat(np.sqrt(np.clip(cp, 0, None) / np.maximum(mult, 1)), mult)
    order = np.argsort(-lam, kind="stable")
    return Spectrum(np.clip(lam[order], 0, None), v[order])


def power_law_spectrum(modes: int, alpha: float, beta: float, scale: float = 1.0) -> Spectrum:
    """λ_k = scale·k^{−α}, v_k² = k^{−β} normalised so Σv² = 1 (k = 1..modes): the standard
    model behind a-priori scaling exponents (Bordelon et al. 2020; Spigler et al. 2020)."""
    if modes < 1 or not alpha > 0 or not math.isfinite(beta):
        raise UserError("need modes ≥ 1, alpha > 0 and a finite beta")
    k = np.arange(1, modes + 1, dtype=np.float64)
    v2 = k**-beta
    return Spectrum(scale * k**-alpha, np.sqrt(v2 / v2.sum()))
