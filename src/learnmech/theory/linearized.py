"""Training dynamics of linearized networks (the NTK regime) with squared loss.

For f_lin(x; θ) = f(x; θ₀) + ∇f(x; θ₀)ᵀ(θ − θ₀), loss ½ Σ_i (f(x_i) − y_i)² and gradient
flow dθ/dt = −η ∇L on the train set X with kernel K = Θ(X, X) (Jacot et al. 2018;
Lee et al. 2019, "Wide neural networks of any depth evolve as linear models", eq. 8–11)::

    f_t(X)  = Y + e^{−ηKt} (f₀(X) − Y)
    f_t(x*) = f₀(x*) + Θ(x*, X) K⁻¹ (I − e^{−ηKt}) (Y − f₀(X))

Discrete gradient descent replaces e^{−ηλt} by (1 − ηλ)^t. With a *mean* loss
½·mean_i(...) the rate is η/n (``loss="mean"``).

Ensemble over initialisations (Lee et al. 2019, eq. 13–16), Σ the NNGP::

    μ_t(x*)  = Θ*X Θ⁻¹ (I − e^{−ηΘt}) Y
    Var_t(x*) = Σ** + Θ*X Θ⁻¹(I − e)Σ(I − e)Θ⁻¹ΘX* − 2 Θ*X Θ⁻¹(I − e) ΣX*

All times come from one eigendecomposition K = V Λ Vᵀ: mode i of the residual decays as
e^{−ηλ_i t} (spectral bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["LinearizedPrediction", "mode_filters", "predict", "response_operators"]


@dataclass(frozen=True)
class LinearizedPrediction:
    """Predicted outputs at each time.

    Attributes:
        times: (T,) times (steps for discrete GD).
        train: (T, n, k) train outputs.
        test: (T, m, k) test outputs, or None.
        test_var: (T, m) ensemble variance of each test output (``ensemble=True``), or None.
        train_loss: (T,) ½·mean over examples and outputs of the squared train residual.
        test_loss: (T,) the same on the test set (needs ``y_test``), or None.
        expected_train_loss: (T,) ensemble-mean train loss over random initialisations,
            E[½·mean (f_t − y)²] = ½/(nk)·(‖e_t Y‖² + k·tr(e_t Σ e_t)) with f₀ ~ GP(0, Σ)
            (needs ``nngp_train``), or None.
        expected_test_loss: (T,) ½·mean((μ_t − y*)² + Var_t) on the test set (needs the
            NNGP blocks and ``y_test``), or None.
    """

    times: np.ndarray
    train: np.ndarray
    test: np.ndarray | None
    test_var: np.ndarray | None
    train_loss: np.ndarray
    test_loss: np.ndarray | None
    expected_train_loss: np.ndarray | None = None
    expected_test_loss: np.ndarray | None = None


def _as2d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (n,) or (n, k) array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def mode_filters(
    eigenvalues: np.ndarray, times: np.ndarray, lr: float, discrete: bool
) -> np.ndarray:
    """(T, n) residual decay factors: e^{−ηλt} (flow) or (1 − ηλ)^t (GD)."""
    lam = np.clip(eigenvalues, 0.0, None)
    if discrete:
        return np.power.outer(1.0 - lr * lam, times).T
    return np.exp(-lr * np.outer(times, lam))


def response_operators(
    k_train: np.ndarray,
    k_test_train: np.ndarray,
    times: Any,
    lr: float,
    discrete: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The linear maps from one network's initial residual to its outputs at each time.

    With K = V Λ Vᵀ and filters e_t (:func:`mode_filters`; η already divided by n for a
    mean loss), a linearized network satisfies (Lee et al. 2019, eq. 9–11)

        f_t(x*) − f₀(x*) = G_t (Y − f₀(X)),   G_t = Θ*X V (1 − e_t)/Λ Vᵀ   (gain)
        f_t(X) − Y       = R_t (f₀(X) − Y),   R_t = V e_t Vᵀ                (residual)

    Returns (G (T, m, n), R (T, n, n)). Applied to each network's own f₀ they give its
    own linearization: the control variate that separates a finite network's deviation
    from the seed-to-seed spread of its initial function.
    """
    lam, v = np.linalg.eigh(k_train)
    filt = mode_filters(lam, np.asarray(times, float), lr, discrete)
    gain = np.einsum("mj,tj,ij->tmi", k_test_train @ v, (1 - filt) / lam[None], v)
    resid = np.einsum("ij,tj,kj->tik", v, filt, v)
    return gain, resid


