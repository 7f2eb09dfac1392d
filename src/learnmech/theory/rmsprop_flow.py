"""The central flow of RMSProp at its edge of stability (Cohen, Damian, Talwalkar, Kolter &
Lee 2025, "Understanding Optimization in Deep Learning with Central Flows", ICLR; §5 and
the paper's "central_flow_substep" for a preconditioned optimizer).

RMSProp (``torch.optim.RMSprop`` without momentum or centring; Adam with β₁ = 0 and no
bias correction) keeps an EMA of the squared gradient and takes preconditioned steps,

    ν_t = β₂ν_{t−1} + (1 − β₂) g_t²,      w_{t+1} = w_t − η D_t⁻¹ g_t,   D = √ν + ε,

so it is gradient descent with the preconditioner P = D/η. Its stability condition is on
the *preconditioned sharpness* S = λ_max(D⁻¹H) ≤ 2/η (the generalized eigenvalue of
(H, D), :func:`~learnmech.measure.hessian.stability_threshold`). The central flow is the
ODE of the time-averaged (w, ν), t in RMSProp steps:

    dw/dt = −η D⁻¹[∇L + ½ Σ_ij X_ij ∇_w(u_iᵀHu_j)],                                  (1)
    dν/dt = c[∇L² + Σ_ij X_ij (Hu_i)⊙(Hu_j) − ν],     c = (1 − β₂)/β₂,               (2)

with U = (u_i) the top generalized eigenvectors (Hu = S Du, UᵀDU = I) and the k×k
oscillation covariance X ⪰ 0 fixed by complementarity with the stability block,

    X ⪰ 0,   A = (2/η)UᵀDU − UᵀHU ⪰ 0,   ⟨X, A⟩ = 0                                  (3)

(the oscillation δ around w has covariance Σ = UXUᵀ, and (2) is E[(∇L + Hδ)²]). The factor
1/β₂ in c is the paper's: the step uses the ν already updated with the current gradient,
ν_t − ν_{t−1} = ((1 − β₂)/β₂)(g_t² − ν_t). The time-averaged loss is
L̄ = L + ½⟨X, UᵀHU⟩ (≈ L + tr X/η on the edge).

Discretization (as for GD, :mod:`learnmech.theory.central_flow`): Euler substeps of h RMSProp
steps; X is chosen so that the *linearized next* block A + h dA/dt satisfies (3), a
semidefinite complementarity problem (:func:`~learnmech.theory.central_flow.solve_sdcp`;
for k = 1 the scalar LCP). dA/dt has a part free of X and a part linear in X, with two
terms: the w-part ½η⟨∇(u_iᵀHu_j), D⁻¹∇(u_aᵀHu_b)⟩ (GD's, in the D⁻¹ metric), and the
ν-part (2/η)·∂(UᵀDU)/∂ν·c(Hu_a)(Hu_b) with ∂D_k/∂ν_k = 1/(2√ν_k): the oscillation raises
ν, which shrinks the effective step. As in the paper's code, Hu inside the coupling is
taken at the edge, Hu = (2/η)Du, which makes the coupling a PSD Gram matrix; in (2) the
same value is used, so the update matches the problem X solves. Between Lanczos
refreshes (every ``refresh·dt`` steps of time, on v ↦ D^{-½}HD^{-½}v) UᵀHU and UᵀDU are
carried to first order in (w, ν) at fixed U.

``kind="stable"`` is the paper's *stable flow* (X = 0: the ODE that RMSProp would follow if
it never oscillated), the negative control. Differences from the paper: no bias
correction (the paper's code has it as an option), no momentum, and ν starts from ``nu0``
(default ∇L(w₀)², which is what ``torch.optim.RMSprop`` uses at its first step when its
``square_avg`` is set to ∇L(w₀)² beforehand).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.model_io import forward, with_second_order
from learnmech.theory.central_flow import (
    OVERSHOOT,
    STOP_RATIO,
    Derivatives,
    FlowResult,
    _Derivatives,
    _due,
    _flat,
    _flow_setup,
    _overshoot_message,
    _psd,
    _stop,
    _stop_ratio,
    _track,
    solve_lcp,
    solve_sdcp,
)

__all__ = ["matching_rmsprop", "rmsprop_central_flow"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _positive(name: str, v: object, *, upper: float = math.inf, zero: bool = False) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or not (v >= 0 if zero else v > 0) or v >= upper:  # type: ignore[operator]
        lo = "≥ 0" if zero else "> 0"
        hi = f" and < {upper:g}" if math.isfinite(upper) else ""
        raise UserError(f"{name} must be a finite number {lo}{hi}, got {v!r}")
    return float(v)  # type: ignore[arg-type]


def _gen_eigs(M: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalized eigenvalues (descending) of the symmetric pair (M, N ≻ 0) and the
    Cholesky factor of N."""
    Lc = np.linalg.cholesky(0.5 * (N + N.T))
    Li = np.linalg.inv(Lc)
    lam = np.linalg.eigvalsh(Li @ (0.5 * (M + M.T)) @ Li.T)
    return lam[::-1].copy(), Lc


