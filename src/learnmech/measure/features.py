"""Feature-learning statistics: the average gradient outer product and the feature ansatz.

Neural feature ansatz (Radhakrishnan, Beaglehole, Pandit & Belkin 2024, Science, eq. 1):
the first layer's Gram W₁ᵀW₁ of a trained network is proportional to the average gradient
outer product of the network's function with respect to its input,
AGOP = (1/n) Σᵢ ∇ₓf(xᵢ)ᵀ∇ₓf(xᵢ) (summed over outputs for vector f).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from learnmech.errors import UserError

__all__ = [
    "agop",
    "matrix_correlation",
    "matrix_correlation_null",
    "psd_sqrt",
    "subspace_overlap",
]


def agop(
    fn: Callable[[torch.Tensor], torch.Tensor], x: Any, batch_size: int = 4096
) -> torch.Tensor:
    """Average gradient outer product (1/n)·Σᵢ Σ_o ∇ₓf_o(xᵢ)∇ₓf_o(xᵢ)ᵀ, (d × d).

    ``fn`` maps (b, d) inputs to (b,) or (b, m) outputs, each row depending only on its
    input row (true of any network without batch-coupling layers in eval mode). One
    backward pass per output per batch."""
    X = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if X.ndim != 2 or X.shape[0] == 0:
        raise UserError(f"x must be a non-empty (n, d) matrix, got shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise UserError("x contains NaN or inf")
    d = X.shape[1]
    total = torch.zeros(d, d, dtype=X.dtype, device=X.device)
    for i in range(0, X.shape[0], batch_size):
        xb = X[i : i + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = fn(xb)
            out = out.reshape(out.shape[0], -1)
            for o in range(out.shape[1]):
                (g,) = torch.autograd.grad(out[:, o].sum(), xb, retain_graph=o < out.shape[1] - 1)
                total += (g.T @ g).detach().to(total.dtype)
    return total / X.shape[0]


def matrix_correlation(a: Any, b: Any, *, centered: bool = True) -> float:
    """Correlation of two matrices' entries: Pearson (``centered``, the measure Radhakrishnan
    et al. 2024 report) or cosine similarity ⟨A, B⟩_F/(‖A‖_F‖B‖_F)."""
    A = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    B = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b)
    if A.shape != B.shape:
        raise UserError(f"matrices differ in shape: {tuple(A.shape)} vs {tuple(B.shape)}")
    u = A.detach().reshape(-1).to(torch.float64)
    v = B.detach().reshape(-1).to(torch.float64)
    if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(v).all())):
        # the matrices of a diverged run: a result to record, not a usage error
        raise FloatingPointError("a matrix has non-finite entries (did training diverge?)")
    if centered:
        u, v = u - u.mean(), v - v.mean()
    den = float(u.norm() * v.norm())
    if not den > 0:
        raise UserError("a matrix is constant: correlation undefined")
    return float(u @ v) / den


def matrix_correlation_null(
    a: Any, b: Any, *, permutations: int = 200, seed: int = 0, centered: bool = True
) -> tuple[float, float]:
    """Chance level of :func:`matrix_correlation` for two d×d matrices: mean and standard
    deviation of corr(A, P B Pᵀ) over random coordinate permutations P, which keep each
    matrix's spectrum and diagonal-vs-off-diagonal structure but break the alignment of
    their eigenvectors."""
    A = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(torch.float64)
    B = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).to(torch.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape != B.shape:
        raise UserError("the permutation null needs two square matrices of the same size")
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 2:
        raise UserError(f"permutations must be an integer >= 2, got {permutations!r}")
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(permutations):
        p = torch.randperm(A.shape[0], generator=g).to(B.device)
        vals.append(matrix_correlation(A, B[p][:, p], centered=centered))
    v = np.array(vals)
    return float(v.mean()), float(v.std(ddof=1))


def psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix (negative rounding-level eigenvalues → 0)."""
    w, V = torch.linalg.eigh(0.5 * (a + a.T))
    return (V * w.clamp_min(0).sqrt()) @ V.T


def subspace_overlap(m: torch.Tensor, basis: torch.Tensor) -> float:
    """(1/k)·‖Bᵀ V_k‖²_F: overlap of the top-k eigenvectors V_k of symmetric ``m`` with the
    k orthonormal rows of ``basis`` (k × d); 1 when the spans coincide, k/d on average for
    a random subspace."""
    k = basis.shape[0]
    _, V = torch.linalg.eigh(0.5 * (m + m.T).to(torch.float64))
    return float((basis.to(torch.float64) @ V[:, -k:]).square().sum() / k)
