"""Parameterization-aware networks."""

from learnmech.nets.gpt import GPT
from learnmech.nets.mlp import MLP, ScaledLinear
from learnmech.nets.resmlp import ResMLP

__all__ = ["GPT", "MLP", "ResMLP", "ScaledLinear"]
