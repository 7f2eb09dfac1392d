"""Conserved quantities of gradient flow from rescaling symmetries (Kunin et al. 2021).

A symmetry of the loss gives a conservation law of gradient flow ("Neural mechanics:
symmetry and broken conservation laws in deep learning dynamics", Kunin, Sagastuy-Brena,
Ganguli, Yamins & Tanaka, ICLR 2021, §4–5; Du, Hu & Lee 2018 for linear nets):

* Deep linear nets (GL(n) symmetry between consecutive layers): the matrices
  C_ℓ = W_ℓ W_ℓᵀ − W_{ℓ+1}ᵀ W_{ℓ+1} are constant.
* ReLU (any positively homogeneous) layer: scaling neuron j's incoming weights and bias by
  c and its outgoing weights by 1/c leaves f unchanged, so c_j = ‖w_in,j‖² + b_j² −
  ‖w_out,j‖² is constant (in the trained parameters, whatever fixed multipliers the
  parameterization applies).

Discrete steps break them: one GD step changes C by η²(g_in g_inᵀ − g_outᵀg_out), so over a
fixed training time t = η·steps the drift is O(η t); minibatch noise adds η²·tr Cov(g)/B
per step, so SGD drifts more at small batch B (Kunin et al. 2021, eq. 10).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["balancedness", "neuron_balance"]


@torch.no_grad()
def balancedness(weights: list[torch.Tensor] | nn.Module) -> list[torch.Tensor]:
    """C_ℓ = W_ℓW_ℓᵀ − W_{ℓ+1}ᵀW_{ℓ+1} for consecutive layers (hidden_ℓ × hidden_ℓ each)."""
    ws = list(weights.weights) if isinstance(weights, nn.Module) else list(weights)
    if len(ws) < 2:
        raise ValueError("balancedness needs at least two layers")
    return [ws[i] @ ws[i].T - ws[i + 1].T @ ws[i + 1] for i in range(len(ws) - 1)]


@torch.no_grad()
def neuron_balance(
    w_in: torch.Tensor, w_out: torch.Tensor, b_in: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-neuron ‖w_in,j‖² (+ b_j²) − ‖w_out,j‖² for a homogeneous layer.

    ``w_in``: (hidden, fan_in) incoming weights; ``w_out``: (fan_out, hidden) outgoing.
    For a :class:`learnmech.nets.MLP` pass the raw parameters of two consecutive layers.
    """
    if w_in.shape[0] != w_out.shape[1]:
        raise ValueError(f"w_in has {w_in.shape[0]} neurons but w_out has {w_out.shape[1]} inputs")
    c = (w_in * w_in).sum(1) - (w_out * w_out).sum(0)
    if b_in is not None:
        c = c + b_in * b_in
    return c
