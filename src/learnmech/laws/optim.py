"""Batched L-BFGS: many independent minimizations advanced together in one set of tensors.

Scaling-law fits run the same small objective from thousands of starts (Chinchilla's
Approach 3 uses 4,500) and again for every bootstrap replicate. Each start is one row of a
(B, P) parameter tensor; the objective returns one value per row, so a single backward pass
gives every row's gradient. Every row keeps its own curvature history, step size and
convergence state — this is B separate L-BFGS runs (Nocedal & Wright 2006, Alg. 7.4–7.5,
two-loop recursion), not one run on the sum. The line search is a vectorized backtracking
search on the Armijo condition; curvature pairs with sᵀy ≤ 0 are skipped, so the implicit
Hessian stays positive definite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["BatchedResult", "batched_lbfgs"]


@dataclass
class BatchedResult:
    """Per-row minimizers, values, gradient norms, iteration counts and convergence flags."""

    x: torch.Tensor  # (B, P)
    fun: torch.Tensor  # (B,)
    grad_norm: torch.Tensor  # (B,) max-abs gradient at x
    iterations: torch.Tensor  # (B,)
    converged: torch.Tensor  # (B,) bool


def _value_and_grad(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        f = fn(xr)
        (g,) = torch.autograd.grad(f.sum(), xr)
    return f.detach(), g.detach()


def batched_lbfgs(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    *,
    history: int = 10,
    max_iter: int = 1000,
    gtol: float = 1e-9,
    ftol: float = 1e-15,
    c1: float = 1e-4,
    max_backtracks: int = 40,
    value_and_grad: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    | None = None,
) -> BatchedResult:
    """Minimize ``fn`` row by row from every row of ``x0``.

    Args:
        fn: ``fn(theta, rows)`` maps a (b, P) block of rows to (b,) values; ``rows`` holds
            those rows' indices in ``x0`` (for per-row data such as bootstrap weights). Row i
            of the output must depend only on row i of ``theta``.
        x0: (B, P) starting points.
        history: L-BFGS memory m.
        max_iter: iteration cap per row.
        gtol: a row converges when max |∂f/∂x| ≤ gtol (scipy's ``pgtol`` criterion).
        ftol: … or when its relative decrease (f_k − f_{k+1})/max(|f_k|, |f_{k+1}|, 1) ≤ ftol
            (scipy's ``factr·eps`` criterion).
        value_and_grad: optional ``(theta, rows) → (values, gradients)`` (e.g. analytic);
            default: autograd through ``fn``.
    """
    if value_and_grad is None:

        def value_and_grad(
            t: torch.Tensor, rows: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return _value_and_grad(lambda u: fn(u, rows), t)

    x = x0.detach().clone()
    B, P = x.shape
    dev, dt = x.device, x.dtype
    f, g = value_and_grad(x, torch.arange(B, device=x.device))
    S = torch.zeros(history, B, P, dtype=dt, device=dev)
    Y = torch.zeros_like(S)
    rho = torch.zeros(history, B, dtype=dt, device=dev)
    gamma = torch.ones(B, dtype=dt, device=dev)
    first = torch.ones(B, dtype=torch.bool, device=dev)
    active = g.abs().amax(1) > gtol
    converged = ~active
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    head = 0  # ring-buffer position, shared: a skipped pair is stored as zeros (ρ = 0)
    for _ in range(max_iter):
        idx = torch.nonzero(active).squeeze(1)
        if idx.numel() == 0:
            break
        # work on the active rows only: converged rows cost nothing
        xa, fa, ga = x[idx], f[idx], g[idx]
        Sa, Ya, ra = S[:, idx], Y[:, idx], rho[:, idx]
        q = ga.clone()
        alphas = []
        js = [(head - 1 - j) % history for j in range(history)]  # newest first
        for j in js:
            a = ra[j] * (Sa[j] * q).sum(1)
            q -= a[:, None] * Ya[j]
            alphas.append(a)
        r = gamma[idx][:, None] * q
        for j, a in zip(reversed(js), reversed(alphas), strict=True):
            b = ra[j] * (Ya[j] * r).sum(1)
            r += Sa[j] * (a - b)[:, None]
        d = -r
        slope = (ga * d).sum(1)
        bad = ~(slope < 0)  # not a descent direction: fall back to steepest descent
        d = torch.where(bad[:, None], -ga, d)
        slope = torch.where(bad, -(ga * ga).sum(1), slope)
        # first step of a row (or after a reset): unit step along −g/‖g‖∞, as scipy does
        fa_first = first[idx] | bad
        step = torch.where(fa_first, 1.0 / ga.abs().amax(1).clamp_min(1e-300), torch.ones_like(fa))
        # vectorized backtracking on the Armijo condition, on the rows still searching
        pending = torch.ones(idx.numel(), dtype=torch.bool, device=dev)
        x_new, f_new = xa.clone(), fa.clone()
        for _ in range(max_backtracks):
            pi = torch.nonzero(pending).squeeze(1)
            if pi.numel() == 0:
                break
            trial = xa[pi] + step[pi, None] * d[pi]
            f_trial = fn(trial, idx[pi])
            ok = torch.isfinite(f_trial) & (f_trial <= fa[pi] + c1 * step[pi] * slope[pi])
            x_new[pi[ok]] = trial[ok]
            f_new[pi[ok]] = f_trial[ok]
            pending[pi[ok]] = False
            # shrink by the minimiser of the quadratic through f(0), f'(0) and f(t),
            # safeguarded to [0.1, 0.5]·t (Nocedal & Wright 2006, §3.5)
            t, sl, f0, ft = step[pi[~ok]], slope[pi[~ok]], fa[pi[~ok]], f_trial[~ok]
            curv = ft - f0 - sl * t
            tq = torch.where(torch.isfinite(ft) & (curv > 0), -sl * t * t / (2 * curv), 0.5 * t)
            step[pi[~ok]] = torch.minimum(torch.maximum(tq, 0.1 * t), 0.5 * t)
        moved = ~pending
        f_new, g_new = value_and_grad(x_new, idx)
        s = x_new - xa
        y = g_new - ga
        sy = (s * y).sum(1)
        good = moved & (sy > 1e-12 * (s * s).sum(1).sqrt() * (y * y).sum(1).sqrt())
        gi = idx[good]
        S[head, idx] = torch.where(good[:, None], s, torch.zeros_like(s))
        Y[head, idx] = torch.where(good[:, None], y, torch.zeros_like(y))
        rho[head, idx] = torch.where(good, 1.0 / sy.clamp_min(1e-300), torch.zeros_like(sy))
        gamma[gi] = sy[good] / (y[good] * y[good]).sum(1).clamp_min(1e-300)
        head = (head + 1) % history
        first[gi] = False
        rel = (fa - f_new) / torch.maximum(
            torch.maximum(fa.abs(), f_new.abs()), torch.ones_like(fa)
        )
        mi = idx[moved]
        x[mi] = x_new[moved]
        f[mi] = f_new[moved]
        g[mi] = g_new[moved]
        iters[idx] += 1
        ok_stop = (g[idx].abs().amax(1) <= gtol) | (moved & (rel <= ftol))
        converged[idx[ok_stop]] = True
        # a line search that finds no decrease ends the row (rounding-level progress left)
        active[idx[ok_stop | pending]] = False
    return BatchedResult(x, f, g.abs().amax(1), iters, converged)
