"""Train several copies of one model, each with its own torch optimizer, in lockstep.

A learning-rate sweep trains the same architecture many times, differing only in the
initial seed, the data stream and the optimizer's hyperparameters. Trained one by one, a
small model's step is dominated by per-operation overhead (Python, the dispatcher, small
kernels), paid once per member. :func:`train_steps_stacked` stacks the members'
parameters (``torch.func.stack_module_state``), runs one ``vmap``-ed forward and backward
for all of them (``torch.func.functional_call``), and applies each member's own optimizer
update to the stacked tensors — per-member, per-parameter-group learning rates, weight
decay and ε, as μP's param groups set them. It is the vectorized counterpart of
:func:`learnmech.train.loops.train_steps` and equals it member by member to float
tolerance (tested), including where a member diverges: that member is frozen before its
non-finite loss can reach its parameters, and its record stops there.

What stacks (:func:`stack_reason` says why not, and callers fall back to the loop): members
of one class with the same parameter names, shapes and dtypes; fresh ``torch.optim.SGD``
(momentum, no Nesterov, no dampening), ``Adam`` or ``AdamW`` optimizers (no AMSGrad, no
``maximize``) of one class over the members' trainable parameters; and a model without
randomness in training mode (dropout draws different numbers under ``vmap`` than in a
loop) and without buffers that training updates (BatchNorm's running statistics).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import stack_module_state, vmap

from learnmech.measure.model_io import call_functional, composite_attention, random_layers
from learnmech.train.loops import StepRun

__all__ = ["CPU_STACK_MAX_PARAMS", "stack_reason", "stacking_pays", "train_steps_stacked"]

_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)

#: on a CPU, stack members of at most this many parameters each: around 300k the stacked
#: tensors fall out of cache and the loop is as fast (measured for 21 members of a GPT and
#: an MLP: benchmarks/bench_plan_sweep.py, docs/benchmarks.md)
CPU_STACK_MAX_PARAMS = 200_000


def stacking_pays(params: int, device: Any) -> bool:
    """Whether members of ``params`` parameters each train faster stacked than in a loop
    on ``device``: on a CPU up to :data:`CPU_STACK_MAX_PARAMS`; on an accelerator always
    (batched kernels fill it better than one small model at a time)."""
    return not str(device).startswith("cpu") or params <= CPU_STACK_MAX_PARAMS


def stack_reason(models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> str:
    """Why these members cannot be trained stacked ("" when they can)."""
    if not models:
        return "no members"
    if len(models) != len(optimizers):
        return f"{len(models)} models but {len(optimizers)} optimizers"
    m0, o0 = models[0], optimizers[0]
    shapes0 = [(n, p.shape, p.dtype, p.device) for n, p in m0.named_parameters()]
    for m in models:
        if type(m) is not type(m0):
            return "the members are of different classes"
        if [(n, p.shape, p.dtype, p.device) for n, p in m.named_parameters()] != shapes0:
            return "the members' parameters differ in names, shapes, dtypes or devices"
    if m0.training and random_layers(m0):
        return "the model draws random numbers in training mode (dropout)"
    if any(
        getattr(mod, "track_running_stats", False)
        and getattr(mod, "running_mean", None) is not None
        for mod in m0.modules()
    ):
        return "training updates the model's buffers (BatchNorm running statistics)"
    if type(o0) not in _OPTIMIZERS:
        return f"{type(o0).__name__} is not SGD, Adam or AdamW"
    for m, o in zip(models, optimizers, strict=True):
        if type(o) is not type(o0):
            return "the members' optimizers are of different classes"
        if o.state:
            return "an optimizer has state already (stacking starts from fresh optimizers)"
        if len(o.param_groups) != len(o0.param_groups):
            return "the members' optimizers have different param groups"
        owned = {id(p) for g in o.param_groups for p in g["params"]}
        if owned != {id(p) for p in m.parameters() if p.requires_grad}:
            return "an optimizer does not cover exactly its model's trainable parameters"
        for g in o.param_groups:
            if g.get("amsgrad") or g.get("maximize") or g.get("nesterov"):
                return "AMSGrad, maximize and Nesterov are not stacked"
            if g.get("dampening", 0.0):
                return "SGD dampening is not stacked"
            if isinstance(g["lr"], torch.Tensor):
                return "tensor learning rates are not stacked"
    return ""


def _hyper(
    models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer], names: list[str]
) -> dict[str, dict[str, list[float]]]:
    """name → hyperparameter → one value per member, read from each member's param groups."""
    keys = ("lr", "weight_decay", "eps", "momentum", "beta1", "beta2")
    out: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in names}
    for m, o in zip(models, optimizers, strict=True):
        group_of = {id(p): g for g in o.param_groups for p in g["params"]}
        for name, p in m.named_parameters():
            if name not in out:
                continue
            g = group_of[id(p)]
            betas = g.get("betas", (0.0, 0.0))
            vals = {
                "lr": g["lr"],
                "weight_decay": g.get("weight_decay", 0.0),
                "eps": g.get("eps", 0.0),
                "momentum": g.get("momentum", 0.0),
                "beta1": betas[0],
                "beta2": betas[1],
            }
            for k in keys:
                out[name][k].append(float(vals[k]))
    return out


