"""Infinite-width NNGP and NTK kernels of fully connected networks.

Conventions match neural-tangents (Novak et al. 2020, ``stax.serial(Dense(w, W_std, b_std),
act, …, Dense(1, W_std, b_std))``): ``depth`` counts hidden layers, the readout is a
``Dense(1)`` after the last activation, and inputs enter through x·x'/d.

NTK parameterization (Jacot et al. 2018, eq. 5–6; Lee et al. 2019, §2.3)::

    Σ¹(x, x') = w² x·x'/d + b²,           Θ¹ = Σ¹
    Σ^{ℓ+1}   = w² E[φ(u)φ(v)] + b²,      Θ^{ℓ+1} = Σ^{ℓ+1} + w² E[φ'(u)φ'(v)] Θ^ℓ

with (u, v) ~ N(0, [[Σ^ℓ(x,x), Σ^ℓ(x,x')], [Σ^ℓ(x,x'), Σ^ℓ(x',x')]]).

This is the serial Dense/activation case of :mod:`learnmech.theory.stax` (the same
engine computes it; ReLU-family layers take a fused in-place path).

Standard parameterization (Sohl-Dickstein et al. 2020, "On the infinite width limit of
neural networks with a standard parameterization"; neural-tangents ``parameterization=
"standard"``): the NNGP is unchanged and the NTK of a layer with fan-in N is
``Θ ← N · E[φφ] + w² E[φ'φ'] Θ (+1 with a bias)``, so it depends on the finite
``width`` of the hidden layers (N = d for the first layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from learnmech.theory import stax
from learnmech.theory.activations import ActivationSpec, get_activation
from learnmech.theory.stax import Kernels, _as_inputs

__all__ = ["Kernels", "mlp_kernels"]

Array = Any  # numpy.ndarray or torch.Tensor, mirroring the input type
_BLOCK_ELEMENTS = 1 << 18  # pairs per block (4 buffers of 2 MiB in float64; tuned on 2 cores)


def _as_matrix(x: Any, name: str, dtype: torch.dtype | None, device: Any) -> torch.Tensor:
    """Inputs as stax reads them, restricted to vectors (n, d)."""
    if isinstance(x, np.ndarray | torch.Tensor) and x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(x.shape)}")
    t = _as_inputs(x, name, dtype, device)
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(t.shape)}")
    return t


def _check_positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return v


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
        quadrature_degree: quadrature nodes per dimension for non-closed-form
            activations; ``None`` chooses it per layer from an error estimate
            (:func:`learnmech.theory.stax.kernels`: |I_q − I_2q| ≤ 1e-9 relative at the
            layer's largest variance, so the kernel meets 1e-7 relative).
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
    t1 = _as_matrix(x1, "x1", dtype, device)
    t2 = None if x2 is None else _as_matrix(x2, "x2", t1.dtype, t1.device)
    if t2 is not None and t2.shape[1] != t1.shape[1]:
        raise ValueError(
            f"x1 and x2 must have the same number of features, got {t1.shape[1]} and {t2.shape[1]}"
        )
    hidden = int(width) if width is not None else 512  # NTK parameterization: irrelevant
    layers: list[stax.Layer] = []
    for _ in range(depth):
        layers += [stax.Dense(hidden, w_std, b_std, parameterization), stax.Activation(act)]
    net = stax.serial(*layers, stax.Dense(1, w_std, b_std, parameterization))
    k = stax.kernels(
        net, t1, t2, get=get, quadrature_degree=quadrature_degree, block_pairs=block_elements
    )
    if not isinstance(x1, torch.Tensor):
        return Kernels(
            nngp=None if k.nngp is None else k.nngp.cpu().numpy(),
            ntk=None if k.ntk is None else k.ntk.cpu().numpy(),
        )
    return Kernels(nngp=k.nngp, ntk=k.ntk)
