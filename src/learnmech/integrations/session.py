"""The part every integration shares: probes on a model, rows out to sinks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.integrations.sinks import Sink
from learnmech.measure.probe import Probe
from learnmech.train.recorder import Recorder

__all__ = ["ProbeSession"]


class ProbeSession:
    """Probes attached to a model (on the first :meth:`record`), their rows sent to sinks.

    Arguments:
        probes: :class:`~learnmech.measure.probe.Probe` instances (``learnmech.train``).
        sinks: where rows go (:mod:`learnmech.integrations.sinks`); none keeps them here.
        every: record every k-th optimizer step (each probe's own ``every`` still applies).
    """

    def __init__(self, probes: Iterable[Probe], sinks: Sequence[Sink] = (), every: int = 1) -> None:
        self.probes = list(probes)
        for p in self.probes:
            if not isinstance(p, Probe):
                raise UserError(f"probes must be learnmech Probe instances, got {type(p).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"every must be a positive integer, got {every!r}")
        for s in sinks:
            if not isinstance(s, Sink):
                raise UserError(f"sinks must be learnmech Sink instances, got {type(s).__name__}")
        self.sinks, self.every = list(sinks), every
        self.recorder: Recorder | None = None
        self._sent = 0
        self._last: int | None = None

    def start(self, model: nn.Module) -> None:
        """Attach the probes before the first step (so :class:`UpdateRMS` measures the
        first update from the initial weights)."""
        if self.recorder is None:
            self.recorder = Recorder(model, self.probes, every=self.every)

    def record(self, model: nn.Module, step: int, **scalars: float | torch.Tensor) -> None:
        """Read the probes at ``step`` (once per step) and send the new rows."""
        if self.recorder is None:
            self.recorder = Recorder(model, self.probes, every=self.every)
        elif self.recorder.model is not model:
            raise UserError("a ProbeSession follows one model; make one per training run")
        if step == self._last:
            return
        self._last = step
        self.recorder.step(step, **scalars)
        self.flush()

    def flush(self) -> None:
        if self.recorder is None:
            return
        rows = self.recorder.rows()[self._sent :]
        self._sent += len(rows)
        if rows:
            for s in self.sinks:
                s.log(rows)

    def rows(self) -> list[dict[str, Any]]:
        return self.recorder.rows() if self.recorder else []

    def close(self, **info: Any) -> None:
        """Detach the probes and close every sink (``info`` goes to sinks that keep it)."""
        self.flush()
        if self.recorder is not None:
            self.recorder.close()
        for s in self.sinks:
            s.close(**info)
