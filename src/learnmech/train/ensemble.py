"""Train an ensemble of small models over seeds in one vectorized call.

Average-case predictions need many seeds. The members' parameters are stacked
(``torch.func.stack_module_state``) and the forward pass is ``vmap``-ed over them
(``torch.func.functional_call``), so one training step is a handful of batched kernels
instead of S separate small ones. Members stay independent: the summed loss has
block-diagonal gradients, and the optimizers below are elementwise.

For :class:`~learnmech.nets.MLP` members trained by full-batch gradient descent, a fused
path (``engine="fused"``) writes the forward and backward passes as batched matrix
products (``baddbmm``) and folds the update into the weight-gradient product
(W ← W − η AᵀG in one kernel), so no gradient tensor is materialised and no autograd
graph is built. Both paths equal per-seed training to float tolerance (tested).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from learnmech.nets.mlp import MLP
from learnmech.train.batching import MinibatchSampler

__all__ = ["EnsembleResult", "Optimizer", "train_ensemble"]

Optimizer = Literal["gd", "sgd", "adam"]


@dataclass
class EnsembleResult:
    """What an ensemble run returns.

    Attributes:
        steps: recorded step indices (0 = initialisation).
        train_loss: (R, S) ½·mean squared error of each member at each recorded step.
        eval_outputs: (R, S, m, k) outputs on ``x_eval`` at each recorded step, or None.
        diverged: (S,) True where a member's loss became NaN/inf (it is then frozen).
        params: final stacked parameters, name → (S, ...).
        init_params: stacked parameters at initialisation.
    """

    steps: list[int]
    train_loss: torch.Tensor
    eval_outputs: torch.Tensor | None
    diverged: torch.Tensor
    params: dict[str, torch.Tensor]
    init_params: dict[str, torch.Tensor] = field(repr=False)


def _check_data(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch tensors")
    if x.shape[0] == 0:
        raise ValueError("x is empty")
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        raise ValueError("x or y contains NaN or infinite values")
    return x, y


def _record_steps(steps: int, record_every: int | Sequence[int]) -> list[int]:
    if isinstance(record_every, int):
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every}")
        out = list(range(0, steps + 1, record_every))
        if out[-1] != steps:
            out.append(steps)
        return out
    out = sorted({int(s) for s in record_every if 0 <= int(s) <= steps})
    if not out:
        raise ValueError("record_every lists no step in [0, steps]")
    return out


def train_ensemble(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    steps: int,
    optimizer: Optimizer = "gd",
    batch_size: int | None = None,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    x_eval: torch.Tensor | None = None,
    record_every: int | Sequence[int] = 1,
    data_seed: int = 0,
    engine: Literal["auto", "vmap", "fused"] = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> EnsembleResult:
    """Train all ``models`` (same architecture, different seeds) in lockstep.

    Loss: L = ½·mean over examples and outputs of (f(x) − y)² per member.

    Arguments:
        models: the members (their parameters are copied; the modules are not modified).
        x, y: training data (n, ...) and targets (n,) or (n, k).
        lr, steps: learning rate and number of updates.
        optimizer: ``"gd"`` (full batch), ``"sgd"`` (minibatches of ``batch_size``, with
            optional heavy-ball ``momentum``) or ``"adam"`` (torch.optim.Adam's update).
        x_eval: inputs whose outputs are recorded (e.g. a test set).
        record_every: record every k steps, or an explicit list of steps.
        data_seed: seeds the minibatch order (shared by all members, so each member
            sees exactly what a separate run with the same ``data_seed`` sees).
        engine: ``"vmap"`` (any module), ``"fused"`` (MLP + GD only) or ``"auto"``.
        progress: called as ``progress(step, steps)`` after each step.
    """
    if not models:
        raise ValueError("models is empty")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if optimizer not in ("gd", "sgd", "adam"):
        raise ValueError(f"optimizer must be 'gd', 'sgd' or 'adam', got {optimizer!r}")
    x, y = _check_data(x, y)
    n = x.shape[0]
    if optimizer == "sgd":
        if batch_size is None or not (1 <= batch_size <= n):
            raise ValueError(f"sgd needs 1 <= batch_size <= {n}, got {batch_size!r}")
    record = _record_steps(steps, record_every)

    fusable = optimizer == "gd" and all(isinstance(m, MLP) for m in models)
    if engine == "fused" and not fusable:
        raise ValueError("engine='fused' needs MLP members and optimizer='gd'")
    if engine == "auto":
        engine = "fused" if fusable and _fusable_activation(models[0]) else "vmap"
    if engine == "fused":
        return _train_fused_mlp(models, x, y, lr, steps, x_eval, record, progress)  # type: ignore[arg-type]

    params, buffers = stack_module_state(list(models))
    params = {k: v.detach().clone() for k, v in params.items()}
    init = {k: v.clone() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")

    def fmodel(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor
    ) -> torch.Tensor:
        out = functional_call(base, (p, b), (xb,))
        return out.reshape(xb.shape[0], -1)

    batched = vmap(fmodel, in_dims=(0, 0, None))
    S = len(models)
    losses = torch.empty(len(record), S, dtype=x.dtype, device=x.device)
    evals = [] if x_eval is not None else None
    diverged = torch.zeros(S, dtype=torch.bool, device=x.device)
    state: dict[str, dict[str, torch.Tensor]] = {}
    sampler = MinibatchSampler(n, batch_size, data_seed) if optimizer == "sgd" else None  # type: ignore[arg-type]

    def member_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = batched(params, buffers, xb)
        return 0.5 * ((out - yb[None]) ** 2).mean(dim=(1, 2))

    def snapshot(i: int) -> None:
        with torch.no_grad():
            losses[i] = member_loss(x, y)
            if evals is not None:
                evals.append(batched(params, buffers, x_eval).clone())

    ri = 0
    if record[0] == 0:
        snapshot(0)
        ri = 1
    for step in range(1, steps + 1):
        if sampler is not None:
            idx = sampler.next()
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        for v in params.values():
            v.requires_grad_(True)
        per_member = member_loss(xb, yb)
        grads = torch.autograd.grad(per_member.sum(), list(params.values()))
        with torch.no_grad():
            bad = ~torch.isfinite(per_member.detach())
            diverged |= bad
            keep = (~diverged).to(x.dtype)
            for (name, p), g in zip(params.items(), grads, strict=True):
                p.requires_grad_(False)
                mask = keep.reshape(-1, *([1] * (p.ndim - 1)))
                g = g * mask
                if optimizer == "adam":
                    st = state.setdefault(
                        name, {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
                    )
                    st["m"].mul_(betas[0]).add_(g, alpha=1 - betas[0])
                    st["v"].mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
                    bc1 = 1 - betas[0] ** step
                    bc2 = 1 - betas[1] ** step
                    denom = (st["v"].sqrt() / math.sqrt(bc2)).add_(eps)
                    p.addcdiv_(st["m"] * mask, denom, value=-lr / bc1)
                elif momentum:
                    buf = state.setdefault(name, {"b": torch.zeros_like(p)})["b"]
                    buf.mul_(momentum).add_(g)
                    p.add_(buf * mask, alpha=-lr)
                else:
                    p.add_(g, alpha=-lr)
        if ri < len(record) and record[ri] == step:
            snapshot(ri)
            ri += 1
        if progress is not None:
            progress(step, steps)
    eval_out = torch.stack(evals) if evals else None
    return EnsembleResult(record, losses, eval_out, diverged, params, init)


def _train_fused_mlp(
    models: Sequence[MLP],
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    x_eval: torch.Tensor | None,
    record: list[int],
    progress: Callable[[int, int], None] | None,
) -> EnsembleResult:
    """Full-batch GD on stacked MLPs with hand-written batched forward/backward.

    Layer ℓ computes h = w_mult·A W + b_mult·b (W stored as fan_in × fan_out). With
    L = ½·mean((f − y)²) over n·k entries, δ_out = (f − y)/(n·k); for hidden layers
    δ = (δ_next Wᵀ_next·w_mult) ⊙ φ'(h). ∂L/∂W = w_mult·Aᵀδ, ∂L/∂b = b_mult·Σ δ, applied in
    place (W ← W − η·w_mult·Aᵀδ is one GEMM with β = 1).

    Layout: the inputs are shared by all members, so the first layer of all S members is
    one (n × d)·(d × S·w) matrix product and its weight update one (d × n)·(n × S·w)
    product; its activations are kept as (n, S, w) and read by the next batched product
    through a strided view. Deeper layers are (S, n, w) batched products.
    """
    m0 = models[0]
    act = m0.act
    if not _fusable_activation(m0):
        raise ValueError(
            "the fused engine supports φ = a·min(x,0) + b·max(x,0) with a >= 0, b > 0 "
            f"(ReLU, leaky ReLU, identity), got {act.name}"
        )
    a_slope, b_slope = act.ab  # type: ignore[misc]
    relu = a_slope == 0.0 and b_slope == 1.0
    for m in models[1:]:
        if (m.in_dim, m.width, m.depth, m.out_dim, m.parameterization) != (
            m0.in_dim,
            m0.width,
            m0.depth,
            m0.out_dim,
            m0.parameterization,
        ):
            raise ValueError("all ensemble members must share the same architecture")
    S = len(models)
    L = len(m0.layers)
    d, width = m0.in_dim, m0.layers[0].out_features
    # Layer 0: (d, S·width), member s in columns [s·width, (s+1)·width).
    W0 = torch.cat([m.layers[0].weight.detach().T for m in models], dim=1).contiguous()
    Ws = [W0] + [
        torch.stack([m.layers[i].weight.detach().T.contiguous() for m in models]).contiguous()
        for i in range(1, L)
    ]
    bs: list[torch.Tensor | None] = []
    for i in range(L):
        if m0.layers[i].bias is None:
            bs.append(None)
        elif i == 0:
            bs.append(torch.cat([m.layers[0].bias.detach() for m in models]).contiguous())
        else:
            bs.append(torch.stack([m.layers[i].bias.detach().clone() for m in models]))
    wm = [layer.w_mult for layer in m0.layers]
    bm = [layer.b_mult for layer in m0.layers]
    # A bias with multiplier 0 (NTK parameterization with b_std = 0) neither acts nor
    # moves (its gradient is 0·Σδ): skip its work; it is returned unchanged.
    active = [b is not None and bm[i] != 0.0 for i, b in enumerate(bs)]
    # First-layer bias folded into its GEMM: x_aug = [x, c] with c = b_mult/w_mult and
    # W_aug = [W; b] give w_mult·x_aug W_aug = w_mult·xW + b_mult·b, and the update
    # W_aug −= η·w_mult·x_augᵀδ moves b by η·b_mult·Σδ: exactly its gradient step.
    aug0 = active[0]
    if aug0:
        Ws[0] = torch.cat([Ws[0], bs[0].unsqueeze(0)], dim=0).contiguous()  # type: ignore[union-attr]
        bs[0] = Ws[0][d]
    c0 = (bm[0] / wm[0]) if aug0 else 0.0  # type: ignore[operator]

    def augment(inp: torch.Tensor) -> torch.Tensor:
        if not aug0:
            return inp
        return torch.cat(
            [inp, torch.full((inp.shape[0], 1), c0, dtype=inp.dtype, device=inp.device)], dim=1
        )

    init = _stacked_dict(Ws, bs, S, d, width, aug0, clone=True)
    n, k = x.shape[0], y.shape[1]
    losses = torch.empty(len(record), S, dtype=x.dtype, device=x.device)
    evals = [] if x_eval is not None else None
    diverged = torch.zeros(S, dtype=torch.bool, device=x.device)

    def act_(h: torch.Tensor) -> torch.Tensor:
        if relu:
            return h.clamp_min_(0.0)
        return torch.where(h > 0, h * b_slope, h * a_slope, out=h)

    outs = [layer.out_features for layer in m0.layers]

    def buffers(rows: int) -> list[torch.Tensor]:
        # Preallocated once: fresh multi-MB tensors each step cost page faults.
        bufs = [torch.empty(rows, S, outs[0], dtype=x.dtype, device=x.device)]
        bufs += [torch.empty(S, rows, o, dtype=x.dtype, device=x.device) for o in outs[1:]]
        return bufs

    def forward(inp: torch.Tensor, P: list[torch.Tensor]) -> torch.Tensor:
        rows = inp.shape[0]
        flat = P[0].view(rows, S * width)
        torch.addmm(flat, inp, Ws[0], beta=0.0, alpha=wm[0], out=flat)  # bias folded in
        h = P[0].permute(1, 0, 2)  # (S, n, w) view of the (n, S, w) buffer
        for i in range(1, L):
            act_(P[i - 1])
            if outs[i] == 1:
                # a single output: the row-vector form wᵀHᵀ reads H once at full bandwidth
                # (a batched GEMV with one column is several times slower on CPU)
                torch.bmm(Ws[i].transpose(1, 2), h.transpose(1, 2), out=P[i].view(S, 1, rows))
                P[i].mul_(wm[i])
                if active[i]:
                    P[i].add_((bs[i] * bm[i]).unsqueeze(1))  # type: ignore[operator]
            elif active[i]:
                bias = (bs[i] * bm[i]).unsqueeze(1)  # type: ignore[operator]
                torch.baddbmm(bias, h, Ws[i], alpha=wm[i], out=P[i])
            else:
                torch.baddbmm(P[i], h, Ws[i], beta=0.0, alpha=wm[i], out=P[i])
            h = P[i]
        return h  # (S, n, k)

    def snapshot(i: int, out: torch.Tensor) -> None:
        losses[i] = 0.5 * ((out - y) ** 2).mean(dim=(1, 2))
        if evals is not None:
            evals.append(forward(augment(x_eval), buffers(x_eval.shape[0])).clone())  # type: ignore[union-attr]

    xa = augment(x)
    P = buffers(n)
    G = buffers(n)[: L - 1]  # ∂L/∂(pre-activation) of each hidden layer, same layouts
    dout = torch.empty(S, n, k, dtype=x.dtype, device=x.device)
    ri = 0
    with torch.no_grad():
        for step in range(0, steps + 1):
            out = forward(xa, P)
            if ri < len(record) and record[ri] == step:
                snapshot(ri, out)
                ri += 1
            if step == steps:
                break
            delta = torch.sub(out, y, out=dout).mul_(1.0 / (n * k))  # (S, n, k) = ∂L/∂f
            bad = ~torch.isfinite(delta).all(dim=2).all(dim=1)
            if bool(bad.any()):
                diverged |= bad
                delta[diverged] = 0.0
            for i in range(L - 1, 0, -1):
                a_in = P[i - 1]  # post-activation input of layer i
                a_b = a_in.permute(1, 0, 2) if i == 1 else a_in  # (S, n, fan_in)
                back = G[i - 1]
                # δ_{i−1} = (δ_i W_iᵀ·w_mult) ⊙ φ'(pre_{i−1}), φ' read off the post-activation
                back_b = back.permute(1, 0, 2) if i == 1 else back
                if outs[i] == 1:  # rank one: a broadcast product, not a K = 1 GEMM
                    torch.mul(delta, Ws[i].transpose(1, 2), out=back_b)
                else:
                    torch.bmm(delta, Ws[i].transpose(1, 2), out=back_b)
                if relu:
                    torch.ops.aten.threshold_backward.grad_input(back, a_in, 0.0, grad_input=back)
                else:
                    torch.where(a_in > 0, back * b_slope, back * a_slope, out=back)
                if wm[i] != 1.0:
                    back.mul_(wm[i])
                if active[i]:
                    bs[i].sub_(delta.sum(dim=1), alpha=lr * bm[i])  # type: ignore[union-attr,arg-type]
                if outs[i] == 1:  # Wᵀ += −η·w_mult·δᵀA, the row-vector form
                    Ws[i].transpose(1, 2).baddbmm_(delta.transpose(1, 2), a_b, alpha=-lr * wm[i])
                else:
                    Ws[i].baddbmm_(a_b.transpose(1, 2), delta, alpha=-lr * wm[i])
                delta = back
            # layer 0: one GEMM for all members; δ is (n, S, w) here (or (S, n, k) if L == 1)
            d0 = delta.view(n, S * width) if L > 1 else delta.permute(1, 0, 2).reshape(n, -1)
            Ws[0].addmm_(xa.T, d0, alpha=-lr * wm[0])
            if progress is not None:
                progress(step + 1, steps)
    eval_out = torch.stack(evals) if evals else None
    return EnsembleResult(
        record, losses, eval_out, diverged, _stacked_dict(Ws, bs, S, d, width, aug0), init
    )


def _stacked_dict(
    Ws: list[torch.Tensor],
    bs: list[torch.Tensor | None],
    S: int,
    d: int,
    width: int,
    aug0: bool,
    clone: bool = False,
) -> dict[str, torch.Tensor]:
    """Back to ``MLP`` parameter names, each stacked over members: (S, fan_out, fan_in)."""
    out = {}
    for i, (w, b) in enumerate(zip(Ws, bs, strict=True)):
        if i == 0:
            w = (w[:d] if aug0 else w).reshape(d, S, width).permute(1, 2, 0)  # (S, width, d)
            b = None if b is None else b.view(S, width)
        else:
            w = w.transpose(1, 2)
        out[f"layers.{i}.weight"] = w.clone() if clone else w
        if b is not None:
            out[f"layers.{i}.bias"] = b.clone() if clone else b
    return out


def _fusable_activation(model: MLP) -> bool:
    # φ'(pre) is read off the stored post-activation, which needs sign(φ(x)) = sign(x).
    ab = model.act.ab
    return ab is not None and ab[0] >= 0 and ab[1] > 0
