"""Probes for any training loop, the user's own included.

    rec = Recorder(model, probes=[WeightRMS(), UpdateRMS(), ActivationRMS(), GradNorm()])
    for step in range(steps):
        loss = loss_fn(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        rec.step(step, loss=loss)          # scalars you pass are recorded as-is
    rec.close()                            # removes every hook it registered
    rows = rec.rows()                      # tidy: step, observable, value

Records are tidy rows (one per step × observable), ready for the store
(:meth:`learnmech.lab.store.Store.add_records`) or pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from learnmech.measure.probe import Probe

__all__ = [
    "ActivationRMS",
    "GradNorm",
    "KernelChange",
    "Probe",
    "Recorder",
    "UpdateRMS",
    "WeightRMS",
]


@dataclass(frozen=True)
class Row:
    step: int
    observable: str
    value: float


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().to(torch.float64).pow(2).mean().sqrt())


def _norms(ts: list[torch.Tensor]) -> list[float]:
    """L2 norms of many tensors with one fused kernel per device and one host copy: the
    per-step cost of a probe that reads every parameter (issue #15's ≤ 5% budget)."""
    if not ts:
        return []
    norms = torch._foreach_norm(ts)
    return torch.stack([n.to(torch.float64).cpu() for n in norms]).tolist()


class WeightRMS(Probe):
    """RMS of every parameter tensor: ``weight_rms/<name>``."""

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        named = [(n, p.detach()) for n, p in model.named_parameters()]
        norms = _norms([p for _, p in named])
        return {
            f"weight_rms/{n}": v / math.sqrt(max(p.numel(), 1))
            for (n, p), v in zip(named, norms, strict=True)
        }


class UpdateRMS(Probe):
    """RMS of the change of every parameter since the previous recorded step."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._prev: list[torch.Tensor] = []

    def attach(self, model: nn.Module) -> None:
        named = list(model.named_parameters())
        self._names = [n for n, _ in named]
        self._prev = [p.detach().clone() for _, p in named]

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        cur = [p.detach() for p in model.parameters()]
        torch._foreach_sub_(self._prev, cur)  # prev − now = −update, in place
        norms = _norms(self._prev)
        torch._foreach_copy_(self._prev, cur)
        return {
            f"update_rms/{n}": v / math.sqrt(max(p.numel(), 1))
            for n, p, v in zip(self._names, cur, norms, strict=True)
        }


class GradNorm(Probe):
    """Global L2 norm of the gradients currently in ``.grad`` (call after backward; in a
    HuggingFace or Lightning ``Trainer`` use :mod:`learnmech.integrations`, which reads it
    before the trainer zeroes the gradients)."""

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
        if not grads:
            return {}
        return {"grad_norm": math.sqrt(sum(v * v for v in _norms(grads)))}


class ActivationRMS(Probe):
    """RMS of each module's output in the most recent forward pass (forward hooks).

    Arguments:
        modules: names of submodules to watch (default: every leaf module).
    """

    def __init__(self, modules: Sequence[str] | None = None) -> None:
        self.modules = modules
        self._latest: dict[str, float] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._paused = False

    def pause(self, paused: bool) -> None:
        self._paused = paused

    def attach(self, model: nn.Module) -> None:
        named = dict(model.named_modules())
        names = self.modules
        if names is None:
            names = [n for n, m in named.items() if n and not list(m.children())]
        missing = [n for n in names if n not in named]
        if missing:
            raise ValueError(
                f"ActivationRMS: no submodule named {missing} in {type(model).__name__}"
            )
        for name in names:

            def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                if not self._paused and isinstance(out, torch.Tensor):
                    self._latest[name] = _rms(out)

            self._handles.append(named[name].register_forward_hook(hook))

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        return {f"activation_rms/{n}": v for n, v in self._latest.items()}

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class KernelChange(Probe):
    """Relative change of the empirical NTK on a probe batch, ‖K_t − K_0‖_F / ‖K_0‖_F.

    Lazy (NTK-regime) training keeps it O(width^{-1/2}) under NTK parameterization
    (Jacot et al. 2018; Lee et al. 2019, Theorem 2.1).
    """

    def __init__(self, x: torch.Tensor, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.x = x
        self.every = every
        self._k0: torch.Tensor | None = None

    def _kernel(self, model: nn.Module) -> torch.Tensor:
        from learnmech.measure.ntk import empirical_ntk

        return empirical_ntk(model, self.x, mode="trace")

    def attach(self, model: nn.Module) -> None:
        self._k0 = self._kernel(model)

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        assert self._k0 is not None
        k = self._kernel(model)
        return {
            "kernel_change": float(torch.linalg.norm(k - self._k0) / torch.linalg.norm(self._k0))
        }


class Recorder:
    """Attach probes to a model and record them at each ``step`` call.

    Usable as a context manager (hooks are removed on exit).
    """

    def __init__(self, model: nn.Module, probes: Iterable[Probe] = (), every: int = 1) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.model = model
        self.probes = list(probes)
        self.every = every
        self._rows: list[Row] = []
        self._closed = False
        for p in self.probes:
            if not isinstance(p, Probe):
                raise TypeError(f"probes must be Probe instances, got {type(p).__name__}")
        self._pause(True)
        try:
            for p in self.probes:
                p.attach(model)
        finally:
            self._pause(False)

    def _pause(self, paused: bool) -> None:
        for p in self.probes:
            p.pause(paused)

    def step(self, step: int, **scalars: float | torch.Tensor) -> None:
        """Record the given scalars and, every ``every`` steps, each probe."""
        if self._closed:
            raise RuntimeError("Recorder is closed")
        for name, value in scalars.items():
            v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            self._rows.append(Row(int(step), name, v))
        if step % self.every:
            return
        readings: list[Row] = []
        with torch.no_grad():
            for p in self.probes:
                if step % p.every == 0:
                    for name, v in p.read(self.model, step).items():
                        readings.append(Row(int(step), name, v))
                    self._pause(True)  # later probes' forward passes are not activations
        self._pause(False)
        self._rows.extend(readings)

    def rows(self) -> list[dict[str, Any]]:
        """Tidy records: ``{"step", "observable", "value"}`` per row."""
        return [{"step": r.step, "observable": r.observable, "value": r.value} for r in self._rows]

    def series(self, observable: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one observable."""
        pts = [(r.step, r.value) for r in self._rows if r.observable == observable]
        return [s for s, _ in pts], [v for _, v in pts]

    def close(self) -> None:
        for p in self.probes:
            p.detach()
        self._closed = True

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
