"""What a user hands the planner: a model family, data, a loss, an optimizer, proxy sizes.

A spec is returned by a function of the user's own code, referenced as ``module:function``
(``learnmech plan mypkg.train:spec``), so every worker process can rebuild it::

    def spec() -> PlanSpec:
        return PlanSpec(
            model=lambda width: MyNet(width),   # SP init; random weights
            data=(X_train, y_train),            # or data(step, seed) -> (x, y)
            eval_data=(X_test, y_test),
            widths=[32, 64, 128],               # proxies: the first is μP's base shape
            lrs=[2.0**k for k in range(-12, -4)],
            steps=300, batch_size=32,
        )
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learnmech.errors import UserError
from learnmech.hparams.parametrize import OPTIMIZERS
from learnmech.measure.model_io import n_rows, prediction, take, to_device

__all__ = ["PlanSpec", "default_loss", "load_spec"]

SCHEMES = ("mup", "sp")  # the planner's: μP, or SP as the control


def default_loss(out: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the last dimension for integer targets (any leading shape, e.g.
    next-token prediction), mean squared error otherwise. ``out`` may be a tensor or a
    HuggingFace ``ModelOutput``."""
    z = prediction(out)
    if not torch.is_floating_point(y):
        return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1))
    return F.mse_loss(z.reshape(y.shape), y)


