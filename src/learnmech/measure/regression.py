"""Exact test errors of trained linear models on Gaussian data with a known spectrum.

The solvable settings of learning mechanics (eigenlearning, random-feature scaling laws)
predict the test error of *linear* learners from the data spectrum alone. These functions
measure the same quantity on one random draw, with no Monte-Carlo test set: the data are
z ~ N(0, I_M) with features x = Λ^{1/2} z and target y = vᵀz + ε (ε ~ N(0, σ²)), so a
learner with effective weights w on z has test error E = ‖w − v‖² + σ² exactly.

* :func:`gaussian_task` draws (Z, y);
* :func:`kernel_ridge_error` — kernel (ridge) regression with the linear kernel
  K = ZΛZᵀ, the P → ∞ limit of random features (Simon et al. 2021, "The eigenlearning
  framework", eq. 1; Bordelon et al. 2020);
* :func:`random_features` and :func:`feature_error` — least squares or ridge regression
  on P random features Φ = Z Gᵀ, G = F Λ^{1/2} (Maloney, Roberts & Sully 2022, §2;
  Bahri et al. 2021), including the unlimited-data best fit on P features;
* :func:`population_kernel_ridge_error` — kernel ridge regression on n draws from a finite
  population with a precomputed Gram matrix, scored on the whole population.

A ridge of exactly 0 is the minimum-norm interpolant (a pseudo-inverse via ``lstsq``);
ridges are *normalised*: δ = n·λ in f̂ = K(K + δI)⁻¹y.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "feature_error",
    "gaussian_task",
    "kernel_ridge_error",
    "population_kernel_ridge_error",
    "random_features",
]


def gaussian_task(
    v: np.ndarray, n: int, noise_var: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws z ~ N(0, I_M) (rows of Z) and targets y = Z v + ε, ε ~ N(0, noise_var)."""
    Z = rng.standard_normal((n, v.size))
    return Z, Z @ v + math.sqrt(noise_var) * rng.standard_normal(n)


def _ridge_solves(K: np.ndarray, y: np.ndarray, deltas: Sequence[float]) -> list[np.ndarray]:
    """α = (K + δI)⁻¹ y for each δ from one eigendecomposition of the symmetric PSD ``K``;
    δ = 0 is the minimum-norm least-squares solution, with the cutoff of
    ``np.linalg.lstsq(rcond=None)`` (eigenvalues below n·eps·λ_max dropped: for a
    symmetric PSD matrix they are its singular values)."""
    lam, V = np.linalg.eigh(K)
    lam = np.maximum(lam, 0.0)
    Vy = V.T @ y
    cut = K.shape[0] * np.finfo(K.dtype).eps * (lam.max() if lam.size else 0.0)
    out = []
    for d in deltas:
        s = lam + d
        inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > cut) if d == 0 else 1.0 / s
        out.append(V @ (inv.reshape(-1, *[1] * (Vy.ndim - 1)) * Vy))
    return out


def kernel_ridge_error(
    lam: np.ndarray,
    v: np.ndarray,
    Z: np.ndarray,
    y: np.ndarray,
    ridges: Sequence[float],
    noise_var: float = 0.0,
) -> list[float]:
    """Test error of kernel ridge regression with the linear kernel K = Z Λ Zᵀ, one per
    normalised ridge λ (δ = nλ): the learner's weights on z are w = Λ Zᵀ (K + δI)⁻¹ y."""
    n = Z.shape[0]
    K = (Z * lam) @ Z.T
    out = []
    for alpha in _ridge_solves(K, y, [r * n for r in ridges]):
        w = lam * (Z.T @ alpha)
        out.append(float(np.sum((w - v) ** 2) + noise_var))
    return out


def random_features(
    P: int, lam: np.ndarray, rng: np.random.Generator, *, normalize: bool = False
) -> np.ndarray:
    """G = F Λ^{1/2} with F ~ N(0, 1)^{P×M} (divided by √P when ``normalize``): feature
    i of an input z is (G z)_i."""
    G = rng.standard_normal((P, lam.size)) * np.sqrt(lam)
    return G / math.sqrt(P) if normalize else G


def feature_error(
    G: np.ndarray,
    v: np.ndarray,
    noise_var: float = 0.0,
    Z: np.ndarray | None = None,
    y: np.ndarray | None = None,
    ridge: float = 0.0,
) -> float:
    """Test error of a linear readout c on the features G z.

    Without data (``Z is None``): the best readout with unlimited data, the projection of
    v on the row space of G (Maloney et al. 2022's model-limited regime). With data:
    least squares (``ridge = 0``, minimum norm) or ridge regression, ‖Φc − y‖² + nλ‖c‖².
    """
    if Z is None:
        c = np.linalg.lstsq(G @ G.T, G @ v, rcond=None)[0]
    elif y is None:
        raise ValueError("feature_error needs targets y with inputs Z")
    elif ridge == 0:
        c = np.linalg.lstsq(Z @ G.T, y, rcond=None)[0]
    else:
        Phi = Z @ G.T
        A = Phi.T @ Phi + ridge * Z.shape[0] * np.eye(G.shape[0])
        c = np.linalg.solve(A, Phi.T @ y)
    return float(np.sum((G.T @ c - v) ** 2) + noise_var)


def population_kernel_ridge_error(
    K: np.ndarray, Y: np.ndarray, idx: np.ndarray, ridges: Sequence[float]
) -> list[float]:
    """Mean squared error over a whole population (Gram matrix ``K``, targets ``Y``) of
    kernel ridge regression trained on the rows ``idx``, one per normalised ridge."""
    n = len(idx)
    Kn = K[np.ix_(idx, idx)]
    Kx = K[:, idx]
    y = Y[idx]
    return [
        float(np.mean((Kx @ alpha - Y) ** 2))
        for alpha in _ridge_solves(Kn, y, [r * n for r in ridges])
    ]
