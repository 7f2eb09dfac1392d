"""A HuggingFace ``Trainer`` callback that runs learnmech probes.

The ``Trainer`` zeroes the gradients right after the optimizer step, before
``on_step_end``; this callback reads the probes in ``on_optimizer_step`` (after the step,
gradients still there), so :class:`~learnmech.train.GradNorm` sees this step's gradients
and :class:`~learnmech.train.UpdateRMS` this step's update. The step number is the
``Trainer``'s ``global_step`` after the update (the first optimizer step is step 1; with
gradient accumulation one step is one optimizer step).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from learnmech.errors import UserError
from learnmech.integrations.session import ProbeSession
from learnmech.integrations.sinks import Sink
from learnmech.measure.probe import Probe

__all__ = ["hf_callback"]


def hf_callback(probes: Iterable[Probe], sinks: Sequence[Sink] = (), every: int = 1) -> Any:
    """A ``transformers.TrainerCallback`` recording ``probes`` every ``every`` optimizer
    steps into ``sinks``; its ``.session`` keeps the rows (``.session.rows()``)."""
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise UserError("hf_callback needs transformers: pip install transformers") from None

    session = ProbeSession(probes, sinks, every)

    class LearnmechCallback(TrainerCallback):  # type: ignore[misc]
        """Runs learnmech probes inside a HuggingFace ``Trainer``."""

        def __init__(self) -> None:
            self.session = session

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if kw.get("model") is not None:
                self.session.start(_unwrap(kw["model"]))

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            model = kw.get("model")
            if model is None:
                raise UserError("the Trainer passed no model to the callback")
            self.session.record(_unwrap(model), int(state.global_step) + 1)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            model = kw.get("model")
            device = str(next(model.parameters()).device) if model is not None else "cpu"
            self.session.close(device=device, config=_args_config(args))

    return LearnmechCallback()


def _unwrap(model: Any) -> Any:
    """The module itself under DataParallel/DistributedDataParallel wrappers."""
    return getattr(model, "module", model)


def _args_config(args: Any) -> dict[str, Any]:
    keep = ("learning_rate", "per_device_train_batch_size", "weight_decay", "max_steps", "seed")
    return {f"hf_{k}": getattr(args, k) for k in keep if hasattr(args, k)}