def _column(vals: list[float], like: torch.Tensor) -> torch.Tensor:
    """Per-member values as an (S, 1, …, 1) float64 tensor broadcasting against ``like``."""
    return torch.tensor(vals, dtype=torch.float64, device=like.device).reshape(
        -1, *([1] * (like.ndim - 1))
    )


def train_steps_stacked(
    models: Sequence[nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    batch: Callable[[int, int], tuple[Any, torch.Tensor]],
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    steps: int,
    *,
    streams: Sequence[int] | None = None,
    eval_data: tuple[Any, torch.Tensor] | None = None,
    at: Iterable[int] = (),
    first_step: int = 1,
    write_back: bool = True,
) -> list[StepRun]:
    """Train every member on ``loss_fn(model(x), y)`` with its own optimizer, in lockstep:
    the vectorized :func:`~learnmech.train.loops.train_steps`.

    Arguments:
        models, optimizers: member ``i`` is ``models[i]`` updated by ``optimizers[i]``
            (see :func:`stack_reason` for what stacks; anything else raises ValueError).
        batch: ``batch(step, stream)`` → ``(x, y)``, called once per step per distinct
            stream (``x`` a tensor or a dict of tensors).
        loss_fn: ``loss_fn(output, y)``, the loss of one member's output (what the model
            returns: a tensor or a HuggingFace ``ModelOutput``) on its batch, a scalar.
        streams: member ``i`` trains on stream ``streams[i]`` (default: all on stream 0).
        eval_data: ``(x, y)``: after each step in ``at``, every member's ``loss_fn`` on it,
            in eval mode and without gradients (the record's values).
        write_back: copy the final parameters into ``models`` (and leave the optimizers
            untouched), so a caller can go on measuring the trained members.

    Returns one :class:`~learnmech.train.loops.StepRun` per member: the checkpoints reached
    before its training loss first became non-finite, and whether it did.
    """
    why = stack_reason(models, optimizers)
    if why:
        raise ValueError(f"cannot train these members stacked: {why}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    S = len(models)
    streams = list(streams) if streams is not None else [0] * S
    if len(streams) != S:
        raise ValueError(f"{S} members but {len(streams)} streams")
    checks = set(at)

    trainable = [n for n, p in models[0].named_parameters() if p.requires_grad]
    params, buffers = stack_module_state(list(models))
    params = {k: v.detach().clone() for k, v in params.items()}
    buffers = {k: v.detach().clone() for k, v in buffers.items()}
    hyper = _hyper(models, optimizers, trainable)
    o0 = optimizers[0]
    adam = isinstance(o0, torch.optim.Adam | torch.optim.AdamW)
    decoupled = isinstance(o0, torch.optim.AdamW) or bool(
        o0.defaults.get("decoupled_weight_decay", False)
    )
    cols = {n: {k: _column(v, params[n]) for k, v in hyper[n].items()} for n in trainable}
    state: dict[str, dict[str, torch.Tensor]] = {n: {} for n in trainable}
    # a real copy, not one on the meta device: moving a module there unties tied weights
    # (GPT-2's lm_head and wte), and functional_call would then leave one of them unset
    base = copy.deepcopy(models[0])

    def member_loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: Any, y: Any) -> Any:
        return loss_fn(call_functional(base, p, b, x), y)

    runs = [StepRun() for _ in range(S)]
    members = list(range(S))  # stacked row r holds member members[r]; diverged ones leave
    final: dict[int, dict[str, torch.Tensor]] = {}  # a diverged member's last parameters

    def data(step: int) -> tuple[Any, Any, Any]:
        """The live members' batches and vmap's in_dims for them (None: one shared batch)."""
        mine = [streams[i] for i in members]
        distinct = sorted(set(mine))
        parts = [batch(step, s) for s in distinct]
        if len(parts) == 1:
            return parts[0][0], parts[0][1], None
        index = torch.tensor([distinct.index(s) for s in mine])
        return _stack([p[0] for p in parts], index), _stack([p[1] for p in parts], index), 0

    for step in range(first_step, first_step + steps):
        x, y, dim = data(step)
        base.train(models[0].training)
        for n in trainable:
            params[n].requires_grad_(True)
        with composite_attention():
            losses = vmap(member_loss, in_dims=(0, 0, dim, dim))(params, buffers, x, y)
        finite = torch.isfinite(losses.detach()).cpu()
        if not bool(finite.all()):
            # the diverged members leave the stack before their loss reaches their
            # parameters (train_steps stops there); the rest go on as if alone
            rows = torch.nonzero(finite).flatten()
            for r in torch.nonzero(~finite).flatten().tolist():
                runs[members[r]].diverged = True
                final[members[r]] = {n: params[n][r].detach().clone() for n in trainable}
            members = [members[r] for r in rows.tolist()]
            if not members:
                break
            idx = rows.to(losses.device)
            params = {k: v.detach()[idx].requires_grad_(k in trainable) for k, v in params.items()}
            buffers = {k: v[idx] for k, v in buffers.items()}
            state = {n: {k: v[idx] for k, v in st.items()} for n, st in state.items()}
            cols = {n: {k: v[rows] for k, v in c.items()} for n, c in cols.items()}
            x, y, dim = data(step)
            with composite_attention():
                losses = vmap(member_loss, in_dims=(0, 0, dim, dim))(params, buffers, x, y)
        grads = torch.autograd.grad(losses.sum(), [params[n] for n in trainable])
        with torch.no_grad():
            for n, g in zip(trainable, grads, strict=True):
                p = params[n].requires_grad_(False)
                _update_(p, g, cols[n], state[n], step - first_step + 1, adam, decoupled)
        if eval_data is not None and step in checks:
            values = _evaluate(base, params, buffers, member_loss, eval_data, models[0].training)
            for r, i in enumerate(members):
                runs[i].steps.append(step)
                runs[i].values.append(values[r])
    if write_back:
        last = {i: {n: params[n][r] for n in trainable} for r, i in enumerate(members)}
        last.update(final)
        with torch.no_grad():
            for i, m in enumerate(models):
                named = dict(m.named_parameters())
                for n in trainable:
                    named[n].copy_(last[i][n])
    return runs


def _scalar_or(col: torch.Tensor, dtype: torch.dtype) -> float | torch.Tensor:
    """A float64 per-member column as a Python float when every member shares the value
    (torch's optimizers use Python floats: same rounding), else as a ``dtype`` column."""
    flat = col.flatten()
    if bool((flat == flat[0]).all()):
        return float(flat[0])
    return col.to(dtype)


def _update_(
    p: torch.Tensor,
    g: torch.Tensor,
    h: dict[str, torch.Tensor],
    st: dict[str, torch.Tensor],
    t: int,
    adam: bool,
    decoupled: bool,
) -> None:
    """One optimizer step, in place, on stacked ``p`` with per-member hyperparameters ``h``
    (float64 columns): the single-tensor updates of ``torch.optim.SGD``, ``Adam`` and
    ``AdamW`` (torch/optim/sgd.py, adam.py), with scalar factors formed in double precision
    as torch forms them from Python floats. ``g`` is consumed."""

    def k(v: torch.Tensor) -> float | torch.Tensor:
        return _scalar_or(v, p.dtype)

    lr, wd = h["lr"], h["weight_decay"]
    if adam:
        b1, b2 = h["beta1"], h["beta2"]
        if decoupled:
            p.mul_(k(1 - lr * wd))
        elif bool((wd != 0).any()):
            _axpy_(g, p, k(wd))
        m = st.setdefault("m", torch.zeros_like(p))
        v = st.setdefault("v", torch.zeros_like(p))
        m.lerp_(g, k(1 - b1))
        v.mul_(k(b2))
        w2 = k(1 - b2)
        if isinstance(w2, float):
            v.addcmul_(g, g, value=w2)
        else:
            v.add_(g.mul_(g).mul_(w2))
        denom = v.sqrt().div_(k((1 - b2**t).sqrt())).add_(k(h["eps"]))
        step_size = k(lr / (1 - b1**t))
        if isinstance(step_size, float):
            p.addcdiv_(m, denom, value=-step_size)
        else:
            p.sub_(torch.div(m, denom, out=denom).mul_(step_size))
        return
    if bool((wd != 0).any()):
        _axpy_(g, p, k(wd))
    mu = h["momentum"]
    if bool((mu != 0).any()):
        buf = st.get("buf")
        if buf is None:
            buf = st["buf"] = g.clone()
        else:
            buf.mul_(k(mu)).add_(g)
        g = torch.where(mu != 0, buf, g) if not bool((mu != 0).all()) else buf
    _axpy_(p, g, -k(lr))


def _axpy_(a: torch.Tensor, b: torch.Tensor, c: float | torch.Tensor) -> None:
    """a += c·b in place (``add_`` with ``alpha`` for a shared scalar, as torch does)."""
    if isinstance(c, float):
        a.add_(b, alpha=c)
    else:
        a.add_(b * c)


def _stack(parts: list[Any], index: torch.Tensor) -> Any:
    """Per-stream batches (a tensor or a dict of tensors each) gathered per member."""
    if isinstance(parts[0], dict):
        return {k: _stack([p[k] for p in parts], index) for k in parts[0]}
    stacked = torch.stack(parts)
    return stacked[index.to(stacked.device)]


def _evaluate(
    base: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    member_loss: Callable[..., Any],
    eval_data: tuple[Any, torch.Tensor],
    training: bool,
) -> list[float]:
    x, y = eval_data
    base.eval()
    try:
        with torch.no_grad(), composite_attention():
            vals = vmap(member_loss, in_dims=(0, 0, None, None))(params, buffers, x, y)
    finally:
        base.train(training)
    return [float(v) for v in vals.double().cpu()]