def _solve(Q: np.ndarray, K: np.ndarray, guess: np.ndarray | None, null: float) -> np.ndarray:
    """X for the linearized next block Q: the scalar LCP for k = 1, else the SDCP."""
    if Q.shape == (1, 1):
        return solve_lcp(Q.reshape(1), K).reshape(1, 1)
    return solve_sdcp(Q, K, guess=guess, null=null)


def matching_rmsprop(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: Batch,
    lr: float,
    *,
    beta2: float = 0.99,
    eps: float = 1e-8,
) -> torch.optim.RMSprop:
    """``torch.optim.RMSprop`` (no momentum, not centred) on ``model``'s parameters whose
    square average starts at ∇L(w₀)² — :func:`rmsprop_central_flow`'s default ν₀ — instead
    of torch's zeros (whose first step moves every coordinate by η/√(1 − β₂)), so that a
    real run and the flow start from the same state. ``loss_fn(forward(model, x), y)`` is
    the full-batch loss; the gradient is taken without touching ``.grad``."""
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    eta = _positive("lr", lr)
    beta2 = _positive("beta2", beta2, upper=1.0)
    eps = _positive("eps", eps, zero=True)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        loss = loss_fn(forward(model, batch[0]), batch[1])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    opt = torch.optim.RMSprop(params, lr=eta, alpha=beta2, eps=eps)
    for p, g in zip(params, grads, strict=True):
        sq = torch.zeros_like(p) if g is None else g.detach() ** 2
        opt.state[p] = {"step": torch.tensor(0.0), "square_avg": sq}
    return opt


