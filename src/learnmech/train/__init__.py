"""Training engines: plain loops, vectorized ensembles over seeds, probes for any loop."""

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
    "KernelChange",
    "Probe",
    "Recorder",
    "TrainResult",
    "UpdateRMS",
    "WeightRMS",
    "train",
    "train_ensemble",
]
