"""The central flow of gradient descent at the edge of stability (Cohen, Damian, Talwalkar,
Kolter & Lee 2025, "Understanding Optimization in Deep Learning with Central Flows", ICLR;
§3, eqs. 4–8).

Gradient descent with step η on a loss L whose sharpness S(w) = λ_max(∇²L(w)) has reached
2/η does not follow the gradient flow dw/dt = −η∇L: it oscillates along the top Hessian
eigenvectors u_i, and the oscillation, through the third derivative, pushes the iterates
down the sharpness. The *central flow* is the ODE for the time-averaged trajectory w(t)
(t counted in GD steps):

    dw/dt = −η [∇L(w) + ½ ∇⟨Σ(t), ∇²L(w)⟩],     Σ(t) = Σ_i x_i(t) u_i u_iᵀ,           (1)

where x_i ≥ 0 is the variance of GD's oscillation along u_i, fixed by the complementarity
conditions

    x_i ≥ 0,    S_i(w) ≤ 2/η,    x_i (2/η − S_i) = 0,    S_i = u_iᵀ∇²L u_i,             (2)

i.e. the oscillation is exactly as large as needed to hold each unstable eigenvalue at the
threshold (with one active direction, (1) is the gradient flow projected onto the set
S(w) ≤ 2/η: x = −2⟨∇S, ∇L⟩/‖∇S‖²). Before the threshold every x_i = 0 and (1) is the
gradient flow. The flow predicts GD's *time-averaged* loss and sharpness:

    L̄(t) = L(w(t)) + ½ Σ_i x_i S_i ≈ L(w) + Σ_i x_i/η,         S̄(t) = S(w(t)) ≤ 2/η.     (3)

Discretization (as in the paper's code, "central_flow_substep"): Euler substeps of size h
(in GD steps) in which x is chosen so that the *linearized next* sharpness
S_i + h⟨∇S_i, dw/dt⟩ satisfies (2) — a linear complementarity problem in x with the
positive semi-definite matrix ½hη(⟨∇S_i, ∇S_j⟩) — which also pulls a sharpness that
overshot 2/η back to it. ∇S_i = ∇_w(u_iᵀ∇²L(w)u_i) at fixed u_i is a third-order
derivative: for a float64 model a second difference of gradients along u_i, otherwise
(or with ``derivatives="autograd"``) by differentiating a Hessian-vector product (triple
backpropagation); the Lanczos products likewise (:class:`_Derivatives`).
The eigenvectors (Lanczos, warm-started) and ∇S_i are refreshed every ``refresh`` substeps;
in between S_i is carried to first order, S_i(w) ≈ S_i(w_r) + ⟨∇S_i, w − w_r⟩.

With k ≥ 2 tracked directions Σ = U X Uᵀ with a full k×k matrix X, as in the paper: the
conditions (2) become the semidefinite complementarity problem X ⪰ 0,
(2/η)I − M_next ⪰ 0, ⟨X, (2/η)I − M_next⟩ = 0 on the linearized next block
M = UᵀHU (:func:`solve_sdcp`), which is what holds several eigenvalues at 2/η at once
when they are (near-)degenerate there. ``k="auto"`` adds a direction whenever the next
Ritz value reaches 2/η. Difference from the paper: plain GD only (its RMSProp flow adds
the preconditioner's state to (1)). Known rough edge: with a fixed k ≥ 2 and two
eigenvalues reaching 2/η exactly together (a degenerate pair), the discretized flow
switches between them and its recorded L̄ wobbles (a toy: 6.5–8.3 against 8.5);
``k="auto"`` lands on the closed form there.

The default substep h = ½ keeps Euler stable and non-oscillating for every eigenvalue
λ ≤ 2/η (factor 1 − hηλ ∈ [0, 1)); the gradient flow (``kind="gradient"``, the negative
control) shrinks h to 1/(ηS) once S exceeds 2/η, since it does not stop there.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.hessian import LanczosResult, LossHessian, lanczos
from learnmech.measure.model_io import forward, with_second_order

__all__ = ["FlowResult", "central_flow", "solve_lcp", "solve_sdcp", "wrong_third_derivatives"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class FlowResult:
    """A flow's trajectory at ``steps`` (in GD steps).

    ``loss``: L(w(t)); ``mean_loss``: the predicted time average of GD's loss (3);
    ``sharpness``: the largest tracked eigenvalue S(w(t)); ``sigma2``: the oscillation
    variances x_i (rows: times, columns: tracked eigenvectors; for k ≥ 2 the eigenvalues
    of X, largest first); ``params``: the flat parameters at each record
    (``keep_params=True``); ``nu``: RMSProp's ν at each record
    (:func:`~learnmech.theory.rmsprop_flow.rmsprop_central_flow` with ``keep_params``).
    ``overshoot``: the largest top eigenvalue/(2/η) of a fresh Lanczos reading after the
    first (above ``OVERSHOOT``: a direction the flow did not hold crossed the edge; warned
    once). A start above the edge is not counted (``sharpness[0]`` shows it), but warned.
    ``stopped``: the step at which a gradient or stable flow was stopped because its
    sharpness passed ``stop_ratio``·2/η (None: it ran to the end).
    ``counts``: gradient evaluations, Hessian-vector products and third-order products
    (∇S) spent; ``seconds``: the time in each, and in total.
    """

    kind: str
    lr: float
    steps: np.ndarray
    loss: np.ndarray
    mean_loss: np.ndarray
    sharpness: np.ndarray
    sigma2: np.ndarray
    params: np.ndarray | None = None
    nu: np.ndarray | None = None
    overshoot: float = 0.0
    stopped: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def solve_lcp(a: np.ndarray, B: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """x ≥ 0 with a + Bx ≥ 0 and xᵀ(a + Bx) = 0, for a small symmetric PSD ``B``.

    Exact by enumerating active sets (k ≤ 10 unknowns); for a PSD B the LCP is the convex
    QP min ½xᵀBx + aᵀx over x ≥ 0, so the first feasible complementary point is its
    minimiser. Singular blocks use the least-squares solution.
    """
    a = np.asarray(a, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    k = a.size
    if k > 10:
        raise UserError(f"solve_lcp enumerates active sets: at most 10 unknowns, got {k}")
    if k == 0 or (a >= 0).all():
        return np.zeros(k)
    scale = max(1.0, float(np.abs(a).max()), float(np.abs(B).max()))
    best, best_viol = np.zeros(k), math.inf
    for r in range(1, k + 1):
        for S in itertools.combinations(range(k), r):
            idx = list(S)
            x = np.zeros(k)
            x[idx] = np.linalg.lstsq(B[np.ix_(idx, idx)], -a[idx], rcond=None)[0]
            y = a + B @ x
            viol = max(float(-x.min()), float(-y.min()), 0.0)
            if viol <= tol * scale:
                return np.maximum(x, 0.0)
            if viol < best_viol:
                best, best_viol = np.maximum(x, 0.0), viol
    return best


def _psd(X: np.ndarray) -> np.ndarray:
    """The nearest positive semi-definite matrix (Frobenius): negative eigenvalues clipped."""
    lam, V = np.linalg.eigh(0.5 * (X + X.T))
    return (V * np.maximum(lam, 0.0)) @ V.T


def _sym_basis(k: int) -> np.ndarray:
    """An orthonormal basis (n, k, k), n = k(k+1)/2, of the symmetric k×k matrices."""
    out = []
    for i in range(k):
        for j in range(i, k):
            E = np.zeros((k, k))
            E[i, j] = E[j, i] = 1.0 if i == j else math.sqrt(0.5)
            out.append(E)
    return np.stack(out)


NULL_COUPLING = 1e-6
"""With ``derivatives="differences"``, eigenvalues of the coupling below this fraction of
its largest count as no coupling (``solve_sdcp(null=...)``; exact products use 1e-15): its
entries carry relative errors up to u^{1/4} (1.2e-4 in float64), so a smaller eigenvalue
is not resolved."""


def _face_solution(
    Q: np.ndarray, K: np.ndarray, V: np.ndarray, null: float = 1e-15
) -> np.ndarray | None:
    """The SDCP's solution on the face {X = VZVᵀ}, if it is one: Z from the linear system
    Vᵀ(Q + B[VZVᵀ])V = 0, kept when Z ⪰ 0 and Y = Q + B[X] ⪰ 0 up to round-off (then
    YV = 0 and ⟨X, Y⟩ = 0: the KKT conditions hold, and the solution is exact)."""
    k, r = Q.shape[0], V.shape[1]
    if r == 0:
        return None
    Er = _sym_basis(r)
    lift = np.einsum("ia,pab,jb->pij", V, Er, V).reshape(len(Er), k * k)  # Z-basis → X
    try:  # least squares: where B does not couple, the smallest Z (see _smallest)
        A, b = lift @ K @ lift.T, -lift @ Q.reshape(-1)
        # exact products: an exact solve (RMSProp's coupling has κ up to 1e14, where a
        # truncated least-squares solution moves z by 2e-5); differences: drop what is
        # below their error
        z = np.linalg.solve(A, b) if null < 1e-14 else np.linalg.lstsq(A, b, rcond=null)[0]
    except np.linalg.LinAlgError:
        return None
    X = (lift.T @ z).reshape(k, k)
    BX = (K @ X.reshape(-1)).reshape(k, k)
    Y = Q + 0.5 * (BX + BX.T)
    slack = max(null, 1e-10) * max(1.0, float(np.abs(Q).max()), float(np.abs(BX).max()))
    if np.linalg.eigvalsh(0.5 * (X + X.T)).min() < -1e-10 * float(np.abs(X).max()):
        return None
    if np.linalg.eigvalsh(Y).min() < -slack:
        return None
    return _psd(X)


def _range(X: np.ndarray) -> np.ndarray:
    lam, V = np.linalg.eigh(0.5 * (X + X.T))
    return V[:, lam > 1e-6 * max(float(lam.max()), 1e-300)]


def solve_sdcp(
    Q: np.ndarray,
    K: np.ndarray,
    tol: float = 1e-12,
    max_iter: int = 20_000,
    guess: np.ndarray | None = None,
    null: float = 1e-15,
) -> np.ndarray:
    """The semidefinite complementarity problem of the central flow with k tracked
    directions (Cohen et al. 2025, §3: Σ = U X Uᵀ with a full k×k matrix X):

        X ⪰ 0,    Y = Q + B[X] ⪰ 0,    ⟨X, Y⟩ = 0,    B[X]_ij = Σ_ab K_(ij),(ab) X_ab,

    with ``K`` (k², k²) a PSD Gram matrix, so that this is the convex problem
    min_{X ⪰ 0} ½⟨X, B[X]⟩ + ⟨Q, X⟩. Solved by accelerated projected gradient (FISTA,
    step 1/λ_max(K), projection onto the PSD cone by clipping eigenvalues) until the
    fixed-point residual ‖X − Π(X − (Q + B[X])/λ_max)‖ is ≤ ``tol``·scale, then made exact
    on its face: with V spanning the range of X, Z solves the linear system
    Vᵀ(Q + B[VZVᵀ])V = 0 and is kept when the KKT conditions hold. With ``guess`` (the
    previous substep's X: a flow's X moves slowly) that face is tried first, which is one
    small linear solve instead of FISTA's iterations — FISTA needs √κ(K) of them, and
    RMSProp's coupling (its ν-part ∝ (2/η)³ next to the w-part) makes κ large. For k = 1
    it is :func:`solve_lcp`'s scalar problem. Where B is singular on the symmetric
    matrices (eigenvalues ≤ ``null`` of its largest), the solution is not unique and the
    one of smallest Frobenius norm is returned (:func:`_smallest`).
    """
    Q, K = np.asarray(Q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or Q.size == 0:
        raise UserError(f"Q must be a non-empty square matrix, got shape {Q.shape}")
    k = Q.shape[0]
    if K.shape != (k * k, k * k):
        raise UserError(f"K must have shape ({k * k}, {k * k}) for a {k}×{k} Q, got {K.shape}")
    if not (np.isfinite(Q).all() and np.isfinite(K).all()):
        raise UserError("Q and K must be finite (no NaN or inf)")
    Q = 0.5 * (Q + Q.T)
    if np.linalg.eigvalsh(Q).min() >= 0:
        return np.zeros((k, k))
    if guess is not None and np.shape(guess) == (k, k) and np.abs(guess).max() > 0:
        X = _face_solution(Q, K, _range(np.asarray(guess, dtype=np.float64)), null)
        if X is not None:
            return _smallest(Q, K, X, null)
    lmax = float(np.linalg.eigvalsh(0.5 * (K + K.T)).max())
    if not lmax > 0:  # no coupling: nothing can hold the directions at the edge
        return np.zeros((k, k))
    step = 1.0 / lmax
    scale = max(1.0, float(np.abs(Q).max()))

    def grad(X: np.ndarray) -> np.ndarray:
        return Q + (K @ X.reshape(-1)).reshape(k, k)

    # FISTA from 0, not from the guess: where B is singular (directions that do not
    # couple) the solution is not unique, and from 0 FISTA stays at the smallest one
    X = Z = np.zeros((k, k))
    t = 1.0
    for _ in range(max_iter):
        X_new = _psd(Z - step * grad(Z))
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        Z = X_new + (t - 1) / t_new * (X_new - X)
        X, t = X_new, t_new
        if np.abs(X - _psd(X - step * grad(X))).max() <= tol * scale * step:
            break
    Xf = _face_solution(Q, K, _range(X), null) if np.abs(X).max() > 0 else None
    return _smallest(Q, K, X if Xf is None else Xf, null)


def _smallest(Q: np.ndarray, K: np.ndarray, X: np.ndarray, null: float) -> np.ndarray:
    """The solution of smallest Frobenius norm among those with X's B[X]: where B is
    singular on the symmetric matrices (directions that do not couple, e.g. two independent
    ones held at once) the SDCP's solution is not unique — the flow's velocity, which sees
    only B[X], is the same for all of them, but X (GD's oscillation covariance) is not. The
    smallest one has no correlation the dynamics do not force (for independent directions:
    none), and does not depend on the basis U (a rotation of U rotates X and keeps its
    norm). X minus its part in B's null space, kept when it is still ⪰ 0 and
    complementary to Y = Q + B[X]."""
    k = Q.shape[0]
    lift = _sym_basis(k).reshape(-1, k * k)
    lam, V = np.linalg.eigh(lift @ (0.5 * (K + K.T)) @ lift.T)
    N = V[:, lam <= null * max(float(lam.max()), 1e-300)]
    if N.shape[1] == 0:
        return X
    z = lift @ X.reshape(-1)
    Xs = (lift.T @ (z - N @ (N.T @ z))).reshape(k, k)
    BX = (K @ X.reshape(-1)).reshape(k, k)
    Y = Q + 0.5 * (BX + BX.T)
    scale = max(1.0, float(np.abs(Q).max()), float(np.abs(BX).max()))
    if np.linalg.eigvalsh(Xs).min() < -1e-10 * max(float(np.abs(Xs).max()), 1e-300):
        return X
    if abs(float(np.sum(Xs * Y))) > max(null, 1e-10) * scale * max(float(np.abs(Xs).max()), 1.0):
        return X
    return _psd(Xs)


def _sharpness_matrix(
    model: nn.Module,
    params: list[torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: Batch,
    U: torch.Tensor,
    diagonal: bool = False,
) -> tuple[np.ndarray, torch.Tensor]:
    """(M = UᵀHU, D with D[i, j] = ∇_w(u_iᵀHu_j) at fixed U): the k×k Hessian block on
    the tracked directions and its gradients, by triple backpropagation (``diagonal``:
    the i = j entries only, the rest left 0)."""
    x, y = batch
    k = U.shape[1]
    with torch.enable_grad():
        g = torch.autograd.grad(loss_fn(forward(model, x), y), params, create_graph=True)
        gflat = _flat(g, params)
        hus = []
        for j in range(k):
            u = U[:, j].to(gflat)
            hu = torch.autograd.grad(gflat @ u, params, create_graph=True, allow_unused=True)
            hus.append(_flat(hu, params))
        M = torch.zeros(k, k, dtype=torch.float64)
        D = torch.zeros(k, k, gflat.numel(), dtype=gflat.dtype, device=gflat.device)
        every = itertools.combinations_with_replacement(range(k), 2)
        pairs = zip(range(k), range(k), strict=True) if diagonal else every
        for i, j in pairs:
            s = hus[j] @ U[:, i].to(gflat)
            ds = torch.autograd.grad(s, params, retain_graph=True, allow_unused=True)
            M[i, j] = M[j, i] = float(s.detach())
            D[i, j] = D[j, i] = _flat(ds, params).detach()
    return M.numpy(), D


def _flat(ts: tuple[torch.Tensor | None, ...], params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (torch.zeros_like(p) if t is None else t).reshape(-1)
            for t, p in zip(ts, params, strict=True)
        ]
    )


Derivatives = Literal["auto", "differences", "autograd"]


def wrong_third_derivatives(model: nn.Module) -> str | None:
    """The first submodule whose third derivatives PyTorch computes wrongly, or None.

    ``layer_norm``, ``instance_norm`` and training-mode ``batch_norm`` save their mean and
    inverse standard deviation without autograd history; their double backward accounts
    for that analytically, so gradients and Hessian-vector products are right, but a third
    backward treats the statistics as constants and is silently wrong (pytorch/pytorch
    issues 175754 and 186256; checked on torch 2.13: relative errors 1.9–2.8 against
    finite differences on one such layer, 133% on ∇S of a one-layer GPT-2). Group norm,
    RMS norm and eval-mode batch norm are right. Modules calling ``F.layer_norm`` directly
    (not subclasses of ``nn.LayerNorm``) are not detected.
    """
    for name, m in model.named_modules():
        norm = isinstance(m, nn.LayerNorm | nn.modules.instancenorm._InstanceNorm)
        if norm or (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training):
            return f"{name or 'the model'} ({type(m).__name__})"
    return None


class _Derivatives:
    """What a flow needs beyond the gradient, at the point w it has reached: Hessian-vector
    products (for Lanczos) and the block M = UᵀHU on the tracked directions with its
    gradients D[i, j] = ∇_w(u_iᵀHu_j) at fixed U.

    ``"autograd"``: exact, by double and triple backpropagation (a Hessian-vector product
    costs about two gradients, a third-order product about seven). ``"differences"``: from
    gradients alone (the gradient at w is the flow's own, already paid for),

        Hv ≈ [∇L(w + h₁v̂) − ∇L(w)]·‖v‖/h₁,                         (forward difference)
        ∇_w(aᵀHa) ≈ [∇L(w + h₂â) − 2∇L(w) + ∇L(w − h₂â)]·‖a‖²/h₂²,

    with off-diagonal entries by polarization (a = u_i + u_j), one gradient per product and
    two per third-order product. The steps balance truncation against round-off in the
    model's dtype (unit round-off u): h₁ = √u·(1 + ‖w‖) and h₂ = u^{1/4}·(1 + ‖w‖), so both
    errors are O(√u) relative (Nocedal & Wright 2006, *Numerical Optimization*, §8.1, eq.
    8.7 and the step rules there): about 1e-8 in float64 and 1e-3 in float32 on the
    benchmark MLP — below the error that Lanczos's tolerance (1e-3) already leaves in the
    eigenvectors. The forward difference's error is a bias, (h₁/2)·∇³L[v̂, v̂], which moves a
    Ritz value by up to about h₁‖∇³L‖ — in float32 about 1e-3 relative, comparable to the
    Lanczos tolerance. Differences need only first derivatives, so they are also right
    where PyTorch's third derivatives are not (:func:`wrong_third_derivatives`: layer
    norm, instance norm, training-mode batch norm), where ``"autograd"`` is refused.
    ``"auto"``: autograd for a model in another dtype than float64 without such layers
    (exact), differences otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[torch.Tensor],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batch: Batch,
        how: Derivatives,
    ) -> None:
        self.model, self.params, self.loss_fn, self.batch = model, params, loss_fn, batch
        self.how: str = how
        self.dtype = params[0].dtype
        bad = wrong_third_derivatives(model)
        if how == "autograd" and bad is not None:
            raise UserError(
                f"derivatives='autograd' would be silently wrong here: PyTorch's third "
                f"derivatives through {bad} treat the normalisation's statistics as "
                "constants (pytorch/pytorch#175754); use derivatives='differences'"
            )
        if how == "auto":
            exact = self.dtype != torch.float64 and bad is None
            self.how = "autograd" if exact else "differences"
        # the SDCP's null threshold: what differences cannot resolve (NULL_COUPLING)
        self.null = NULL_COUPLING if self.how == "differences" else 1e-15
        self.w = self.g = torch.zeros(0)
        self.h1 = self.h2 = 0.0

    def at(self, w: torch.Tensor, g: torch.Tensor) -> None:
        """Take w (the model's parameters are set to it) and the gradient g there."""
        self.w, self.g = w.detach().to(self.dtype), g.detach().to(self.dtype)
        unit = torch.finfo(self.dtype).eps
        scale = 1.0 + float(self.w.norm())
        self.h1, self.h2 = math.sqrt(unit) * scale, unit**0.25 * scale

    def _grad(self, v: torch.Tensor) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(v, self.params)
        x, y = self.batch
        with torch.enable_grad():
            loss = self.loss_fn(forward(self.model, x), y)
            g = torch.autograd.grad(loss, self.params, allow_unused=True)
        return _flat(g, self.params).detach()

    def _restore(self) -> None:
        torch.nn.utils.vector_to_parameters(self.w, self.params)

    def matvec(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[], int]]:
        """(v ↦ Hv on float64 vectors, the number of products made so far)."""
        if self.how == "autograd":
            H = LossHessian(
                self.model, self.loss_fn, self.batch, params=self.params, cache_graph=True
            )
            return H.matvec, lambda: H.calls
        calls = [0]

        def mv(v: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            n = float(v.norm())
            if n == 0:
                return torch.zeros_like(v)
            vd = v.to(self.w)
            out = (self._grad(self.w + (self.h1 / n) * vd) - self.g) * (n / self.h1)
            self._restore()
            return out.to(v)

        return mv, lambda: calls[0]

    def block(
        self, U: torch.Tensor, ritz: torch.Tensor, diagonal: bool = False
    ) -> tuple[np.ndarray, torch.Tensor]:
        """(M = UᵀHU, D) as :func:`_sharpness_matrix` (``diagonal``: i = j entries only), for
        U the Ritz vectors of a Lanczos run on this operator and ``ritz`` their values. With
        differences, M = diag(ritz): the Rayleigh–Ritz block itself (QᵀHQ = T, so UᵀHU =
        diag θ), whose error is the products' — a second difference of gradients would add
        the truncation error of its larger step."""
        if self.how == "autograd":
            return _sharpness_matrix(self.model, self.params, self.loss_fn, self.batch, U, diagonal)
        k, dim = U.shape[1], self.w.numel()
        D = torch.zeros(k, k, dim, dtype=self.dtype, device=self.w.device)

        theta = ritz[:k].double().cpu().numpy()
        tau = torch.finfo(self.dtype).eps ** 0.25

        def third(a: torch.Tensor, curvature: float) -> torch.Tensor:
            # the same pair's first difference aᵀ(g₊ − g₋)/2s must give aᵀHa (known:
            # the Ritz values): its error (s²/6)·∂³ measures how nonlinear the loss is
            # along a at this step, and the step shrinks until it is ≤ u^{1/4} relative
            # (at most 3 times: where round-off dominates, shrinking would not help)
            step = self.h2 / float(a.norm())
            for _ in range(4):
                gp, gm = self._grad(self.w + step * a), self._grad(self.w - step * a)
                first = float(a.double() @ (gp - gm).double()) / (2 * step)
                err = abs(first - curvature) / max(abs(curvature), 1e-300)
                if err <= tau:
                    break
                step /= min(max(2.0, 2 * math.sqrt(err / tau)), 100.0)
            return (gp - 2 * self.g + gm) / step**2

        Ud = U.to(self.w)
        for i in range(k):
            D[i, i] = third(Ud[:, i], float(theta[i]))
        if not diagonal:
            for i, j in itertools.combinations(range(k), 2):
                daa = third(Ud[:, i] + Ud[:, j], theta[i] + theta[j])
                dij = 0.5 * (daa - D[i, i] - D[j, j])
                # polarization's error is ~tau of its terms: a smaller entry is no
                # coupling at all (the SDCP's X_ij is not unique there, and noise would
                # pick one at random; exact zeros keep FISTA's smallest solution)
                noise = tau * float(daa.norm() + D[i, i].norm() + D[j, j].norm())
                if float(dij.norm()) > noise:
                    D[i, j] = D[j, i] = dij
        self._restore()
        return np.diag(theta), D


def _sharpness_gradients(
    model: nn.Module,
    params: list[torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: Batch,
    U: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S_i = u_iᵀHu_i, ∇_w S_i) for the columns u_i of ``U``: the diagonal of
    :func:`_sharpness_matrix`."""
    M, D = _sharpness_matrix(model, params, loss_fn, batch, U, diagonal=True)
    idx = torch.arange(U.shape[1])
    return torch.from_numpy(np.diag(M).copy()).to(D.dtype), D[idx, idx]


OVERSHOOT = 1.05
"""A fresh Lanczos reading of the tracked block above this multiple of 2/η means a direction
the flow was not holding has crossed the edge (the tracked ones sit at 2/η to first order
between refreshes): :func:`central_flow` warns once."""


def _overshoot_message(ratio: float, t: float, k: int, auto: bool, opt: str = "GD") -> str:
    fix = "raise max_k" if auto else "use k='auto' or a larger k"
    return (
        f"central flow: at step {t:.0f} a fresh reading puts the top eigenvalue at "
        f"{ratio:.2f}·2/η: a direction outside the {k} held ones is past the edge (or the "
        f"start is above it). The flow pulls it back at once, which {opt} does not do; {fix}"
    )


def _flow_setup(
    model: nn.Module,
    steps: int,
    k: int | Literal["auto"],
    max_k: int,
    refresh: int,
    record_every: int,
    derivatives: str,
) -> tuple[nn.Module, list[torch.Tensor], int, int, int, bool]:
    """Check the arguments shared by the flows and copy the model: (the copy, its
    trainable parameters, their count, the starting k, the cap on k, whether k is auto)."""
    if derivatives not in ("auto", "differences", "autograd"):
        raise UserError(
            f"derivatives must be 'auto', 'differences' or 'autograd', got {derivatives!r}"
        )
    auto = k == "auto"
    for name, v in (
        ("steps", steps),
        ("k", 1 if auto else k),
        ("max_k", max_k),
        ("refresh", refresh),
        ("record_every", record_every),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            what = "a positive integer or 'auto'" if name == "k" else "a positive integer"
            raise UserError(f"{name} must be {what}, got {v!r}")
    model = copy.deepcopy(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("the model has no parameters that require grad")
    dim = sum(p.numel() for p in params)
    k0 = 1 if auto else min(int(k), dim)
    return model, params, dim, k0, min(max_k, dim) if auto else k0, auto


STOP_RATIO = 100.0
"""Default ``stop_ratio`` of the flows: a gradient or stable flow whose sharpness passes this
multiple of 2/η is stopped (its Euler substep, 1/(ηS), would otherwise shrink without bound
— RMSProp's stable flow grows S exponentially as ν decays)."""


def _stop_ratio(v: object) -> float:
    if v is None:
        return math.inf
    if isinstance(v, bool) or not isinstance(v, int | float) or not v > 1:
        raise UserError(f"stop_ratio must be a number > 1 or None, got {v!r}")
    return float(v)


def _stop(kind: str, ratio: float, limit: float, t: float) -> bool:
    """Whether a gradient/stable flow stops at this record (sharpness ``ratio``·2/η past
    ``limit``); warns when it does."""
    if kind == "central" or ratio <= limit:
        return False
    warnings.warn(
        f"the {kind} flow stopped at step {t:.0f}: its sharpness is {ratio:.0f}·2/η "
        f"(stop_ratio = {limit:g}), and its substeps 1/(ηS) would keep shrinking; the "
        "result ends there (FlowResult.stopped)",
        RuntimeWarning,
        stacklevel=3,
    )
    return True


def _due(t: float, t_ref: float, period: float, rose: bool) -> bool:
    """Whether a flow refreshes its eigenvectors at time ``t`` (last refresh at ``t_ref``):
    every ``period`` steps of time, and at once when ``rose`` (a gradient/stable-flow
    substep raised the loss: S has outgrown the step 1/(ηS) taken from the last reading).
    On the clock rather than every n substeps, so that the stiff flows' many short
    substeps do not multiply the Lanczos cost."""
    return rose or t - t_ref >= period - 1e-9


def _track(
    mv: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    k: int,
    k_cap: int,
    thr: float,
    prev: torch.Tensor | None,
    gen: torch.Generator,
    mix: float,
    tol: float,
    max_products: int | None,
    seed: int,
) -> tuple[LanczosResult, int]:
    """One eigenvector refresh of a flow: Lanczos for the top k pairs of ``mv`` (k + 1
    while k < ``k_cap``, to watch the next one), warm-started from ``prev`` (the sum of the
    last vectors) mixed with a fresh random unit vector (weight ``mix``) and capped at
    ``max_products`` (0: 4k + 4; the first reading, ``prev`` None, is never capped).
    Returns the reading and k, grown by one when the next Ritz value has reached ``thr``."""
    v0 = None
    if prev is not None:
        v0 = prev
        if mix > 0:
            z = torch.randn(v0.shape, generator=gen, dtype=v0.dtype)
            v0 = v0 / v0.norm() + mix * z / z.norm()
    want = min(k + 1, dim) if k < k_cap else k
    cap = None if prev is None or max_products is None else max_products or 4 * want + 4
    r = lanczos(mv, dim, want, which="LA", tol=tol, v0=v0, seed=seed, max_iter=cap)
    if want > k and r.eigenvalues.numel() > k and float(r.eigenvalues[k]) >= thr:
        k += 1  # the next eigenvalue has reached the edge: track it too
    return r, k


@with_second_order  # attention and hard-sigmoid differentiated three times
def central_flow(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: Batch,
    lr: float,
    steps: int,
    *,
    kind: Literal["central", "gradient"] = "central",
    k: int | Literal["auto"] = 1,
    max_k: int = 4,
    dt: float = 0.5,
    refresh: int = 8,
    record_every: int = 10,
    keep_params: bool = False,
    tol: float = 1e-3,
    mix: float = 0.3,
    max_products: int | None = 0,
    derivatives: Derivatives = "auto",
    seed: int = 0,
    stop_ratio: float | None = STOP_RATIO,
    progress: Callable[[int, int], None] | None = None,
) -> FlowResult:
    """Integrate the central flow (1)–(2) of full-batch GD with step ``lr`` from ``model``'s
    current parameters for ``steps`` GD steps' worth of time (the model is not modified).

    Args:
        model, loss_fn, batch: the training problem, ``loss_fn(forward(model, x), y)`` the mean loss
            GD descends (one full batch).
        kind: ``"central"`` or ``"gradient"`` (the plain gradient flow dw/dt = −η∇L).
        k: eigenvectors tracked (directions that may be at the edge at once), or
            ``"auto"``: start with one and track one more whenever the next Ritz value of a
            Lanczos refresh (run for k + 1 pairs) has reached 2/η, up to ``max_k`` — for
            losses where several eigenvalues reach the edge together, which a fixed k = 1
            lets past it. ``sigma2`` then has ``max(k reached)`` columns (zeros before a
            direction is tracked).
        max_k: the cap on k under ``k="auto"``.
        dt: Euler substep in GD steps (≤ 1; ½ keeps every stable direction monotone).
        refresh: eigenvectors and ∇S are refreshed every ``refresh·dt`` GD steps of time
            (every ``refresh`` substeps of the central flow). The gradient flow, whose
            substeps shrink to 1/(ηS) once it sharpens past 2/η, refreshes on the same
            clock, and at once after a substep that raised the loss (a sign that S has
            outgrown the step).
        record_every: GD steps between records (and step 0).
        keep_params: also record the flat parameters (for distances to GD's iterates).
        tol, mix: Lanczos tolerance and warm-start mixing (as in
            :class:`~learnmech.measure.hessian.SharpnessProbe`).
        max_products: cap on Hessian-vector products per warm-started refresh (0: 4k + 4;
            ``None``: as many as ``tol`` needs). The first reading is never capped.
        derivatives: ``"differences"`` (Hessian-vector and third-order products from
            differences of gradients, about 2 and 3.5 times cheaper; errors O(√u) relative,
            u the model dtype's unit round-off), ``"autograd"`` (exact, by double and
            triple backpropagation; refused for models with layer norm, instance norm or
            training-mode batch norm, whose third derivatives PyTorch gets wrong) or
            ``"auto"``: differences for a float64 model (errors ~1e-8) or one with such
            layers, autograd otherwise; see :class:`_Derivatives`.
        stop_ratio: the gradient flow stops (with a warning; ``FlowResult.stopped``) at the
            first record where its sharpness passes ``stop_ratio``·2/η; ``None``: never.
        progress: called with (step reached, steps) at each record.

    Returns: a :class:`FlowResult`. Raises ``FloatingPointError`` if the loss becomes
    non-finite.
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if kind not in ("central", "gradient"):
        raise UserError(f"kind must be 'central' or 'gradient', got {kind!r}")
    for name, v in (("lr", lr), ("dt", dt)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise UserError(f"{name} must be a positive finite number, got {v!r}")
    if dt > 1:
        raise UserError(f"dt must be at most 1 GD step, got {dt!r}")
    model, params, dim, k, k_cap, auto = _flow_setup(
        model, steps, k, max_k, refresh, record_every, derivatives
    )
    limit = _stop_ratio(stop_ratio)
    eta, thr = float(lr), 2.0 / float(lr)
    x_in, y_in = batch
    w = torch.nn.utils.parameters_to_vector(params).detach().clone()

    def set_w(v: torch.Tensor) -> None:
        torch.nn.utils.vector_to_parameters(v, params)

    counts = {"gradients": 0, "hvps": 0, "third_order": 0}
    clock = {"gradients": 0.0, "eigenvectors": 0.0, "third_order": 0.0, "total": 0.0}
    t_start = time.perf_counter()
    U: torch.Tensor | None = None
    S_ref = np.zeros(k)
    G = torch.zeros(k, dim, dtype=w.dtype, device=w.device)
    w_ref = w.clone()
    M_ref = np.zeros((1, 1))
    D = torch.zeros(1, 1, dim, dtype=w.dtype, device=w.device)
    gen = torch.Generator().manual_seed(seed)
    deriv = _Derivatives(model, params, loss_fn, (x_in, y_in), derivatives)
    null = deriv.null

    warned, overshoot = False, 0.0

    def refresh_eigen() -> None:
        nonlocal U, S_ref, G, w_ref, k, M_ref, D, warned, overshoot
        deriv.at(w, g)
        mv, products = deriv.matvec()
        t0 = time.perf_counter()
        prev = None if U is None else U.sum(1)
        r, k = _track(mv, dim, k, k_cap, thr, prev, gen, mix, tol, max_products, seed)
        counts["hvps"] += products()
        U = r.eigenvectors[:, :k]
        top = float(r.eigenvalues[0])
        if t > 0:  # a start above the edge is the initial condition, not a miss
            overshoot = max(overshoot, top / thr)
        if kind == "central" and top > OVERSHOOT * thr and k == k_cap and not warned:
            warned = True
            warnings.warn(_overshoot_message(top / thr, t, k, auto), RuntimeWarning, stacklevel=3)
        t1 = time.perf_counter()
        clock["eigenvectors"] += t1 - t0
        if kind == "central" and k > 1:
            M_ref, D = deriv.block(U, r.eigenvalues)
            counts["third_order"] += k * (k + 1) // 2
            clock["third_order"] += time.perf_counter() - t1
        elif kind == "central":
            M1, D1 = deriv.block(U, r.eigenvalues, diagonal=True)
            counts["third_order"] += k
            clock["third_order"] += time.perf_counter() - t1
            S_ref, G = np.diag(M1).copy(), D1[torch.arange(k), torch.arange(k)]
        else:
            S_ref = r.eigenvalues[:k].double().cpu().numpy()
        w_ref = w.clone()

    t, t_ref, L_prev = 0.0, -math.inf, math.inf
    stopped: float | None = None
    X_prev: np.ndarray | None = None  # the last substep's X: solve_sdcp's first guess
    rec_t: list[float] = []
    rec: dict[str, list] = {"loss": [], "mean": [], "sharp": [], "x": [], "w": []}
    next_rec = 0
    while True:
        set_w(w)
        t0 = time.perf_counter()
        with torch.enable_grad():
            loss = loss_fn(forward(model, x_in), y_in)
            g = _flat(torch.autograd.grad(loss, params, allow_unused=True), params).detach()
        counts["gradients"] += 1
        clock["gradients"] += time.perf_counter() - t0
        L = float(loss.detach())
        if not math.isfinite(L):
            raise FloatingPointError(f"the {kind} flow diverged at step {t:.1f} (lr = {lr})")
        if _due(t, t_ref, refresh * dt, kind != "central" and L > L_prev):
            refresh_eigen()
            t_ref = t
        L_prev = L
        if kind == "central" and k > 1:  # the k×k block, carried to first order
            dw_r = (w - w_ref).to(D.dtype)
            M_now = M_ref + (D @ dw_r).double().cpu().numpy()
            S_now = np.linalg.eigvalsh(M_now)[::-1].copy()
        elif kind == "central":
            dw_r = (w - w_ref).to(G.dtype)
            S_now = S_ref + (G @ dw_r).double().cpu().numpy()
        else:
            S_now = S_ref.copy()
        recording = t >= next_rec - 1e-9
        if recording:
            next_rec += record_every
        if kind == "gradient":
            h = min(dt, 1.0 / (eta * max(float(S_now.max()), 1e-12)))
        else:
            h = dt
        h = max(min(h, next_rec - t, steps - t), 0.0) if t < steps - 1e-9 else h
        v = -eta * g
        x = x_rep = np.zeros(k)
        mean_term = 0.0
        if kind == "central" and k > 1:
            Df = D.reshape(k * k, -1).double()
            A = h * (Df @ v.double()).cpu().numpy().reshape(k, k)
            K = 0.5 * h * eta * (Df @ Df.T).cpu().numpy()
            X = solve_sdcp(thr * np.eye(k) - M_now - A, K, guess=X_prev, null=null)
            X_prev = X
            if np.abs(X).max() > 0:
                v = v - 0.5 * eta * (torch.from_numpy(X.reshape(-1)).to(Df) @ Df).to(v)
                X_rep = solve_sdcp(_psd(thr * np.eye(k) - M_now) - A, K, guess=X, null=null)
                lam, V = np.linalg.eigh(M_now)
                mean_term = 0.5 * float(np.sum(X_rep * ((V * np.minimum(lam, thr)) @ V.T)))
                x_rep = np.sort(np.linalg.eigvalsh(X_rep))[::-1].clip(min=0.0)
        elif kind == "central":
            Gd = G.double()
            rate = h * (Gd @ v.double()).cpu().numpy()
            B = 0.5 * h * eta * (Gd @ Gd.T).cpu().numpy()
            x = solve_lcp(thr - S_now - rate, B)
            if x.any():
                v = v - 0.5 * eta * (torch.from_numpy(x).to(G) @ G).to(v)
                # the recorded variance leaves out the pull-back of an overshoot (a
                # discretization artefact): the x that holds S at 2/η
                x_rep = solve_lcp(np.maximum(thr - S_now, 0.0) - rate, B)
        if recording:
            rec_t.append(float(next_rec - record_every))
            rec["loss"].append(L)
            if kind == "central" and k > 1:
                rec["mean"].append(L + mean_term)
            else:
                rec["mean"].append(L + 0.5 * float(np.dot(x_rep, np.minimum(S_now, thr))))
            rec["sharp"].append(float(S_now.max()))
            rec["x"].append(x_rep.tolist())
            if keep_params:
                rec["w"].append(w.double().cpu().numpy())
            if progress is not None:
                progress(int(rec_t[-1]), steps)
            if _stop(kind, float(S_now.max()) / thr, limit, t):
                stopped = t
                break
        if t >= steps - 1e-9:
            break
        w = w + h * v
        t += h
    xs = np.zeros((len(rec_t), k))
    for i, row in enumerate(rec["x"]):
        xs[i, : len(row)] = row
    return FlowResult(
        kind=kind,
        lr=eta,
        steps=np.asarray(rec_t),
        loss=np.asarray(rec["loss"]),
        mean_loss=np.asarray(rec["mean"]),
        sharpness=np.asarray(rec["sharp"]),
        sigma2=xs,
        params=np.stack(rec["w"]) if keep_params else None,
        overshoot=overshoot,
        stopped=stopped,
        counts=counts,
        seconds=clock | {"total": time.perf_counter() - t_start},
    )
