"""Training engines: plain loops, vectorized ensembles over seeds, probes for any loop
(the curvature and gradient-noise probes live in :mod:`learnmech.measure` and are
re-exported here with the rest)."""

from learnmech.measure.gradients import GradientNoiseProbe
from learnmech.measure.hessian import SharpnessProbe
from learnmech.train.ensemble import EnsembleResult, train_ensemble
from learnmech.train.loops import TrainResult, train
from learnmech.train.recorder import (
    ActivationRMS,
    GradNorm,
    KernelChange,
    Probe,
    Recorder,
    UpdateRMS,
    WeightRMS,
)

__all__ = [
    "ActivationRMS",
    "EnsembleResult",
    "GradNorm",
    "GradientNoiseProbe",
    "KernelChange",
    "Probe",
    "Recorder",
    "SharpnessProbe",
    "TrainResult",
    "UpdateRMS",
    "WeightRMS",
    "train",
    "train_ensemble",
]
