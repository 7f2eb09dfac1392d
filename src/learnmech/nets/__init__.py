"""Parameterization-aware networks."""

from learnmech.nets.mlp import MLP, ScaledLinear

__all__ = ["MLP", "ScaledLinear"]
