"""learnmech's probes in the training loops people use, logged where they already look.

One line in a HuggingFace ``Trainer`` or a Lightning ``Trainer``::

    from learnmech.integrations import hf_callback, StoreSink, TensorBoardSink
    from learnmech.train import GradNorm, SharpnessProbe, UpdateRMS

    cb = hf_callback([GradNorm(), UpdateRMS()], sinks=[TensorBoardSink("tb"), StoreSink()])
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

The callbacks read every probe after the optimizer step and *before* the gradients are
zeroed (HF: ``on_optimizer_step``; Lightning: ``on_before_zero_grad`` of the next step or
the end of training), so gradient probes see this step's gradients. Sinks: TensorBoard,
Weights & Biases (offline by default), MLflow (a local file store by default) and the
learnmech DuckDB store (``learnmech runs list`` / ``learnmech report``). Every framework
is imported only when its piece is used; none is a dependency of learnmech.
"""

from __future__ import annotations

from learnmech.integrations.session import ProbeSession
from learnmech.integrations.sinks import MLflowSink, Sink, StoreSink, TensorBoardSink, WandbSink

__all__ = [
    "MLflowSink",
    "ProbeSession",
    "Sink",
    "StoreSink",
    "TensorBoardSink",
    "WandbSink",
    "hf_callback",
    "lightning_callback",
]


def hf_callback(*args, **kwargs):  # type: ignore[no-untyped-def]
    """A ``transformers.TrainerCallback`` running ``probes`` (see :mod:`.hf`)."""
    from learnmech.integrations.hf import hf_callback as make

    return make(*args, **kwargs)


def lightning_callback(*args, **kwargs):  # type: ignore[no-untyped-def]
    """A ``lightning.pytorch.Callback`` running ``probes`` (see :mod:`.lightning`)."""
    from learnmech.integrations.lightning import lightning_callback as make

    return make(*args, **kwargs)