@with_second_order  # attention and hard-sigmoid differentiated three times
def rmsprop_central_flow(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch: Batch,
    lr: float,
    steps: int,
    *,
    beta2: float = 0.99,
    eps: float = 1e-8,
    nu0: torch.Tensor | None = None,
    kind: Literal["central", "stable"] = "central",
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
    """Integrate RMSProp's central flow (1)–(3) from ``model``'s parameters and ``nu0`` for
    ``steps`` RMSProp steps' worth of time (the model is not modified).

    Args:
        model, loss_fn, batch: the training problem; ``loss_fn(forward(model, x), y)`` is
            the mean loss on the one full batch.
        lr, beta2, eps: RMSProp's η, β₂ (torch's ``alpha``) and ε (added to √ν).
        nu0: the flat ν (parameter order of ``model.parameters()`` that require grad) used
            at the first step; default ∇L(w₀)². Must be ≥ 0, and √ν + ε > 0 everywhere.
        kind: ``"central"`` or ``"stable"`` (X = 0, the negative control).
        k, max_k, dt, refresh, record_every, keep_params, tol, mix, max_products,
            derivatives, seed, stop_ratio, progress: as in
            :func:`~learnmech.theory.central_flow.central_flow`; the sharpness recorded is
            the preconditioned λ_max(D⁻¹H) against 2/η.

    Returns: a :class:`~learnmech.theory.central_flow.FlowResult` (``kind`` "rmsprop-central"
    or "rmsprop-stable"); with ``keep_params`` its ``nu`` holds ν at each record. Warns once,
    like :func:`~learnmech.theory.central_flow.central_flow`, when a fresh reading finds a
    direction outside the held ones past the edge (``overshoot``). Raises
    ``FloatingPointError`` if the loss becomes non-finite.
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if kind not in ("central", "stable"):
        raise UserError(f"kind must be 'central' or 'stable', got {kind!r}")
    eta = _positive("lr", lr)
    beta2 = _positive("beta2", beta2, upper=1.0)
    eps = _positive("eps", eps, zero=True)
    dt = _positive("dt", dt)
    if dt > 1:
        raise UserError(f"dt must be at most 1 step, got {dt!r}")
    model, params, dim, k, k_cap, auto = _flow_setup(
        model, steps, k, max_k, refresh, record_every, derivatives
    )
    limit = _stop_ratio(stop_ratio)
    thr, c = 2.0 / eta, (1.0 - beta2) / beta2
    x_in, y_in = batch
    f64 = torch.float64
    w = torch.nn.utils.parameters_to_vector(params).detach().to(f64).clone()
    dev = w.device

    def set_w(v: torch.Tensor) -> None:
        torch.nn.utils.vector_to_parameters(v.to(params[0].dtype), params)

    def loss_grad() -> tuple[float, torch.Tensor]:
        set_w(w)
        with torch.enable_grad():
            loss = loss_fn(forward(model, x_in), y_in)
            g = _flat(torch.autograd.grad(loss, params, allow_unused=True), params)
        return float(loss.detach()), g.detach().to(f64)

    counts = {"gradients": 0, "hvps": 0, "third_order": 0}
    clock = {"gradients": 0.0, "eigenvectors": 0.0, "third_order": 0.0, "total": 0.0}
    t_start = time.perf_counter()
    if nu0 is None:
        nu = loss_grad()[1] ** 2
        counts["gradients"] += 1
    else:
        if not isinstance(nu0, torch.Tensor):
            raise UserError(f"nu0 must be a torch.Tensor, got {type(nu0).__name__}")
        if nu0.shape != (dim,):
            raise UserError(
                f"nu0 must have shape ({dim},) (one entry per parameter), got {tuple(nu0.shape)}"
            )
        nu = nu0.detach().to(dev, f64).clone()
        if not torch.isfinite(nu).all() or (nu < 0).any():
            raise UserError("nu0 must be finite and ≥ 0")
    if eps == 0 and (nu == 0).any():
        raise UserError(
            f"ν is 0 in {int((nu == 0).sum())} coordinate(s) and eps = 0: the step there is "
            "infinite (a parameter with a zero gradient); pass eps > 0 or a positive nu0"
        )

    U = torch.zeros(dim, 1, dtype=f64, device=dev)
    w_ref, nu_ref = w.clone(), nu.clone()
    s_ref = torch.zeros(dim, dtype=f64, device=dev)
    M_ref = np.zeros((1, 1))
    Dm = torch.zeros(1, 1, dim, dtype=f64, device=dev)
    S_stable = np.zeros(1)
    v_prev: torch.Tensor | None = None
    gen = torch.Generator().manual_seed(seed)
    deriv = _Derivatives(model, params, loss_fn, (x_in, y_in), derivatives)
    null = deriv.null

    warned, overshoot = False, 0.0

    def refresh_eigen() -> None:
        nonlocal U, w_ref, nu_ref, s_ref, M_ref, Dm, S_stable, k, v_prev, warned, overshoot
        set_w(w)
        deriv.at(w, g)
        hv, products = deriv.matvec()
        r = (nu.sqrt() + eps).rsqrt().cpu()

        def mv(v: torch.Tensor) -> torch.Tensor:
            return r * hv(r * v)

        t0 = time.perf_counter()
        res, k = _track(mv, dim, k, k_cap, thr, v_prev, gen, mix, tol, max_products, seed)
        counts["hvps"] += products()
        Ut = res.eigenvectors[:, :k]
        top = float(res.eigenvalues[0])
        if t > 0:  # a start above the edge is the initial condition, not a miss
            overshoot = max(overshoot, top / thr)
        if kind == "central" and top > OVERSHOOT * thr and k == k_cap and not warned:
            warned = True
            msg = _overshoot_message(top / thr, t, k, auto, "RMSProp")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        v_prev = Ut.sum(1)
        U = (r[:, None] * Ut).to(dev, f64)  # generalized eigenvectors: UᵀDU = I
        t1 = time.perf_counter()
        clock["eigenvectors"] += t1 - t0
        S_stable = res.eigenvalues[:k].double().cpu().numpy()
        if kind == "central":
            M_ref, D_ = deriv.block(U, res.eigenvalues)
            Dm = D_.to(f64)
            counts["third_order"] += k * (k + 1) // 2
            clock["third_order"] += time.perf_counter() - t1
        w_ref, nu_ref = w.clone(), nu.clone()
        s_ref = 0.5 / nu.sqrt().clamp_min(1e-150)

    t, next_rec, t_ref, L_prev = 0.0, 0, -math.inf, math.inf
    stopped: float | None = None
    X_prev = np.zeros((0, 0))
    rec_t: list[float] = []
    rec: dict[str, list] = {"loss": [], "mean": [], "sharp": [], "x": [], "w": [], "nu": []}
    while True:
        t0 = time.perf_counter()
        L, g = loss_grad()
        counts["gradients"] += 1
        clock["gradients"] += time.perf_counter() - t0
        if not math.isfinite(L):
            raise FloatingPointError(
                f"the RMSProp {kind} flow diverged at step {t:.1f} (lr = {lr})"
            )
        if _due(t, t_ref, refresh * dt, kind != "central" and L > L_prev):
            refresh_eigen()
            t_ref = t
        L_prev = L
        D = nu.sqrt() + eps
        a_w = -eta * g / D
        a_nu = c * (g * g - nu)
        recording = t >= next_rec - 1e-9
        if recording:
            next_rec += record_every
        if kind == "central":
            M_now = M_ref + (Dm @ (w - w_ref)).cpu().numpy()
            Us = U * (s_ref * (nu - nu_ref))[:, None]
            N_now = np.eye(k) + (Us.T @ U).cpu().numpy()
            S_now, Lc = _gen_eigs(M_now, N_now)
        else:
            S_now = S_stable
        h = dt if kind == "central" else min(dt, 1.0 / (eta * max(float(S_now.max()), 1e-12)))
        h = max(min(h, next_rec - t, steps - t), 0.0) if t < steps - 1e-9 else h
        v_w, v_nu = a_w, a_nu
        x_rep = np.zeros(k)
        mean_term = 0.0
        if kind == "central":
            Df = Dm.reshape(k * k, dim)
            dM = (Df @ a_w).cpu().numpy().reshape(k, k)
            dN = ((U * (s_ref * a_nu)[:, None]).T @ U).cpu().numpy()
            A_now = thr * N_now - M_now
            stable_part = h * (thr * dN - dM)
            Wd = Df / D.sqrt()
            UU = (U[:, :, None] * U[:, None, :]).reshape(dim, k * k)
            Z = UU * (s_ref.sqrt() * D)[:, None]
            K = (0.5 * h * eta * (Wd @ Wd.T) + h * c * thr**3 * (Z.T @ Z)).cpu().numpy()

            guess = X_prev if X_prev.shape == (k, k) else None
            X = _solve(A_now + stable_part, K, guess, null)
            X_prev = X
            if np.abs(X).max() > 0:
                Xt = torch.from_numpy(X).to(dev, f64)
                v_w = a_w - 0.5 * eta * (Xt.reshape(-1) @ Df) / D
                v_nu = a_nu + c * thr**2 * D**2 * ((U @ Xt) * U).sum(1)
                # the recorded variance leaves out the pull-back of an overshoot
                X_rep = _solve(_psd(A_now) + stable_part, K, X, null)
                # L̄ − L = ½⟨X, UᵀHU⟩ with UᵀHU's generalized eigenvalues capped at 2/η
                Li = np.linalg.inv(Lc)
                lam, V = np.linalg.eigh(Li @ M_now @ Li.T)
                M_cap = Lc @ ((V * np.minimum(lam, thr)) @ V.T) @ Lc.T
                mean_term = 0.5 * float(np.sum(X_rep * M_cap))
                x_rep = np.sort(np.linalg.eigvalsh(0.5 * (X_rep + X_rep.T)))[::-1].clip(min=0.0)
        if recording:
            rec_t.append(float(next_rec - record_every))
            rec["loss"].append(L)
            rec["mean"].append(L + mean_term)
            rec["sharp"].append(float(S_now.max()))
            rec["x"].append(x_rep.tolist())
            if keep_params:
                rec["w"].append(w.cpu().numpy().copy())
                rec["nu"].append(nu.cpu().numpy().copy())
            if progress is not None:
                progress(int(rec_t[-1]), steps)
            if _stop(kind, float(S_now.max()) / thr, limit, t):
                stopped = t
                break
        if t >= steps - 1e-9:
            break
        w = w + h * v_w
        nu = (nu + h * v_nu).clamp_min(0.0)
        t += h
    xs = np.zeros((len(rec_t), k))
    for i, row in enumerate(rec["x"]):
        xs[i, : len(row)] = row
    return FlowResult(
        kind=f"rmsprop-{kind}",
        lr=eta,
        steps=np.asarray(rec_t),
        loss=np.asarray(rec["loss"]),
        mean_loss=np.asarray(rec["mean"]),
        sharpness=np.asarray(rec["sharp"]),
        sigma2=xs,
        params=np.stack(rec["w"]) if keep_params else None,
        nu=np.stack(rec["nu"]) if keep_params else None,
        overshoot=overshoot,
        stopped=stopped,
        counts=counts,
        seconds=clock | {"total": time.perf_counter() - t_start},
    )
