"""Infinite-width NNGP and NTK kernels of fully connected networks.

Conventions match neural-tangents (Novak et al. 2020, ``stax.serial(Dense(w, W_std, b_std),
act, …, Dense(1, W_std, b_std))``): ``depth`` counts hidden layers, the readout is a
``Dense(1)`` after the last activation, and inputs enter through x·x'/d.

NTK parameterization (Jacot et al. 2018, eq. 5–6; Lee et al. 2019, §2.3)::

    Σ¹(x, x') = w² x·x'/d + b²,           Θ¹ = Σ¹
    Σ^{ℓ+1}   = w² E[φ(u)φ(v)] + b²,      Θ^{ℓ+1} = Σ^{ℓ+1} + w² E[φ'(u)φ'(v)] Θ^ℓ

with (u, v) ~ N(0, [[Σ^ℓ(x,x), Σ^ℓ(x,x')], [Σ^ℓ(x,x'), Σ^ℓ(x',x')]]).

Standard parameterization (Sohl-Dickstein et al. 2020, "On the infinite width limit of
neural networks with a standard parameterization"; neural-tangents ``parameterization=
"standard"``): the NNGP is unchanged and the NTK of a layer with fan-in N is
``Θ ← N · E[φφ] + w² E[φ'φ'] Θ (+1 with a bias)``, so it depends on the finite
``width`` of the hidden layers (N = d for the first layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from learnmech.theory.activations import ActivationSpec, get_activation

__all__ = ["Kernels", "mlp_kernels"]

Array = Any  # numpy.ndarray or torch.Tensor, mirroring the input type
_BLOCK_ELEMENTS = 1 << 18  # pairs per block (4 buffers of 2 MiB in float64; tuned on 2 cores)


@dataclass(frozen=True)
class Kernels:
    """Kernel matrices of shape (n1, n2); either may be ``None`` if not requested."""

    nngp: Array | None
    ntk: Array | None


def _as_matrix(x: Any, name: str, dtype: torch.dtype | None, device: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray | list | tuple):
        try:
            t = torch.as_tensor(np.asarray(x, dtype=float))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be numeric, got {type(x).__name__}: {err}") from None
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if dtype is not None:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _check_positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return v


def _abrelu_layer_inplace(
    s: torch.Tensor,
    t: torch.Tensor | None,
    s11: torch.Tensor,
    s22: torch.Tensor,
    ab: tuple[float, float] | None,
    w2: float,
    b2: float,
    bufs: list[torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One hidden layer of the ABReLU recursion (NTK parameterization), in place.

    Same formula as :func:`learnmech.theory.activations._abrelu_dual` (neural-tangents'
    ABRelu), rearranged so that a layer is ~12 passes over preallocated buffers:
    r = √(Σ11Σ22 − Σ12²), θ = atan2(r, Σ12), D = w²[(a²+b²)/2 − f θ] with f = (a−b)²/2π,
    Σ' = w² f r + D Σ12 + b², Θ' = Σ' + D Θ.
    """
    assert ab is not None
    a, b = ab
    factor = (a - b) ** 2 / (2.0 * math.pi)
    if not bufs:
        bufs = [torch.empty_like(s), torch.empty_like(s)]
    r, d = bufs
    # Σ11Σ22 − Σ12² without a fused multiply-add, so that it is exactly 0 when Σ12² equals
    # the rounded Σ11Σ22 (the pinned diagonal): an FMA would leave the rounding error.
    torch.mul(s, s, out=d)
    torch.mul(s11, s22, out=r)
    r.sub_(d).clamp_min_(0.0).sqrt_()
    torch.atan2(r, s, out=d)
    d.mul_(-factor * w2).add_(w2 * (a * a + b * b) / 2.0)
    r.mul_(w2 * factor).addcmul_(d, s)
    if b2:
        r.add_(b2)
    if t is not None:
        t.mul_(d).add_(r)
    return r, [s, d]  # the old Σ buffer is reused next layer


