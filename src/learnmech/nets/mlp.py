"""Fully connected networks whose initialisation matches the infinite-width kernels.

NTK parameterization (Jacot et al. 2018, eq. 1): parameters are N(0, 1) and the layer is
``h = (w_std/√fan_in) W x + b_std β``. Standard parameterization: ``W ~ N(0, w_std²/fan_in)``,
``b ~ N(0, b_std²)`` and ``h = W x + b``. With the same ``w_std``/``b_std`` both define the
same function distribution at init (the NNGP of :func:`learnmech.theory.kernels.mlp_kernels`);
they differ in their gradients, hence in the NTK and in training dynamics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from learnmech.theory.activations import ActivationSpec, get_activation

__all__ = ["MLP", "ScaledLinear"]


class ScaledLinear(nn.Module):
    """``y = w_mult · x Wᵀ + b_mult · b`` with explicit multipliers (abc-parameterizations)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        w_mult: float,
        b_mult: float | None,
        w_init_std: float,
        b_init_std: float,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.w_mult = float(w_mult)
        self.b_mult = None if b_mult is None else float(b_mult)
        w = torch.randn(out_features, in_features, generator=generator, dtype=dtype) * w_init_std
        self.weight = nn.Parameter(w)
        if b_mult is None:
            self.register_parameter("bias", None)
        else:
            b = torch.randn(out_features, generator=generator, dtype=dtype) * b_init_std
            self.bias = nn.Parameter(b)

    @classmethod
    def standard(
        cls,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> ScaledLinear:
        """SP layer: weights N(0, 1/fan_in), zero bias, unit multipliers."""
        return cls(
            in_features,
            out_features,
            w_mult=1.0,
            b_mult=1.0 if bias else None,
            w_init_std=1 / math.sqrt(in_features),
            b_init_std=0.0,
            generator=generator,
            dtype=dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.nn.functional.linear(x, self.weight) * self.w_mult
        return torch.addmm(
            self.bias * self.b_mult, x.reshape(-1, x.shape[-1]), self.weight.T, alpha=self.w_mult
        ).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, w_mult={self.w_mult:.4g}, "
            f"b_mult={self.b_mult}"
        )


class MLP(nn.Module):
    """MLP with ``depth`` hidden layers of ``width`` units and a linear readout.

    Arguments:
        in_dim, width, depth, out_dim: sizes (``depth`` hidden layers, as in
            :func:`~learnmech.theory.kernels.mlp_kernels`).
        activation: name, :class:`ActivationSpec` or elementwise callable.
        w_std, b_std: weight/bias standard deviations (``b_std=None``: no biases).
        parameterization: ``"ntk"`` or ``"standard"``.
        seed: seeds the initialisation (a private generator; global RNG untouched).
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        out_dim: int = 1,
        *,
        activation: str | ActivationSpec | Callable[[torch.Tensor], torch.Tensor] = "relu",
        w_std: float = 1.0,
        b_std: float | None = 0.0,
        parameterization: Literal["ntk", "standard"] = "ntk",
        seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("width", width), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
        if not (isinstance(w_std, int | float) and math.isfinite(w_std) and w_std > 0):
            raise ValueError(f"w_std must be a finite positive number, got {w_std!r}")
        if b_std is not None and not (
            isinstance(b_std, int | float) and math.isfinite(b_std) and b_std >= 0
        ):
            raise ValueError(f"b_std must be a finite number >= 0 or None, got {b_std!r}")
        if parameterization not in ("ntk", "standard"):
            raise ValueError(
                f"parameterization must be 'ntk' or 'standard', got {parameterization!r}"
            )
        self.in_dim, self.width, self.depth, self.out_dim = in_dim, width, depth, out_dim
        self.parameterization = parameterization
        self.w_std, self.b_std = float(w_std), b_std
        self.act = get_activation(activation)
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        sizes = [in_dim] + [width] * depth + [out_dim]
        layers = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            if parameterization == "ntk":
                layer = ScaledLinear(
                    fan_in,
                    fan_out,
                    w_mult=w_std / math.sqrt(fan_in),
                    b_mult=None if b_std is None else float(b_std),
                    w_init_std=1.0,
                    b_init_std=1.0,
                    generator=gen,
                    dtype=dtype,
                )
            else:
                layer = ScaledLinear(
                    fan_in,
                    fan_out,
                    w_mult=1.0,
                    b_mult=None if b_std is None else 1.0,
                    w_init_std=w_std / math.sqrt(fan_in),
                    b_init_std=0.0 if b_std is None else float(b_std),
                    generator=gen,
                    dtype=dtype,
                )
            layers.append(layer)
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = self.act.fn(layer(h))
        return self.layers[-1](h)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation of every hidden layer (for probes and coord checks)."""
        out = []
        h = x
        for layer in self.layers[:-1]:
            h = self.act.fn(layer(h))
            out.append(h)
        return out
