"""Deep linear networks f(x) = W_L ⋯ W_1 x, with random or task-aligned balanced init."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from learnmech.errors import UserError

__all__ = ["DeepLinear"]


class DeepLinear(nn.Module):
    """L bias-free linear layers; ``weights[ℓ]`` has shape (dims[ℓ+1], dims[ℓ]).

    Args:
        dims: layer widths [in, hidden…, out] (depth = len(dims) − 1).
        init_scale: entries of W_ℓ are N(0, init_scale²/fan_in) (``init="random"``).
        seed: seeds a private generator (init is reproducible and independent of the
            global RNG).
    """

    def __init__(
        self,
        dims: list[int],
        init_scale: float = 1.0,
        seed: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if len(dims) < 2 or any((not isinstance(d, int)) or d < 1 for d in dims):
            raise UserError(f"dims must be ≥ 2 positive integers, got {dims!r}")
        if not (math.isfinite(init_scale) and init_scale >= 0):
            raise UserError(f"init_scale must be non-negative, got {init_scale!r}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.dims = list(dims)
        self.weights = nn.ParameterList(
            nn.Parameter(
                torch.randn(dims[i + 1], dims[i], generator=gen, dtype=dtype)
                * (init_scale / math.sqrt(dims[i]))
            )
            for i in range(len(dims) - 1)
        )

    @property
    def depth(self) -> int:
        return len(self.weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w in self.weights:
            x = x @ w.T
        return x

    def end_to_end(self) -> torch.Tensor:
        """The product W_L ⋯ W_1 (out × in)."""
        w = self.weights[0]
        for layer in self.weights[1:]:
            w = layer @ w
        return w

    def mode_strengths(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        """u_k = U_kᵀ W_L⋯W_1 V_k for each task mode k (U: out × K, V: in × K)."""
        with torch.no_grad():
            W = self.end_to_end().double().cpu().numpy()
        return np.einsum("ok,oi,ik->k", U, W, V)

    @torch.no_grad()
    def align_(self, U: np.ndarray, V: np.ndarray, u0: float | np.ndarray, seed: int = 0) -> None:
        """Task-aligned balanced init: W_1 = R_1 A Vᵀ, W_ℓ = R_ℓ A R_{ℓ−1}ᵀ, W_L = U A R_{L−1}ᵀ,
        A = diag(u₀^{1/L}), R_ℓ random orthonormal (hidden × K). Then u_k(0) = u₀ and every
        layer carries the same strength (Saxe et al. 2014, §2)."""
        K = U.shape[1]
        if any(d < K for d in self.dims[1:-1]):
            raise UserError(f"hidden widths must be ≥ the task rank {K}")
        a = np.broadcast_to(np.asarray(u0, dtype=np.float64), (K,)) ** (1 / self.depth)
        rng = np.random.default_rng(seed)
        R = [np.linalg.qr(rng.standard_normal((d, K)))[0] for d in self.dims[1:-1]]
        left = [*R, U]
        right = [V, *R]
        for ell, w in enumerate(self.weights):
            m = left[ell] @ np.diag(a) @ right[ell].T
            w.copy_(torch.from_numpy(m).to(w.dtype))

    def fit_modes(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        U: np.ndarray,
        V: np.ndarray,
        lr: float,
        steps: int,
        record: np.ndarray,
    ) -> tuple[np.ndarray, list[float]]:
        """Full-batch gradient descent (``torch.optim.SGD``) on ½·mean_i ‖y_i − f(x_i)‖² for
        ``steps`` steps; the mode strengths (:meth:`mode_strengths`) and loss at each step
        in ``record`` (sorted, within 0 … steps): (strengths (R, K), losses (R,))."""
        want = np.zeros(steps + 1, bool)
        want[record] = True
        opt = torch.optim.SGD(self.parameters(), lr=lr)
        strengths, losses = [], []
        for step in range(steps + 1):
            loss = 0.5 * ((self(X) - Y) ** 2).sum(1).mean()
            if want[step]:
                strengths.append(self.mode_strengths(U, V))
                losses.append(float(loss.detach()))
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return np.array(strengths), losses
