"""Curvature of the training loss: Hessian-vector products, top eigenvalues, trace, density.

Everything works matrix-free on any model and loss through Hessian-vector products
(Pearlmutter 1994: double backpropagation), in float64 by default for the Krylov
recurrences:

* :class:`LossHessian` — the Hessian (or the Gauss–Newton matrix JᵀH_zJ, Schraudolph 2002)
  of ``loss_fn(model(x), y)`` averaged over fixed batches, as an operator on flat vectors.
* :func:`lanczos` — top-k eigenpairs by Lanczos with full reorthogonalisation (Golub & Van
  Loan 2013, §10.1), ``which="LA"`` largest algebraic (the edge-of-stability sharpness),
  ``"LM"`` largest magnitude, ``"SA"`` smallest algebraic; warm-startable.
* :func:`hutchinson_trace` — tr(H) ≈ mean of vᵀHv over Rademacher v (Hutchinson 1989),
  with its standard error.
* :func:`spectral_density` — stochastic Lanczos quadrature (Golub & Meurant 1994; Ubaru,
  Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019): Gaussian-broadened Ritz values
  weighted by the squared first components of the Ritz vectors, averaged over probes.
* :func:`optimizer_preconditioner`, :func:`stability_threshold` — the diagonal
  preconditioner P of Adam/AdamW/RMSprop from the optimizer's own state (second moment,
  ε, bias correction), and the step size's stability threshold: 2/η for GD,
  (2 + 2β)/η with heavy-ball momentum β, (2 + 2β₁)/((1 − β₁)η) = 38/η for Adam's
  preconditioned sharpness λ_max(P⁻¹H) at β₁ = 0.9 (Cohen et al. 2021, 2022).
* :class:`SharpnessProbe` — a :class:`~learnmech.train.recorder.Recorder` probe logging
  λ_max (preconditioned for adaptive optimizers) against its threshold every k steps,
  warm-started from the previous top eigenvector.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.model_io import (
    ModelMode,
    check_mode,
    forward,
    in_mode,
    n_rows,
    same_randomness,
    second_order,
)
from learnmech.measure.probe import Probe

__all__ = [
    "LanczosResult",
    "LossHessian",
    "SharpnessProbe",
    "SpectralDensity",
    "hutchinson_trace",
    "lanczos",
    "optimizer_preconditioner",
    "spectral_density",
    "stability_threshold",
]

MatVec = Callable[[torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class LossHessian:
    """∇²_θ of the mean loss over ``batches`` (weighted by batch size), as an operator.

    Args:
        model: any module; ``params`` defaults to its parameters that require grad.
        loss_fn: ``loss_fn(outputs, targets)`` → mean loss over the batch.
        batches: one (x, y) pair (full batch) or several; the operator is their
            size-weighted average, i.e. the Hessian of the mean loss over all samples.
        kind: ``"hessian"`` or ``"gauss_newton"`` (JᵀH_zJ with H_z the loss's Hessian in
            the outputs; positive semi-definite for convex losses).
        dtype: dtype of the vectors the operator takes and returns (the model runs in
            its own dtype).
        cache_graph: keep each batch's gradient graph after the first product and reuse
            it (as PyHessian does): one backward pass per product instead of a forward
            and two backwards. Faster, but holds the graphs in memory and describes the
            parameters as they were at the first product — make a new operator after the
            model changes.
        model_mode: ``"keep"`` (the model's own mode: the loss the optimizer sees during
            training), ``"train"`` or ``"eval"``. Either way the model's flags and
            BatchNorm running statistics are left as they were.
        seed: random layers (dropout in training mode) use the same masks, drawn from
            ``seed`` + batch index, on every product, so the operator is the Hessian of one
            fixed function; the global random state is not touched.

    Inputs may be tensors or dicts of tensors (``model(**x)``); ``loss_fn`` receives the
    prediction tensor (a HuggingFace ``ModelOutput``'s ``logits``), see
    :mod:`learnmech.measure.model_io`.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batches: Batch | Sequence[Batch],
        *,
        params: Sequence[torch.Tensor] | None = None,
        kind: Literal["hessian", "gauss_newton"] = "hessian",
        dtype: torch.dtype = torch.float64,
        cache_graph: bool = False,
        model_mode: ModelMode = "keep",
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if kind not in ("hessian", "gauss_newton"):
            raise UserError(f"kind must be 'hessian' or 'gauss_newton', got {kind!r}")
        if (
            isinstance(batches, tuple)
            and len(batches) == 2
            and isinstance(batches[0], torch.Tensor | Mapping)
        ):
            batches = [batches]  # type: ignore[list-item]
        self.batches = list(batches)  # type: ignore[arg-type]
        if not self.batches:
            raise UserError("batches is empty")
        self.model, self.loss_fn, self.kind, self.dtype = model, loss_fn, kind, dtype
        self.cache_graph = bool(cache_graph)
        self.model_mode, self.seed = check_mode(model_mode), int(seed)
        self._graphs: list[Sequence[torch.Tensor | None]] = []
        self.params = [p for p in (params or model.parameters()) if p.requires_grad]
        if not self.params:
            raise UserError("the model has no parameters that require grad")
        self.dim = sum(p.numel() for p in self.params)
        self.device = self.params[0].device
        sizes = [n_rows(b[0]) for b in self.batches]
        self._w = [s / sum(sizes) for s in sizes]
        self.calls = 0

    def _out(self, b: int, x: Any) -> torch.Tensor:
        """The prediction on batch ``b`` in the chosen mode, with batch ``b``'s fixed random
        masks; the model's flags and running statistics are restored afterwards."""
        with in_mode(self.model, self.model_mode), same_randomness(self.model, self.seed + b):
            return forward(self.model, x)

    def _loss(self, b: int, x: Any, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self._out(b, x), y)

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(v[i : i + p.numel()].view_as(p).to(device=p.device, dtype=p.dtype))
            i += p.numel()
        return out

    def _flat(self, ts: Sequence[torch.Tensor | None]) -> torch.Tensor:
        return torch.cat(
            [
                (torch.zeros_like(p) if t is None else t).reshape(-1).to(self.dtype)
                for t, p in zip(ts, self.params, strict=True)
            ]
        )

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the mean loss (on the parameters' device)."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            for b, ((x, y), w) in enumerate(zip(self.batches, self._w, strict=True)):
                g = torch.autograd.grad(self._loss(b, x, y), self.params, allow_unused=True)
                total += w * self._flat(g)
        return total

    def loss(self) -> float:
        with torch.no_grad():
            return float(
                sum(
                    w * float(self._loss(b, x, y))
                    for b, ((x, y), w) in enumerate(zip(self.batches, self._w, strict=True))
                )
            )

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H·v for a flat vector on any device; the product comes back on ``v``'s device
        (the model's parameters may live on a GPU while Lanczos runs on the CPU)."""
        if v.shape != (self.dim,):
            raise UserError(f"vector must have shape ({self.dim},), got {tuple(v.shape)}")
        self.calls += 1
        vs = self._split(v)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        # layers whose PyTorch kernels have no second derivative run on ones that do
        with torch.enable_grad(), second_order(self.model):
            for b, ((x, y), w) in enumerate(zip(self.batches, self._w, strict=True)):
                if self.kind == "hessian":
                    if self.cache_graph and b < len(self._graphs):
                        g = self._graphs[b]
                    else:
                        g = torch.autograd.grad(
                            self._loss(b, x, y),
                            self.params,
                            create_graph=True,
                            allow_unused=True,
                        )
                        if self.cache_graph:
                            self._graphs.append(g)
                    pairs = [(gi, vi) for gi, vi in zip(g, vs, strict=True) if gi is not None]
                    with _second_order_hint():
                        hv = torch.autograd.grad(
                            [a for a, _ in pairs],
                            self.params,
                            grad_outputs=[c for _, c in pairs],
                            retain_graph=self.cache_graph,
                            allow_unused=True,
                        )
                else:
                    with _second_order_hint():
                        hv = self._gauss_newton(b, x, y, vs)
                total += w * self._flat(hv)
        return total.to(v.device)  # the caller's device: Lanczos may keep its basis on the CPU

    def _gauss_newton(
        self, b: int, x: Any, y: torch.Tensor, vs: list[torch.Tensor]
    ) -> Sequence[torch.Tensor | None]:
        z = self._out(b, x)
        # J v by the double-vjp trick: u ↦ Jᵀu is linear in u, so d(Jᵀu · v)/du = J v
        u = torch.zeros_like(z, requires_grad=True)
        jtu = torch.autograd.grad(
            z, self.params, grad_outputs=u, create_graph=True, allow_unused=True
        )
        dot = sum((a * b).sum() for a, b in zip(jtu, vs, strict=True) if a is not None)
        (jv,) = torch.autograd.grad(dot, u)
        zd = z.detach().requires_grad_(True)
        (gz,) = torch.autograd.grad(self.loss_fn(zd, y), zd, create_graph=True)
        (hjv,) = torch.autograd.grad((gz * jv.detach()).sum(), zd)
        return torch.autograd.grad(z, self.params, grad_outputs=hjv, allow_unused=True)

    def dense(self) -> torch.Tensor:
        """The full matrix (dim × dim) by dim matvecs — for tests and small models."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.dim)], 1)


@contextlib.contextmanager
def _second_order_hint() -> Iterator[None]:
    """Name the usual cause when a layer has no second derivative: a fused attention
    kernel called directly rather than through ``F.scaled_dot_product_attention`` (which
    :func:`~learnmech.measure.model_io.composite_attention` routes to the math backend),
    e.g. the flash-attn package's; or ``F.hardsigmoid`` called as a function, where
    :func:`~learnmech.measure.model_io.second_order` cannot see it."""
    try:
        yield
    except RuntimeError as err:
        msg = str(err)
        if "derivative for" in msg and "not implemented" in msg:
            hint = ""
            if "scaled_dot_product" in msg or "attention" in msg:
                hint = (
                    " — a fused attention kernel called outside "
                    "F.scaled_dot_product_attention has no double backward; build the "
                    "model with eager attention (HuggingFace: attn_implementation='eager')"
                )
            elif "hardsigmoid" in msg:
                hint = (
                    " — F.hardsigmoid called directly has no double backward in PyTorch; "
                    "use nn.Hardsigmoid (rewritten for Hessian products) or "
                    "F.relu6(x + 3) / 6, the same function"
                )
            first = msg.splitlines()[0]
            raise UserError(
                f"Hessian-vector products need second derivatives of every layer: {first}{hint}"
            ) from err
        raise


# --------------------------------------------------------------------------------------
# Lanczos


@dataclass
class LanczosResult:
    eigenvalues: torch.Tensor  # (k,), in the order of ``which``
    eigenvectors: torch.Tensor  # (dim, k)
    iterations: int
    residuals: torch.Tensor  # (k,) ‖Hv − θv‖ bounds |β_m·s_m|
    converged: bool


def _select(theta: torch.Tensor, which: str, k: int) -> torch.Tensor:
    if which == "LA":
        return torch.argsort(theta, descending=True)[:k]
    if which == "SA":
        return torch.argsort(theta)[:k]
    return torch.argsort(theta.abs(), descending=True)[:k]


def lanczos(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    which: Literal["LA", "LM", "SA"] = "LA",
    tol: float = 1e-6,
    max_iter: int | None = None,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    bound: Literal["residual", "gap"] = "residual",
) -> LanczosResult:
    """Top-k eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

    Stops when every wanted Ritz pair's error bound is ≤ ``tol``·|θ_i| (absolute below
    |θ| = 1e-12·max|θ|), or after ``max_iter`` steps (default min(dim, max(4k + 40, 100))).
    ``bound="residual"``: the residual |β_m s_{m,i}| = ‖Hv − θv‖, which bounds the distance
    from θ to *some* eigenvalue (and the eigenvector's accuracy); ``bound="gap"``: the
    sharper eigenvalue bound min(res, res²/gap) (Parlett 1998, Thm 11.7.1), with the gap to
    the nearest other Ritz value — the right rule when only the eigenvalue matters and the
    wanted eigenvalue is separated. In a cluster, warm-started near a lower eigenvector, the
    Ritz gap can overstate the true gap and stop early (at the edge of stability: errors
    up to 3.4% at tol 1e-3, where the residual rule met 1e-3; see the probe test).
    ``v0`` warm-starts (e.g. the previous top eigenvector);
    a breakdown (an invariant subspace) continues from a fresh random vector until k pairs
    are available.
    """
    if which not in ("LA", "LM", "SA"):
        raise UserError(f"which must be 'LA', 'LM' or 'SA', got {which!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim:
        raise UserError(f"k must be an integer in [1, {dim}], got {k!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise UserError(f"tol must be positive, got {tol!r}")
    if bound not in ("residual", "gap"):
        raise UserError(f"bound must be 'residual' or 'gap', got {bound!r}")
    m_max = max_iter or min(dim, max(4 * k + 40, 100))
    m_max = min(m_max, dim)
    gen = torch.Generator().manual_seed(seed)

    def rand() -> torch.Tensor:
        return torch.randn(dim, generator=gen, dtype=dtype)

    q = v0.detach().to(dtype).reshape(-1).clone() if v0 is not None else rand()
    if q.shape != (dim,):
        raise UserError(f"v0 must have {dim} entries, got {q.numel()}")
    if not float(q.norm()) > 0 or not bool(torch.isfinite(q).all()):
        q = rand()
    Q = torch.empty(m_max + 1, dim, dtype=dtype)
    Q[0] = q / q.norm()
    alpha = torch.zeros(m_max, dtype=dtype)
    beta = torch.zeros(m_max, dtype=dtype)
    theta = S = idx = None
    m = 0
    converged = False
    res = torch.zeros(k, dtype=dtype)
    for j in range(m_max):
        w = matvec(Q[j]).to(dtype)
        if not bool(torch.isfinite(w).all()):
            raise UserError("the operator returned NaN or inf")
        alpha[j] = w @ Q[j]
        # the three-term recurrence, then full reorthogonalisation against every Lanczos
        # vector; a second pass only when the first cancelled most of w (the DGKS test,
        # Daniel, Gragg, Kaufman & Stewart 1976; "twice is enough", Parlett 1998 §6.9)
        w = w - alpha[j] * Q[j]
        if j > 0:
            w = w - beta[j - 1] * Q[j - 1]
        for _ in range(2):
            before = w.norm()
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
            if w.norm() > 0.7071 * before:
                break
        b = w.norm()
        m = j + 1
        T = torch.diag(alpha[:m]) + torch.diag(beta[: m - 1], 1) + torch.diag(beta[: m - 1], -1)
        theta, S = torch.linalg.eigh(T)
        scale = float(theta.abs().max()) if m else 1.0
        if m >= k:
            idx = _select(theta, which, k)
            res = (b * S[m - 1, idx]).abs()
            err = res
            if bound == "gap" and m > k:
                # a-posteriori eigenvalue error ≤ res²/gap (Parlett 1998, Thm 11.7.1), the
                # gap to the nearest other Ritz value standing in for the spectral gap. In a
                # cluster the Ritz gap can overstate it (an eigenvalue the Krylov space has
                # not yet seen): use bound="residual" there, as SharpnessProbe does
                others = theta.unsqueeze(0).expand(idx.numel(), -1)
                d = (others - theta[idx].unsqueeze(1)).abs()
                d[torch.arange(idx.numel()), idx] = math.inf
                gap = d.min(1).values
                err = torch.minimum(res, res.square() / gap.clamp_min(1e-300))
            thr = tol * torch.maximum(theta[idx].abs(), torch.full_like(res, 1e-12 * scale))
            if bool((err <= thr).all()):
                converged = True
                break
        if j + 1 == m_max:
            break
        if float(b) <= 1e-12 * max(scale, 1e-300):  # invariant subspace: restart the chain
            r = rand()
            for _ in range(2):
                r = r - Q[: j + 1].T @ (Q[: j + 1] @ r)
            beta[j] = 0.0
            Q[j + 1] = r / r.norm()
        else:
            beta[j] = b
            Q[j + 1] = w / b
    assert theta is not None and S is not None
    idx = _select(theta, which, min(k, m))
    vecs = Q[:m].T @ S[:, idx]
    return LanczosResult(theta[idx].clone(), vecs, m, res[: idx.numel()].clone(), converged)


# --------------------------------------------------------------------------------------
# trace and density


def hutchinson_trace(
    matvec: MatVec,
    dim: int,
    samples: int = 100,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[float, float]:
    """Hutchinson's estimator of tr(H) with Rademacher probes: (estimate, standard error)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise UserError(f"samples must be an integer >= 2, got {samples!r}")
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(samples):
        v = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(dtype)
        vals.append(float(v @ matvec(v).to(dtype)))
    a = np.array(vals)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(samples))


@dataclass
class SpectralDensity:
    grid: np.ndarray
    density: np.ndarray  # integrates to 1 over the real line (≈ over ``grid``)
    nodes: np.ndarray  # (probes, m) Ritz values
    weights: np.ndarray  # (probes, m) quadrature weights, each row sums to 1
    sigma: float

    def moment(self, p: int) -> float:
        """The p-th moment Σ τ θ^p of the quadrature (exact for p ≤ 2m − 1 per probe)."""
        return float((self.weights * self.nodes**p).sum(1).mean())


def spectral_density(
    matvec: MatVec,
    dim: int,
    *,
    iters: int = 80,
    probes: int = 10,
    grid: np.ndarray | None = None,
    sigma: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> SpectralDensity:
    """Eigenvalue density by stochastic Lanczos quadrature: for each Rademacher probe, m
    Lanczos steps give Ritz values θ_j and weights τ_j = (first component of the Ritz
    vector)²; the density is the probe average of Σ_j τ_j·N(x; θ_j, σ²). Default σ:
    1% of the spectral range; default grid: that range ± 5σ, 1,000 points."""
    for name, v in (("iters", iters), ("probes", probes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be a positive integer, got {v!r}")
    nodes, weights = [], []
    for p in range(probes):
        gen = torch.Generator().manual_seed(seed + p)
        v0 = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(dtype)
        m = min(iters, dim)
        th, tau = _slq_nodes(matvec, v0, m, dtype)
        nodes.append(th)
        weights.append(tau)
    width = max(len(t) for t in nodes)
    N = np.full((probes, width), 0.0)
    W = np.zeros((probes, width))
    for i, (t, w) in enumerate(zip(nodes, weights, strict=True)):
        N[i, : len(t)], W[i, : len(w)] = t, w
    lo, hi = float(min(t.min() for t in nodes)), float(max(t.max() for t in nodes))
    s = sigma if sigma is not None else max(0.01 * (hi - lo), 1e-12 * max(abs(lo), abs(hi), 1))
    g = np.linspace(lo - 5 * s, hi + 5 * s, 1000) if grid is None else np.asarray(grid, float)
    dens = np.zeros_like(g)
    for t, w in zip(nodes, weights, strict=True):
        dens += (w[None, :] * np.exp(-0.5 * ((g[:, None] - t[None, :]) / s) ** 2)).sum(1)
    dens /= probes * s * math.sqrt(2 * math.pi)
    return SpectralDensity(g, dens, N, W, float(s))


def _slq_nodes(
    matvec: MatVec, v0: torch.Tensor, m: int, dtype: torch.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of the spectral measure seen from v0/‖v0‖."""
    dim = v0.numel()
    Q = torch.empty(m + 1, dim, dtype=dtype)
    Q[0] = v0 / v0.norm()
    a = torch.zeros(m, dtype=dtype)
    b = torch.zeros(m, dtype=dtype)
    n = m
    for j in range(m):
        w = matvec(Q[j]).to(dtype)
        a[j] = w @ Q[j]
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        bj = w.norm()
        if j + 1 == m or float(bj) <= 1e-12 * float(a[: j + 1].abs().max().clamp_min(1e-300)):
            n = j + 1
            break
        b[j] = bj
        Q[j + 1] = w / bj
    T = torch.diag(a[:n]) + torch.diag(b[: n - 1], 1) + torch.diag(b[: n - 1], -1)
    th, S = torch.linalg.eigh(T)
    return th.numpy(), (S[0] ** 2).numpy()


# --------------------------------------------------------------------------------------
# optimizers


def optimizer_preconditioner(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor | None:
    """The flat diagonal P of an adaptive optimizer's step Δθ = −η·(update)/P, from its
    state: Adam/AdamW √(v/(1 − β₂ᵗ)) + ε (bias-corrected second moment), RMSprop √v + ε.
    None for SGD with one learning rate (P = I). Parameters without state (before the first
    step) are an error.

    Per-group learning rates (μP, depth-μP, layer-wise rates) are folded in: with η the
    first group's rate, a parameter in a group with rate ηᵢ gets P·η/ηᵢ, so that every step
    reads Δθ = −η·(update)/P and the one threshold of :func:`stability_threshold` (in η)
    applies to λ_max(P⁻¹H)."""
    name = type(optimizer).__name__
    if name not in ("SGD", "Adam", "AdamW", "RMSprop"):
        raise UserError(f"no preconditioner known for {name}; use SGD, Adam, AdamW or RMSprop")
    _check_uniform_groups(optimizer)
    ref = float(optimizer.param_groups[0]["lr"])
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    if name == "SGD":
        if all(float(g["lr"]) == ref for g in optimizer.param_groups):
            return None
        parts = []
        for p in params:
            g = group_of.get(id(p))
            if g is None:
                raise UserError("a parameter is not managed by this optimizer")
            parts.append(torch.full((p.numel(),), ref / float(g["lr"]), dtype=dtype))
        return torch.cat(parts)
    parts = []
    for p in params:
        st = optimizer.state.get(p, {})
        g = group_of.get(id(p))
        if g is None:
            raise UserError("a parameter is not managed by this optimizer")
        rel = ref / float(g["lr"])
        if "exp_avg_sq" in st:
            t = float(st["step"])
            v = st["exp_avg_sq"].detach().to(dtype) / (1 - g["betas"][1] ** t)
            if g.get("amsgrad") and "max_exp_avg_sq" in st:
                v = st["max_exp_avg_sq"].detach().to(dtype) / (1 - g["betas"][1] ** t)
        elif "square_avg" in st:
            v = st["square_avg"].detach().to(dtype)
        else:
            raise UserError(f"{name} has no second-moment state yet: take a step first")
        part = (v.sqrt() + g["eps"]).reshape(-1)
        parts.append(part if rel == 1.0 else part * rel)
    return torch.cat(parts)


def _check_uniform_groups(optimizer: torch.optim.Optimizer) -> None:
    """Per-group learning rates fold into the preconditioner; per-group momenta or betas
    would change the threshold itself, which has no single closed form."""
    for key in ("momentum", "betas", "nesterov", "dampening"):
        vals = {repr(g.get(key)) for g in optimizer.param_groups}
        if len(vals) > 1:
            raise UserError(
                f"the param groups differ in {key} ({', '.join(sorted(vals))}): no single "
                "stability threshold exists; give every group the same value"
            )


def stability_threshold(optimizer: torch.optim.Optimizer) -> float:
    """The largest stable (preconditioned) sharpness: 2/η (GD), (2 + 2β)/η (heavy-ball
    momentum β, not Nesterov), (2 + 2β₁)/((1 − β₁)η) (Adam/AdamW, on λ_max(P⁻¹H)), 2/η
    (RMSprop, on λ_max(P⁻¹H)). η is the first group's learning rate; other groups' rates
    enter P (see :func:`optimizer_preconditioner`), so under μP the threshold is compared
    with λ_max(P⁻¹H), not with the plain sharpness."""
    _check_uniform_groups(optimizer)
    g = optimizer.param_groups[0]
    lr = float(g["lr"])
    name = type(optimizer).__name__
    if name == "SGD":
        if g.get("nesterov"):
            raise UserError("no closed-form threshold for Nesterov momentum")
        return (2 + 2 * float(g.get("momentum", 0.0))) / lr
    if name in ("Adam", "AdamW"):
        b1 = float(g["betas"][0])
        return (2 + 2 * b1) / ((1 - b1) * lr)
    if name == "RMSprop":
        if g.get("momentum", 0):
            return (2 + 2 * float(g["momentum"])) / lr
        return 2 / lr
    raise UserError(f"no stability threshold known for {name}")


class SharpnessProbe(Probe):
    """Log λ_max of the loss Hessian (preconditioned by the optimizer's state for Adam,
    AdamW and RMSprop) and its stability threshold every ``every`` steps.

    Records ``sharpness``, ``stability_threshold``, ``sharpness_ratio`` (their ratio) and
    ``edge_of_stability`` (1.0 when the ratio is ≥ ``edge``). Lanczos is warm-started
    from the previous top eigenvector, which makes later calls cheap. It stops on the
    residual bound by default: at the edge of stability the top eigenvalues cluster and the
    warm start sits near a lower eigenvector, where the Ritz-gap bound (``bound="gap"``)
    stopped early (errors up to 3.4% at tol 1e-3; tested).

    Args:
        tol: relative tolerance of each reading (the Lanczos stopping rule).
        bound: ``"residual"`` (default) or ``"gap"``; see :func:`lanczos`.
        mix: weight of a fresh random unit vector added to the unit warm start. A pure
            warm start has almost no component along an eigenvector that has just become
            the top one, and Krylov methods cannot find what the start vector does not
            contain: on the edge-of-stability quick setting (η = 0.4) a pure warm start
            read 1.1% low at step 200 while stopping on a 1e-3 residual; with ``mix=0.3``
            every reading was within 7e-5 for 3–4% more products (tested). 0 disables it.
        max_products: cap on Hessian-vector products per reading (``None``: as many as
            ``tol`` needs). A cap trades accuracy for cost; at the edge of stability 2–3
            products leave median errors of 1–6% and worst errors up to 30%
            (``benchmarks/bench_sharpness_probe.py``, ``docs/benchmarks.md``).
        seed: seed of the random vectors.
    """

    def __init__(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batches: Batch | Sequence[Batch],
        optimizer: torch.optim.Optimizer,
        *,
        every: int = 10,
        tol: float = 1e-3,
        edge: float = 0.9,
        bound: Literal["residual", "gap"] = "residual",
        mix: float = 0.3,
        max_products: int | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"every must be a positive integer, got {every!r}")
        if bound not in ("residual", "gap"):
            raise UserError(f"bound must be 'residual' or 'gap', got {bound!r}")
        if isinstance(mix, bool) or not isinstance(mix, int | float) or not 0 <= mix < math.inf:
            raise UserError(f"mix must be a finite number >= 0, got {mix!r}")
        if max_products is not None and (
            isinstance(max_products, bool) or not isinstance(max_products, int) or max_products < 1
        ):
            raise UserError(f"max_products must be a positive integer, got {max_products!r}")
        self.bound, self.mix, self.max_products = bound, float(mix), max_products
        self._gen = torch.Generator().manual_seed(seed)
        self._seed = seed
        self.loss_fn, self.batches, self.optimizer = loss_fn, batches, optimizer
        self.every, self.tol, self.edge = every, tol, edge
        self._v: torch.Tensor | None = None
        self.matvecs = 0

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]
        H = LossHessian(model, self.loss_fn, self.batches, params=params, cache_graph=True)
        P = optimizer_preconditioner(self.optimizer, params)
        mv: MatVec
        if P is None:
            mv = H.matvec
        else:
            s = P.rsqrt().cpu()  # Lanczos keeps its vectors on the CPU

            def mv(u: torch.Tensor) -> torch.Tensor:
                return s * H.matvec(s * u)

        v0 = self._v
        if v0 is not None and self.mix > 0:
            z = torch.randn(v0.shape, generator=self._gen, dtype=v0.dtype)
            v0 = v0 / v0.norm() + self.mix * z / z.norm()
        with torch.enable_grad():
            r = lanczos(
                mv,
                H.dim,
                1,
                which="LA",
                tol=self.tol,
                v0=v0,
                bound=self.bound,
                max_iter=self.max_products,
                seed=self._seed,
            )
        self._v = r.eigenvectors[:, 0]
        self.matvecs += H.calls
        lam = float(r.eigenvalues[0])
        thr = stability_threshold(self.optimizer)
        return {
            "sharpness": lam,
            "stability_threshold": thr,
            "sharpness_ratio": lam / thr,
            "edge_of_stability": float(lam / thr >= self.edge),
        }
