"""Empirical neural tangent kernel of any ``nn.Module``.

Θ(x, x')_{ab} = Σ_p ∂f_a(x)/∂θ_p · ∂f_b(x')/∂θ_p  (Jacot et al. 2018, eq. 4).

Two implementations (Novak et al. 2022, "Fast Finite Width Neural Tangent Kernel"):

* ``"jacobian"`` — Jacobian contraction: J = ∂f/∂θ per input block by ``vmap(jacrev)``,
  then Θ = J₁ J₂ᵀ; fastest when the Jacobians fit in memory.
* ``"ntvp"`` — NTK-vector products: the rows of J₂ᵀ are obtained by reverse mode (one
  vector-Jacobian product per output of a block of x₂) and pushed through J₁ by forward
  mode (``jvp``), so J₁ is never stored: memory is independent of n₁.
* ``"outputs"`` — for ``mode="trace"``/``"diagonal"`` (Θ_aa only): the Jacobian of a
  chunk of outputs for *every* input at once, contracted and dropped before the next
  chunk. Each example's backward pass for each output runs exactly once, where the
  blocked contraction recomputes a column block's Jacobians for every row block when they
  do not all fit (≈ n·P·k/budget times: about 9× for a ResNet-18 with 10 outputs on 32
  inputs under 2 GiB).

``"auto"`` uses blocked Jacobian contraction when every Jacobian fits the budget (or the
full output-by-output kernel is asked for), the per-output contraction for trace or
diagonal kernels otherwise, and NTK-vector products only when not even two single-example
Jacobians fit. All are blocked, so n = 4,000 fits in a few GiB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import torch
from torch import nn
from torch.func import jacrev, jvp, vjp, vmap

from learnmech.errors import UserError
from learnmech.measure.model_io import (
    ModelMode,
    batch_coupled,
    call_functional,
    check_mode,
    composite_attention,
    in_mode,
    n_rows,
    prediction,
    random_layers,
    take,
)

__all__ = ["empirical_ntk", "jacobian_memory_bytes"]

Mode = Literal["full", "trace", "diagonal"]


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def _check_inputs(x: Any, name: str) -> Any:
    if isinstance(x, Mapping):
        for k, v in x.items():
            if isinstance(v, torch.Tensor):
                _check_inputs(v, f"{name}[{k!r}]")
        n_rows(x)
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a dict of them, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty batch (first axis = examples), got {tuple(x.shape)}"
        )
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def jacobian_memory_bytes(model: nn.Module, n: int, n_outputs: int) -> int:
    """Bytes held by the Jacobian of ``n`` inputs (n × outputs × parameters)."""
    p = sum(v.numel() for v in model.parameters() if v.requires_grad)
    itemsize = next(model.parameters()).element_size()
    return n * n_outputs * p * itemsize


def _by_outputs(
    f_single: Callable[[dict[str, torch.Tensor], Any], torch.Tensor],
    params: dict[str, torch.Tensor],
    x1: Any,
    x2: Any,
    symmetric: bool,
    mode: str,
    k: int,
    per_output: int,
    memory_budget: int,
    progress: Callable[[str], None],
) -> torch.Tensor:
    """Θ_aa(x, x') = J_a(x)·J_a(x') for chunks of outputs a: each chunk's Jacobian for every
    input, contracted, then dropped (see the module docstring)."""
    n1, n2 = n_rows(x1), n_rows(x2)
    n_all = n1 + (0 if symmetric else n2)
    chunk = max(1, min(k, memory_budget // max(per_output * n_all, 1)))
    p0 = next(iter(params.values()))
    out = torch.zeros((n1, n2, k), dtype=p0.dtype, device=p0.device)
    with torch.no_grad():
        for a0 in range(0, k, chunk):
            a1 = min(k, a0 + chunk)
            progress(f"empirical NTK: outputs {a0}–{a1} of {k} for all {n_all} inputs")

            def f_part(p: dict[str, torch.Tensor], x: Any, a0: int = a0, a1: int = a1) -> Any:
                return f_single(p, x)[a0:a1]

            jf = vmap(jacrev(f_part), in_dims=(None, 0))
            j1 = jf(params, x1)
            j2 = j1 if symmetric else jf(params, x2)
            for name in j1:
                a = j1[name].flatten(2)
                b = j2[name].flatten(2)
                out[:, :, a0:a1] += torch.einsum("ikp,jkp->ijk", a, b)
            del j1, j2
    return out.mean(-1) if mode == "trace" else out


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, n, size):
        yield i, min(n, i + size)


def empirical_ntk(
    model: nn.Module,
    x1: Any,
    x2: Any | None = None,
    *,
    mode: Mode = "full",
    implementation: Literal["auto", "jacobian", "ntvp", "outputs"] = "auto",
    block_size: int | None = None,
    memory_budget: int = 2 * 1024**3,
    model_mode: ModelMode = "eval",
    progress: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Empirical NTK of ``model`` between ``x1`` and ``x2`` at its current parameters.

    Arguments:
        model: any module mapping a batch (n, ...) to outputs (n, k) or (n,).
        x1, x2: input batches; ``x2=None`` means ``x1`` (symmetric blocks computed once).
        mode: ``"full"`` → (n1, n2, k, k); ``"trace"`` → (n1, n2), the mean over the k
            outputs of Θ_aa (the per-output kernel, comparable to the analytic NTK);
            ``"diagonal"`` → (n1, n2, k), Θ_aa for each output a.
        implementation: ``"jacobian"``, ``"ntvp"``, ``"outputs"`` (trace/diagonal only)
            or ``"auto"`` (by memory estimate, see the module docstring).
        block_size: inputs per block (default: from ``memory_budget``).
        memory_budget: bytes the Jacobian blocks may take.
        progress: called with a line of progress per block (long kernels take minutes).
        model_mode: ``"eval"`` (default), ``"train"`` or ``"keep"``. The NTK is a kernel
            between single examples, so layers that couple a batch (BatchNorm with batch
            statistics) or draw random masks (dropout) in the chosen mode are refused,
            naming them; in eval mode BatchNorm uses its running statistics and dropout
            is off. The model's flags and statistics are restored afterwards.

    Inputs may be tensors or dicts of tensors (``model(**x)``, e.g. ``input_ids``); the
    outputs are the prediction tensor (a HuggingFace ``ModelOutput``'s ``logits``),
    flattened per example.

    Returns:
        A tensor on the model's device in its dtype.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if mode not in ("full", "trace", "diagonal"):
        raise ValueError(f"mode must be 'full', 'trace' or 'diagonal', got {mode!r}")
    if implementation not in ("auto", "jacobian", "ntvp", "outputs"):
        raise ValueError(
            "implementation must be 'auto', 'jacobian', 'ntvp' or 'outputs', got "
            f"{implementation!r}"
        )
    if implementation == "outputs" and mode == "full":
        raise ValueError(
            "implementation='outputs' computes Θ_aa only: use mode='trace' or 'diagonal'"
        )
    check_mode(model_mode)
    x1 = _check_inputs(x1, "x1")
    symmetric = x2 is None
    x2 = x1 if symmetric else _check_inputs(x2, "x2")
    params = _params(model)
    if not params:
        raise ValueError("model has no trainable parameters")
    with in_mode(model, model_mode):
        bad = batch_coupled(model) + random_layers(model)
        if bad:
            raise UserError(
                f"the empirical NTK is a kernel between single examples, but in "
                f"model_mode={model_mode!r} these layers couple a batch or draw random "
                f"masks: {', '.join(bad[:4])}{', …' if len(bad) > 4 else ''}; use "
                "model_mode='eval'"
            )
        with composite_attention():  # vmap, jacrev and jvp through attention
            return _ntk(
                model,
                params,
                x1,
                x2,
                symmetric,
                mode,
                implementation,
                block_size,
                memory_budget,
                progress or (lambda _m: None),
            )


def _ntk(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    x1: Any,
    x2: Any,
    symmetric: bool,
    mode: Mode,
    implementation: str,
    block_size: int | None,
    memory_budget: int,
    progress: Callable[[str], None],
) -> torch.Tensor:
    buffers = dict(model.named_buffers())

    def f_single(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:
        return prediction(call_functional(model, p, buffers, x, one=True)).reshape(-1)

    with torch.no_grad():
        k = f_single(params, take(x1, 0)).numel()
    n1, n2 = n_rows(x1), n_rows(x2)
    per_input = jacobian_memory_bytes(model, 1, k)
    if implementation == "auto":
        # Blocked Jacobian contraction costs n1·n2·P multiply-adds plus (n1 + n2)·n/b
        # backward passes; NTK-vector products cost a forward-mode pass per (row, column)
        # pair, which for MLP-like models is several times more. Use NTVP only when not
        # even two single-example Jacobians fit the budget.
        every_fits = per_input * (n1 + (0 if symmetric else n2)) <= memory_budget
        one_output = per_input // max(k, 1) * (n1 + (0 if symmetric else n2))
        if every_fits or mode == "full":
            implementation = "jacobian" if 2 * per_input <= memory_budget else "ntvp"
        elif one_output <= memory_budget:
            implementation = "outputs"
        else:
            implementation = "jacobian" if 2 * per_input <= memory_budget else "ntvp"
    if implementation == "outputs":
        return _by_outputs(
            f_single,
            params,
            x1,
            x2,
            symmetric,
            mode,
            k,
            per_input // max(k, 1),
            memory_budget,
            progress,
        )
    if block_size is None:
        block_size = max(1, min(max(n1, n2), memory_budget // max(2 * per_input, 1)))
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")

    dtype = next(iter(params.values())).dtype
    device = next(iter(params.values())).device
    shape = {"full": (n1, n2, k, k), "trace": (n1, n2), "diagonal": (n1, n2, k)}[mode]
    out = torch.empty(shape, dtype=dtype, device=device)

    def contract(j1: dict[str, torch.Tensor], j2: dict[str, torch.Tensor]) -> torch.Tensor:
        # j: name -> (b, k, *param_shape); result (b1, b2, k, k) or reduced.
        total = None
        for name in j1:
            a = j1[name].flatten(2)
            b = j2[name].flatten(2)
            if mode == "full":
                term = torch.einsum("ikp,jlp->ijkl", a, b)
            else:
                term = torch.einsum("ikp,jkp->ijk", a, b)
            total = term if total is None else total.add_(term)
        assert total is not None
        return total.mean(-1) if mode == "trace" else total

    jac_fn = vmap(jacrev(f_single), in_dims=(None, 0))

    if implementation == "jacobian":
        with torch.no_grad():
            cache: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
            fits = per_input * (n1 + (0 if symmetric else n2)) <= memory_budget

            def jac(x: torch.Tensor, i0: int, i1: int, tag: int) -> dict[str, torch.Tensor]:
                key = (tag, i0)
                if fits and key in cache:
                    return cache[key]
                j = jac_fn(params, take(x, slice(i0, i1)))
                if fits:
                    cache[key] = j
                return j

            for r0, r1 in _blocks(n1, block_size):
                progress(f"empirical NTK: rows {r0}–{r1} of {n1} (Jacobian blocks of {block_size})")
                j1 = jac(x1, r0, r1, 1)
                for c0, c1 in _blocks(n2, block_size):
                    if symmetric and c1 <= r0:
                        continue
                    j2 = jac(x1 if symmetric else x2, c0, c1, 1 if symmetric else 2)
                    blk = contract(j1, j2)
                    out[r0:r1, c0:c1] = blk
                    if symmetric and c0 != r0:
                        out[c0:c1, r0:r1] = (
                            blk.transpose(0, 1).transpose(-1, -2)
                            if mode == "full"
                            else blk.transpose(0, 1)
                        )
        return out

    # NTK-vector products: for each block of x2, J2ᵀ e for every (example, output) by vjp,
    # then J1 (J2ᵀ e) by jvp for each block of x1.
    def f_batch(p: dict[str, torch.Tensor], x: Any) -> torch.Tensor:
        return prediction(call_functional(model, p, buffers, x)).reshape(n_rows(x), -1)

    for c0, c1 in _blocks(n2, block_size):
        xb = take(x2, slice(c0, c1))
        b = c1 - c0
        _, vjp_fn = vjp(lambda p, xb=xb: f_batch(p, xb), params)
        eye = torch.eye(b * k, dtype=dtype, device=device).reshape(b * k, b, k)
        (tangents,) = vmap(vjp_fn)(eye)  # name -> (b*k, *param_shape)
        tangents = {n: t.detach() for n, t in tangents.items()}
        for r0, r1 in _blocks(n1, block_size):
            xa = take(x1, slice(r0, r1))

            def push(t: dict[str, torch.Tensor], xa: torch.Tensor = xa) -> torch.Tensor:
                return jvp(lambda p: f_batch(p, xa), (params,), (t,))[1]

            # (b*k, r, k): column (j, l) of Θ for rows of the block
            cols = vmap(push)(tangents).detach().reshape(b, k, r1 - r0, k)
            full = cols.permute(2, 0, 3, 1)  # (r, b, k_row, k_col)
            if mode == "full":
                out[r0:r1, c0:c1] = full
            else:
                diag = torch.diagonal(full, dim1=-2, dim2=-1)  # (r, b, k)
                out[r0:r1, c0:c1] = diag.mean(-1) if mode == "trace" else diag
    return out