def predict(
    k_train: Any,
    y_train: Any,
    times: Any,
    *,
    lr: float = 1.0,
    k_test_train: Any | None = None,
    y_test: Any | None = None,
    f0_train: Any | None = None,
    f0_test: Any | None = None,
    loss: Literal["sum", "mean"] = "sum",
    discrete: bool = False,
    nngp_train: Any | None = None,
    nngp_test_train: Any | None = None,
    nngp_test_diag: Any | None = None,
    eig_floor: float = 1e-12,
) -> LinearizedPrediction:
    """Predict train/test outputs of a linearized network at every time in ``times``.

    Arguments:
        k_train: (n, n) NTK on the train set.
        y_train: (n,) or (n, k) targets.
        times: times (gradient flow) or step counts (``discrete=True``).
        lr: learning rate η.
        k_test_train: (m, n) NTK between test and train inputs.
        y_test: (m,) or (m, k) test targets (for ``test_loss``).
        f0_train, f0_test: outputs at initialisation; ``None`` = 0 (the ensemble mean).
        loss: ``"sum"`` for ½Σ, ``"mean"`` for ½·mean over the n examples (η → η/n).
        discrete: gradient descent with step ``lr`` instead of gradient flow.
        nngp_train, nngp_test_train, nngp_test_diag: NNGP blocks; when all three are
            given, the ensemble variance of the test outputs is returned.
        eig_floor: eigenvalues below ``eig_floor·λ_max`` are treated as zero modes.
    """
    k = np.asarray(k_train, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise ValueError(f"k_train must be a square (n, n) matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("k_train contains NaN or infinite values")
    n = k.shape[0]
    y = _as2d(y_train, "y_train")
    if y.shape[0] != n:
        raise ValueError(f"y_train has {y.shape[0]} rows but k_train is {n}×{n}")
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be a non-empty array of finite, non-negative values")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr}")
    if loss not in ("sum", "mean"):
        raise ValueError(f"loss must be 'sum' or 'mean', got {loss!r}")
    eta = lr / n if loss == "mean" else lr

    f0 = np.zeros_like(y) if f0_train is None else _as2d(f0_train, "f0_train")
    lam, v = np.linalg.eigh(0.5 * (k + k.T))
    filt = mode_filters(lam, t, eta, discrete)  # (T, n)
    r0 = v.T @ (f0 - y)  # residual in the eigenbasis (n, k)
    train = y[None] + np.einsum("ij,tj,jk->tik", v, filt, r0)
    train_loss = 0.5 * np.mean((train - y[None]) ** 2, axis=(1, 2))

    expected_train = expected_test = None
    if nngp_train is not None:
        sig_eig_diag = np.einsum("ij,ik,kj->j", v, np.asarray(nngp_train, dtype=np.float64), v)
        yv = v.T @ y  # (n, k)
        kk = y.shape[1]
        expected_train = (
            0.5 / (n * kk) * ((filt**2) @ (yv**2).sum(axis=1) + kk * (filt**2) @ sig_eig_diag)
        )
    test = test_var = test_loss = None
    if k_test_train is not None:
        ks = np.asarray(k_test_train, dtype=np.float64)
        if ks.ndim != 2 or ks.shape[1] != n:
            raise ValueError(f"k_test_train must have shape (m, {n}), got {ks.shape}")
        # Θ* K⁻¹ (I − e^{−ηKt}) in the eigenbasis; modes with λ≈0 never move.
        safe = lam > eig_floor * max(lam.max(), 0.0)
        inv = np.where(safe, 1.0 / np.where(safe, lam, 1.0), 0.0)
        gain = (1.0 - filt) * inv[None]  # (T, n)
        a = ks @ v  # (m, n)
        f0s = np.zeros((ks.shape[0], y.shape[1])) if f0_test is None else _as2d(f0_test, "f0_test")
        test = f0s[None] - np.einsum("mj,tj,jk->tmk", a, gain, r0)
        if y_test is not None:
            yt = _as2d(y_test, "y_test")
            test_loss = 0.5 * np.mean((test - yt[None]) ** 2, axis=(1, 2))
        if nngp_train is not None and nngp_test_train is not None and nngp_test_diag is not None:
            sig = np.asarray(nngp_train, dtype=np.float64)
            sig_s = np.asarray(nngp_test_train, dtype=np.float64)
            sig_ss = np.asarray(nngp_test_diag, dtype=np.float64).reshape(-1)
            sig_eig = v.T @ sig @ v  # Σ in the K eigenbasis
            cross = sig_s @ v  # (m, n)
            test_var = np.empty((t.size, ks.shape[0]))
            for i in range(t.size):
                at = a * gain[i][None]  # (m, n) = Θ* V diag(g)
                quad = np.einsum("mi,ij,mj->m", at, sig_eig, at)
                test_var[i] = sig_ss + quad - 2.0 * np.einsum("mi,mi->m", at, cross)
            if y_test is not None and f0_test is None:
                yt = _as2d(y_test, "y_test")
                expected_test = 0.5 * np.mean(
                    (test - yt[None]) ** 2 + test_var[:, :, None], axis=(1, 2)
                )
    return LinearizedPrediction(
        t, train, test, test_var, train_loss, test_loss, expected_train, expected_test
    )