def mlp_kernels(
    x1: Array,
    x2: Array | None = None,
    *,
    depth: int,
    activation: str | ActivationSpec | Callable[[torch.Tensor], torch.Tensor] = "relu",
    w_std: float = 1.0,
    b_std: float | None = 0.0,
    parameterization: Literal["ntk", "standard"] = "ntk",
    width: int | None = None,
    get: Sequence[str] = ("nngp", "ntk"),
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    quadrature_degree: int | None = None,
    block_elements: int = _BLOCK_ELEMENTS,
) -> Kernels:
    """Infinite-width NNGP and NTK of an MLP (neural-tangents conventions).

    Arguments:
        x1: inputs, shape (n1, d); numpy array or torch tensor.
        x2: second inputs (n2, d); ``None`` means ``x1`` (the symmetric case is computed
            once: only the upper triangle of blocks, mirrored).
        depth: number of hidden layers (0 = a linear readout of the inputs).
        activation: name (``relu``, ``leaky_relu(0.2)``, ``abs``, ``identity``, ``erf``:
            closed forms; ``gelu``, ``tanh``, ``sigmoid``, ``softplus``: quadrature), an
            :class:`ActivationSpec`, or any elementwise torch callable (quadrature).
        w_std, b_std: weight and bias standard deviations (``b_std=None``: no bias).
        parameterization: ``"ntk"`` or ``"standard"`` (the latter needs ``width``).
        width: hidden width, only used by the standard-parameterization NTK.
        get: which kernels to compute, a subset of ``("nngp", "ntk")``.
        dtype: computation dtype (default: the input's float dtype).
        quadrature_degree: Gauss–Hermite nodes per dimension for non-closed-form
            activations; ``None`` picks it per layer from the largest pre-activation
            variance s (64·√s, clipped to [64, 256]): the nonlinearity varies on a unit
            scale, which spans ~√s standard deviations of the Gaussian.
        block_elements: pairs per block (memory/cache blocking for large n).

    Returns:
        :class:`Kernels` with (n1, n2) matrices, numpy if ``x1`` was numpy, else torch.
    """
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
    depth = int(depth)
    w_std = _check_positive_float(w_std, "w_std")
    if b_std is not None:
        b_std = _check_positive_float(b_std, "b_std", allow_zero=True)
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    get = tuple(get)
    unknown = set(get) - {"nngp", "ntk"}
    if unknown or not get:
        raise ValueError(f"get must be a non-empty subset of ('nngp', 'ntk'), got {get!r}")
    want_ntk = "ntk" in get
    if parameterization == "standard" and want_ntk and depth > 0:
        if width is None or isinstance(width, bool) or int(width) != width or width < 1:
            raise ValueError(
                "the standard-parameterization NTK depends on the hidden width: "
                f"pass width=<positive int>, got {width!r}"
            )
    if quadrature_degree is not None and (
        not isinstance(quadrature_degree, int) or quadrature_degree < 2
    ):
        raise ValueError(f"quadrature_degree must be an integer >= 2, got {quadrature_degree!r}")
    act = get_activation(activation)

    return_numpy = not isinstance(x1, torch.Tensor)
    t1 = _as_matrix(x1, "x1", dtype, device)
    symmetric = x2 is None
    t2 = t1 if symmetric else _as_matrix(x2, "x2", t1.dtype, t1.device)
    if t2.shape[1] != t1.shape[1]:
        raise ValueError(
            f"x1 and x2 must have the same number of features, got {t1.shape[1]} and {t2.shape[1]}"
        )
    if not symmetric and t2.shape == t1.shape and bool(torch.equal(t1, t2)):
        symmetric, t2 = True, t1  # same inputs: compute once, exact diagonal
    n1, d = t1.shape
    n2 = t2.shape[0]
    w2 = w_std * w_std
    b2 = 0.0 if b_std is None else b_std * b_std
    bias_ntk = 0.0 if b_std is None else 1.0  # standard param: ∂f/∂b = 1
    standard = parameterization == "standard"

    with torch.no_grad():
        # Variance recursion on the diagonal: var[ℓ] enters hidden activation ℓ+1.
        def degree(v: torch.Tensor) -> int:
            if quadrature_degree is not None:
                return quadrature_degree
            return int(min(256, max(64, math.ceil(64 * math.sqrt(float(v.max()))))))

        def variances(t: torch.Tensor) -> list[torch.Tensor]:
            v = w2 * (t * t).sum(1) / d + b2
            out = [v]
            for _ in range(depth - 1):
                v = w2 * act.dual_diagonal(v, quadrature_degree=degree(v)) + b2
                out.append(v)
            return out

        var1 = variances(t1)
        var2 = var1 if symmetric else variances(t2)
        degrees = [max(degree(a), degree(b)) for a, b in zip(var1, var2, strict=True)]

        nngp = torch.empty((n1, n2), dtype=t1.dtype, device=t1.device) if "nngp" in get else None
        ntk = torch.empty((n1, n2), dtype=t1.dtype, device=t1.device) if want_ntk else None

        rows = max(1, min(n1, block_elements // max(n2, 1)))
        if act.closed_form is None:  # quadrature holds q extra values per pair
            rows = max(1, min(n1, block_elements // max(n2 * max(degrees, default=64) // 8, 1)))
        for r0 in range(0, n1, rows):
            r1 = min(n1, r0 + rows)
            c0 = r0 if symmetric else 0
            xr = t1[r0:r1]
            xc = t2[c0:]
            dot = xr @ xc.T  # (r, c)
            s = dot * (w2 / d)
            s += b2
            t = None
            if want_ntk:
                t = (dot + bias_ntk) if standard else s.clone()
            # On the diagonal of a symmetric kernel the correlation is exactly 1: pin those
            # entries to the variance recursion so that rounding in x·x cannot leave a
            # spurious angle θ ≈ √ε (neural-tangents keeps that error, ~1e-8 relative).
            diag_idx = torch.arange(r1 - r0, device=t1.device) if symmetric else None
            bufs: list[torch.Tensor] = []
            for layer in range(depth):
                if diag_idx is not None:
                    s[diag_idx, diag_idx] = var1[layer][r0:r1]
                s11 = var1[layer][r0:r1, None]
                s22 = var2[layer][None, c0:]
                if act.closed_form == "abrelu" and not standard:
                    s, bufs = _abrelu_layer_inplace(s, t, s11, s22, act.ab, w2, b2, bufs)
                    continue
                v, vp = act.dual(s, s11, s22, need_prime=want_ntk, quadrature_degree=degrees[layer])
                if t is not None:
                    assert vp is not None
                    t.mul_(vp).mul_(w2)
                    if standard:  # the next Dense has fan-in = hidden width
                        t.add_(v, alpha=float(width)).add_(bias_ntk)  # type: ignore[arg-type]
                s = v.mul_(w2).add_(b2)
                if t is not None and not standard:
                    t.add_(s)
            if symmetric:  # make the diagonal square exactly symmetric (matmul rounding)
                for m in (s, t):
                    if m is not None:
                        sq = m[:, : r1 - r0]
                        sq.copy_(torch.triu(sq) + torch.triu(sq, 1).T)
            if nngp is not None:
                nngp[r0:r1, c0:] = s
                if symmetric:
                    nngp[r1:, r0:r1] = s[:, r1 - r0 :].T
            if ntk is not None and t is not None:
                ntk[r0:r1, c0:] = t
                if symmetric:
                    ntk[r1:, r0:r1] = t[:, r1 - r0 :].T

    if return_numpy:
        return Kernels(
            nngp=None if nngp is None else nngp.cpu().numpy(),
            ntk=None if ntk is None else ntk.cpu().numpy(),
        )
    return Kernels(nngp=nngp, ntk=ntk)
