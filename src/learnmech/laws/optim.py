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

# Backtracking ladder: steps t0·0.25^k tried together. Few pending rows are cheap to
# evaluate (call overhead dominates), so they get a longer ladder and fewer rounds.
_LADDER, _LADDER_SMALL, _SMALL_ROWS = 3, 8, 128
_RATIOS = 0.25 ** torch.arange(_LADDER_SMALL, dtype=torch.float64)


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

    # Internally rows are columns: x is (P, B), so per-row dot products are sums over the
    # short leading axis, which vectorize over B (3–5× faster than reducing a (B, P) tensor
    # along its last axis of length P).
    def vg(xt: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fv, gv = value_and_grad(xt.t(), rows)
        return fv, gv.t().contiguous()

    x = x0.detach().t().contiguous()
    P, B = x.shape
    dev, dt = x.device, x.dtype
    rows = torch.arange(B, device=dev)  # original index of each working row
    f, g = vg(x, rows)
    out_x, out_f, out_g = x.clone(), f.clone(), g.clone()
    out_conv = torch.zeros(B, dtype=torch.bool, device=dev)
    out_it = torch.zeros(B, dtype=torch.long, device=dev)
    S = torch.zeros(history, P, B, dtype=dt, device=dev)
    Y = torch.zeros_like(S)
    rho = torch.zeros(history, B, dtype=dt, device=dev)
    gamma = torch.ones(B, dtype=dt, device=dev)
    first = torch.ones(B, dtype=torch.bool, device=dev)
    it = torch.zeros(B, dtype=torch.long, device=dev)
    # ring-buffer position, shared by all rows: a skipped pair is stored as zeros (ρ = 0)
    head, filled = 0, 0

    def retire(done: torch.Tensor, conv: torch.Tensor) -> torch.Tensor:
        """Write finished rows to the output; return the indices of the rows that go on."""
        di = torch.nonzero(done).squeeze(1)
        r = rows[di]
        out_x[:, r], out_f[r], out_g[:, r] = x[:, di], f[di], g[:, di]
        out_conv[r], out_it[r] = conv[di], it[di]
        return torch.nonzero(~done).squeeze(1)

    # Finished rows leave the working tensors (compaction), so they cost nothing and the
    # loop needs no per-row gathers and scatters.
    start_conv = g.abs().amax(0) <= gtol
    if bool(start_conv.any()):
        keep = retire(start_conv, start_conv)
        x, f, g, rows, it = x[:, keep], f[keep], g[:, keep], rows[keep], it[keep]
        S, Y, rho = S[:, :, keep], Y[:, :, keep], rho[:, keep]
        gamma, first = gamma[keep], first[keep]
    for _ in range(max_iter):
        if rows.numel() == 0:
            break
        # two-loop recursion, written with few tensor ops: per-iteration dispatch overhead,
        # not arithmetic, is what this costs at small P
        Sl, Yl, rl = S.unbind(0), Y.unbind(0), rho.unbind(0)
        q = g.clone()
        alphas = []
        js = [(head - 1 - j) % history for j in range(filled)]  # newest first
        for j in js:
            a = (Sl[j] * q).sum(0).mul_(rl[j])
            q.addcmul_(Yl[j], a, value=-1.0)
            alphas.append(a)
        r = q.mul_(gamma)
        for j, a in zip(reversed(js), reversed(alphas), strict=True):
            b = (Yl[j] * r).sum(0).mul_(rl[j])
            r.addcmul_(Sl[j], a - b)
        d = r.neg_()
        slope = (g * d).sum(0)
        bad = ~(slope < 0)  # not a descent direction: fall back to steepest descent
        d = torch.where(bad, -g, d)
        slope = torch.where(bad, -(g * g).sum(0), slope)
        # first step of a row (or after a reset): unit step along −g/‖g‖∞, as scipy does
        step = torch.where(first | bad, 1.0 / g.abs().amax(0).clamp_min(1e-300), torch.ones_like(f))
        # Armijo backtracking, vectorized. Trials are evaluated with their gradient, so an
        # accepted first trial (most rows, most iterations) costs one evaluation. Rows that
        # fail try a ladder of shorter steps in one call: the quadratic-interpolation step
        # (Nocedal & Wright 2006, §3.5, safeguarded to [0.1, 0.5]·t) and then 4× shorter
        # ones; each row takes the longest step of its ladder that satisfies Armijo.
        trial = torch.addcmul(x, step, d)
        f_t, g_t = vg(trial, rows)
        ok = torch.isfinite(f_t) & (f_t <= f + c1 * step * slope)
        x_new = torch.where(ok, trial, x)
        f_new = torch.where(ok, f_t, f)
        g_new = torch.where(ok, g_t, g)
        pending = ~ok
        ft_last = f_t
        tried = 1
        while tried < max_backtracks:
            pi = torch.nonzero(pending).squeeze(1)
            if pi.numel() == 0:
                break
            t, sl, f0, ft = step[pi], slope[pi], f[pi], ft_last[pi]
            curv = ft - f0 - sl * t
            tq = torch.where(torch.isfinite(ft) & (curv > 0), -sl * t * t / (2 * curv), 0.5 * t)
            t0 = torch.minimum(torch.maximum(tq, 0.1 * t), 0.5 * t)
            k = _LADDER_SMALL if pi.numel() <= _SMALL_ROWS else _LADDER
            k = min(k, max_backtracks - tried)
            ladder = t0[:, None] * _RATIOS[:k].to(dt)  # (p, k)
            # trials (P, p·k), row-major in (pending row, ladder step)
            trial = (x[:, pi, None] + ladder * d[:, pi, None]).reshape(P, -1)
            f_t, g_t = vg(trial, rows[pi].repeat_interleave(k))
            f_t, g_t = f_t.view(-1, k), g_t.view(P, -1, k)
            okk = torch.isfinite(f_t) & (f_t <= f0[:, None] + c1 * ladder * sl[:, None])
            hit = okk.any(1)
            first_ok = okk.to(torch.int8).argmax(1)  # longest passing step
            rh, kh = pi[hit], first_ok[hit]
            x_new[:, rh] = trial.view(P, -1, k)[:, hit, kh]
            f_new[rh], g_new[:, rh] = f_t[hit, kh], g_t[:, hit, kh]
            pending[rh] = False
            step[pi] = ladder[:, -1]
            ft_last = ft_last.clone()
            ft_last[pi] = f_t[:, -1]
            tried += k
        moved = ~pending
        s = x_new - x
        y = g_new - g
        sy = (s * y).sum(0)
        yy = (y * y).sum(0)
        good = moved & (sy > 1e-12 * ((s * s).sum(0) * yy).sqrt())
        S[head] = torch.where(good, s, 0.0)
        Y[head] = torch.where(good, y, 0.0)
        rho[head] = torch.where(good, 1.0 / sy.clamp_min(1e-300), 0.0)
        gamma = torch.where(good, sy / yy.clamp_min(1e-300), gamma)
        head = (head + 1) % history
        filled = min(filled + 1, history)
        first = first & ~good
        rel = (f - f_new) / torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))
        x, f, g = x_new, f_new, g_new  # rows still pending kept their point
        it += 1
        stop = (g.abs().amax(0) <= gtol) | (moved & (rel <= ftol))
        # a line search that finds no decrease ends the row (rounding-level progress left)
        done = stop | pending
        if bool(done.any()):
            keep = retire(done, stop)
            x, f, g, rows, it = x[:, keep], f[keep], g[:, keep], rows[keep], it[keep]
            S, Y, rho = S[:, :, keep], Y[:, :, keep], rho[:, keep]
            gamma, first = gamma[keep], first[keep]
    if rows.numel():  # iteration cap reached
        retire(torch.ones_like(f, dtype=torch.bool), torch.zeros_like(f, dtype=torch.bool))
    return BatchedResult(out_x.t().contiguous(), out_f, out_g.abs().amax(0), out_it, out_conv)
