"""The probe interface: something read from a model at recorded steps of a training loop.

It lives in ``measure`` so that measurements (the sharpness probe, the gradient-noise
probe) can implement it without importing ``train``; :class:`learnmech.train.Recorder`
drives probes.
"""

from __future__ import annotations

from torch import nn

__all__ = ["Probe"]


class Probe:
    """Base class: ``attach`` once, ``read`` at every recorded step."""

    every: int = 1

    def attach(self, model: nn.Module) -> None:
        pass

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        raise NotImplementedError

    def detach(self) -> None:
        pass

    def pause(self, paused: bool) -> None:
        """Called around other probes' work (e.g. NTK passes) that must not be observed."""
