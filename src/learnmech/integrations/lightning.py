"""A Lightning ``Trainer`` callback that runs learnmech probes.

Lightning zeroes the gradients at the start of the next training step (inside its
optimization closure), so the probes are read in ``on_train_batch_end`` of the step whose
update they describe, while its gradients are still in place. The step number is the
trainer's ``global_step`` (optimizer steps taken so far, so the first update is step 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from learnmech.errors import UserError
from learnmech.integrations.session import ProbeSession
from learnmech.integrations.sinks import Sink
from learnmech.measure.probe import Probe

__all__ = ["lightning_callback"]


def lightning_callback(probes: Iterable[Probe], sinks: Sequence[Sink] = (), every: int = 1) -> Any:
    """A ``lightning.pytorch.Callback`` recording ``probes`` every ``every`` optimizer
    steps into ``sinks``; its ``.session`` keeps the rows."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        raise UserError("lightning_callback needs lightning: pip install lightning") from None

    session = ProbeSession(probes, sinks, every)

    class LearnmechCallback(pl.Callback):  # type: ignore[misc]
        """Runs learnmech probes inside a Lightning ``Trainer``."""

        def __init__(self) -> None:
            self.session = session

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.session.start(pl_module)

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            scalars = {"loss": loss} if loss is not None else {}
            self.session.record(pl_module, int(trainer.global_step), **scalars)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.session.close(device=str(pl_module.device), config={"lightning": True})

    return LearnmechCallback()
