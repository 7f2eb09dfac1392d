"""Hyperparameter theories: parameterizations in width and depth, coord check, transfer.

* :func:`parametrize` — SP, NTK, μP and mean-field in width, depth-μP and CompleteP in
  depth, for any ``nn.Module`` (roles inferred against a base-width copy).
* :func:`coord_check` — per-layer activation and update sizes over widths, with a verdict
  from the fitted width exponent and diagnostics naming the layer and step that break.
* :func:`optimal_lr`, :func:`transfer_exponent` — the loss-minimising learning rate of a
  sweep and how it moves with width.
"""

from learnmech.hparams.coord_check import CoordCheck, coord_check
from learnmech.hparams.parametrize import (
    DEPTH_SCHEMES,
    OPTIMIZERS,
    SCHEMES,
    InputMultiplier,
    OutputMultiplier,
    Parametrization,
    ParamRule,
    parametrize,
)
from learnmech.hparams.transfer import LROptimum, TransferFit, optimal_lr, transfer_exponent

__all__ = [
    "DEPTH_SCHEMES",
    "OPTIMIZERS",
    "SCHEMES",
    "CoordCheck",
    "InputMultiplier",
    "LROptimum",
    "OutputMultiplier",
    "ParamRule",
    "Parametrization",
    "TransferFit",
    "coord_check",
    "optimal_lr",
    "parametrize",
    "transfer_exponent",
]