@dataclass
class PlanSpec:
    """A model family and its training setup, at the proxy scale.

    Attributes:
        model: ``model(width) -> nn.Module`` in standard parameterization with random
            weights (the planner seeds torch's global RNG before each call).
        data: ``(x, y)`` tensors to draw minibatches from (seeded, with replacement), or
            ``data(step, seed) -> (x, y)`` giving ``batch_size`` examples.
        eval_data: the held-out ``(x, y)`` every loss is measured on.
        widths: proxy widths (≥ 3, increasing); the first is μP's base width unless
            ``base_width`` says otherwise.
        lrs: the learning-rate grid (≥ 5, positive; log-spaced is best).
        steps: optimizer steps of each proxy run.
        batch_size: examples per step at which the rates are tuned.
        loss: ``loss(output, y)``; default :func:`default_loss`.
        tokens_per_example: tokens one example carries (sequence length for a language
            model; 1 otherwise): the planner counts data D in tokens.
        seeds: seeds per proxy setting (≥ 2: intervals come from their spread).
        optimizer: "adam", "adamw" or "sgd" (the family whose μP rules apply).
        scheme: "mup" (default) or "sp" (a control: no μP, the rates do not transfer).
        checkpoints: evaluations along each proxy run (log-spaced steps), the data axis of
            the loss law.
        width_step: widths the target may take are multiples of this (e.g. head count).
        init: "sp" (default: weights initialised with std ∝ 1/√fan_in, PyTorch's default)
            or "fixed" (one std at every width, as HuggingFace's ``initializer_range`` and
            timm's ``trunc_normal_(std=.02)``): passed to
            :func:`~learnmech.hparams.parametrize`, which brings such weights to SP first.
        base_width: μP's base width, at most the first proxy width (default: that
            width). μP's finite-width corrections shrink with width/base, so a base below
            the proxies puts them nearer the limit the rates transfer in: on timm's ViT the
            coord check fails at proxies 64–256 with base 64 (fc2's updates fall as
            width^−0.42 after one step) and passes with base 16.
        roles: parameter roles for :func:`~learnmech.hparams.parametrize` where it cannot
            tell them from the widths, e.g. timm's ViT:
            ``{"cls_token": "input", "pos_embed": "input"}``.
        vectorize: train all rates and seeds of one proxy width as one stacked ensemble
            (:func:`~learnmech.train.stacked.train_steps_stacked`) where the model and
            optimizer allow it and it pays
            (:func:`~learnmech.train.stacked.stacking_pays`), else one run at a time.
    """

    model: Callable[[int], nn.Module]
    data: Any
    eval_data: Any
    widths: Sequence[int]
    lrs: Sequence[float]
    steps: int
    batch_size: int
    loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None
    tokens_per_example: int = 1
    seeds: int = 3
    optimizer: str = "adam"
    scheme: str = "mup"
    checkpoints: int = 6
    width_step: int = 1
    init: str = "sp"
    roles: dict[str, str] | None = None
    base_width: int | None = None
    vectorize: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    # -- validation ----------------------------------------------------------------------
    def check(self) -> PlanSpec:
        """Raise :class:`UserError` naming the first bad field; returns self."""

        def count(name: str, v: Any, lo: int) -> None:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise UserError(f"plan spec: {name} must be an integer ≥ {lo}, got {v!r}")

        if not callable(self.model):
            raise UserError("plan spec: model must be a callable width -> nn.Module")
        ws = list(self.widths)
        for w in ws:
            count("every width", w, 1)
        if len(ws) < 3 or ws != sorted(set(ws)):
            raise UserError(f"plan spec: widths must be ≥ 3 distinct increasing values, got {ws}")
        lrs = list(self.lrs)
        ok = all(isinstance(x, int | float) and math.isfinite(x) and x > 0 for x in lrs)
        if len(lrs) < 5 or not ok or lrs != sorted(set(lrs)):
            raise UserError(
                f"plan spec: lrs must be ≥ 5 distinct increasing positive finite rates, got {lrs}"
            )
        count("steps", self.steps, 1)
        count("batch_size", self.batch_size, 1)
        count("tokens_per_example", self.tokens_per_example, 1)
        count("seeds", self.seeds, 2)
        count("checkpoints", self.checkpoints, 2)
        count("width_step", self.width_step, 1)
        if self.base_width is not None:
            count("base_width", self.base_width, 1)
            if self.base_width > ws[0]:
                raise UserError(
                    f"plan spec: base_width must be at most the first proxy width {ws[0]}, "
                    f"got {self.base_width}"
                )
        if not isinstance(self.vectorize, bool):
            raise UserError(f"plan spec: vectorize must be True or False, got {self.vectorize!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"plan spec: optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
            )
        if self.init not in ("sp", "fixed"):
            raise UserError(f"plan spec: init must be 'sp' or 'fixed', got {self.init!r}")
        if self.roles is not None and not (
            isinstance(self.roles, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.roles.items())
        ):
            raise UserError(
                f"plan spec: roles must map parameter names to role names, got {self.roles!r}"
            )
        if self.scheme not in SCHEMES:
            raise UserError(f"plan spec: scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if not callable(self.data):
            x, y = _pair(self.data, "data")
            if n_rows(x) < 1 or n_rows(x) != n_rows(y):
                raise UserError("plan spec: data x and y must have the same, non-zero length")
        x, y = _pair(self.eval_data, "eval_data")
        if n_rows(x) < 1 or n_rows(x) != n_rows(y):
            raise UserError("plan spec: eval_data x and y must have the same, non-zero length")
        return self

    # -- use -----------------------------------------------------------------------------
    @property
    def loss_fn(self) -> Callable[[Any, torch.Tensor], torch.Tensor]:
        return self.loss or default_loss

    def batch(self, step: int, seed: int, device: Any = "cpu") -> tuple[Any, torch.Tensor]:
        """The training minibatch of one step of the run with this seed."""
        if callable(self.data):
            x, y = self.data(step, seed)
        else:
            x, y = self.data
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
            idx = torch.randint(0, n_rows(x), (self.batch_size,), generator=gen)
            x, y = take(x, idx), y[idx]
        return to_device(x, device), y.to(device)

    def checkpoint_steps(self) -> list[int]:
        """``checkpoints`` log-spaced steps from steps/16 to ``steps``, at which proxy runs
        are evaluated: the data axis of the loss law. The first sixteenth of a run is left
        out: there the loss still sits near its initial plateau, which no power law in D
        describes (fixed before any run, whatever the data)."""
        first = max(1, self.steps // 16)
        k = min(self.checkpoints, self.steps - first + 1)
        grid = np.geomspace(first, self.steps, k)
        return sorted({round(float(v)) for v in grid})

    def settings(self) -> dict[str, Any]:
        """The JSON-able part of the spec (what a trial's result depends on besides code)."""
        return {
            "widths": list(self.widths),
            "lrs": [float(x) for x in self.lrs],
            "steps": self.steps,
            "batch_size": self.batch_size,
            "tokens_per_example": self.tokens_per_example,
            "seeds": self.seeds,
            "optimizer": self.optimizer,
            "scheme": self.scheme,
            "checkpoints": self.checkpoints,
            "width_step": self.width_step,
            "init": self.init,
            **({"roles": dict(sorted(self.roles.items()))} if self.roles else {}),
            **({"base_width": self.base_width} if self.base_width is not None else {}),
            "vectorize": self.vectorize,
            "extra": self.extra,
        }


def _pair(v: Any, name: str) -> tuple[Any, torch.Tensor]:
    if not (isinstance(v, tuple | list) and len(v) == 2 and isinstance(v[1], torch.Tensor)):
        raise UserError(f"plan spec: {name} must be an (x, y) pair of tensors")
    return v[0], v[1]


_CACHE: dict[str, tuple[PlanSpec, str]] = {}


def load_spec(ref: str) -> tuple[PlanSpec, str]:
    """Import ``module:function``, call it and check the spec; returns (spec, its hash: the
    settings and the module's source, so a changed spec or code never reuses trials)."""
    if ref in _CACHE:
        return _CACHE[ref]
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise UserError(f"a plan spec is referenced as module:function, got {ref!r}")
    mod_name, fn_name = ref.split(":")
    if os.getcwd() not in sys.path:  # as ``python -m`` would: the user's project is importable
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except Exception as err:
        raise UserError(f"cannot import {mod_name!r} for the plan spec: {err}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UserError(f"{mod_name!r} has no function {fn_name!r} returning a PlanSpec")
    spec = fn()
    if not isinstance(spec, PlanSpec):
        raise UserError(f"{ref} returned {type(spec).__name__}, not a learnmech.plan.PlanSpec")
    spec.check()
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        source = ""
    digest = hashlib.sha256(
        (json.dumps(spec.settings(), sort_keys=True, default=str) + source).encode()
    ).hexdigest()[:16]
    _CACHE[ref] = (spec, digest)
    return spec, digest
