"""A-priori scaling exponents of kernel / linear regression from a power-law spectrum.

With kernel eigenvalues λ_k ∝ k^{−α} (α > 1) and target power v_k² ∝ k^{−β} (β > 1), the
noiseless ridgeless test error of kernel regression from n samples falls as
E(n) ∝ n^{−min(β−1, 2α)} (Spigler, Geiger & Wyart 2020; Bordelon, Canatar & Pehlevan 2020,
§5; Simon et al. 2023, §6): eigenlearning's κ ∝ n^{−α}, the modes with λ_k < κ (k ≳ n)
are not learned and carry Σ_{k>n} v_k² ∝ n^{1−β}, while the learned modes' residual
κ²Σ_{k<n} v_k²/λ_k² saturates at κ² ∝ n^{−2α} when the target is smoother than the
kernel can exploit. The same exponent governs the model size P of a linear random-feature
model trained on unlimited data (Bahri et al. 2021, "Explaining neural scaling laws",
resolution-limited regime; Maloney, Roberts & Sully 2022).

At finite n and finite spectra the local exponent −d log E/d log n differs from the
asymptotic one (a spectrum cut off at M modes, the crossover near β − 1 = 2α); use
:func:`local_exponent` on the actual spectrum for the a-priori prediction of a fit over a
given range of n.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from learnmech.errors import UserError
from learnmech.theory import eigenlearning

__all__ = [
    "asymptotic_exponent",
    "asymptotic_model_exponent",
    "local_exponent",
    "projection_error",
]


def asymptotic_exponent(alpha: float, beta: float) -> float:
    """min(β − 1, 2α): the data (or resolution-limited model-size) exponent as n → ∞."""
    if not (math.isfinite(alpha) and alpha > 1):
        raise UserError(f"alpha must be > 1 (a trace-class kernel), got {alpha!r}")
    if not (math.isfinite(beta) and beta > 1):
        raise UserError(f"beta must be > 1 (a square-integrable target), got {beta!r}")
    return min(beta - 1, 2 * alpha)


def asymptotic_model_exponent(alpha: float, beta: float) -> float:
    """min(β − 1, α): the exponent of :func:`projection_error` in the number of features P.

    κ ∝ P^{−α}; unlearned modes carry Σ_{k>P} v_k² ∝ P^{1−β} and the learned ones
    κΣ_{k<P} v_k²/λ_k, which saturates at κ ∝ P^{−α} when β − 1 > α. The residual is linear in
    1 − 𝓛 (a projection), where kernel regression's is quadratic — hence α, not 2α.
    """
    asymptotic_exponent(alpha, beta)  # validates
    return min(beta - 1, alpha)


def projection_error(eigenvalues: Any, target_coeffs: Any, p: Any) -> np.ndarray:
    """Error of the best linear fit on P random features with unlimited data: Σ_i (1 − 𝓛_i)v_i².

    A linear random-feature model f(x) = wᵀFΛ^{1/2}z (F a P × M Gaussian matrix) trained on
    the whole distribution fits the projection of the target onto P random directions of
    covariance Λ; the expected projection is Λ(Λ + κ)⁻¹ with Σ λ_i/(λ_i + κ) = P, the same κ
    as eigenlearning at n = P (deterministic equivalent of random projections; Atanasov,
    Zavatone-Veth & Pehlevan 2024, "Scaling and renormalization in high-dimensional
    regression", §4; Maloney, Roberts & Sully 2022).
    """
    pp = np.asarray(p, dtype=np.float64)
    pred = eigenlearning.predict(eigenvalues, target_coeffs, pp)
    L = pred.learnability()
    return ((1 - L) * pred.target_power).sum(-1)


def local_exponent(
    eigenvalues: Any,
    target_coeffs: Any,
    n: Any,
    ridge: float = 0.0,
    noise_var: float = 0.0,
    rel_step: float = 0.01,
) -> np.ndarray:
    """−d log E/d log n of eigenlearning's test MSE at each n (central difference in log n).

    ``ridge`` is the normalised ridge λ (δ = nλ at every n). The noise floor ε² is
    subtracted first, so this is the exponent of the excess error.
    """
    nn = np.asarray(n, dtype=np.float64)
    if np.any(nn <= 0) or not np.all(np.isfinite(nn)):
        raise UserError("n must be positive and finite")
    h = math.log1p(rel_step)
    lo, hi = nn * math.exp(-h), nn * math.exp(h)
    both = np.stack([lo, hi])
    p = eigenlearning.predict(eigenvalues, target_coeffs, both, ridge * both, noise_var)
    excess = p.test_mse - noise_var
    return -(np.log(excess[1]) - np.log(excess[0])) / (2 * h)
