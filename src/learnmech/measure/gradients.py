"""Gradient noise: per-example gradients and the noise scales that set the critical batch.

McCandlish, Kaplan, Amodei & OpenAI Dota Team 2018 ("An empirical model of large-batch
training"): with G the full-batch gradient and Σ the per-example gradient covariance,

* B_simple = tr(Σ)/|G|² (their eq. 2.9) — the noise scale if the Hessian were ∝ I;
* B_noise = tr(HΣ)/(GᵀHG) (eq. 2.8) — the batch size at which an SGD step with the
  optimal learning rate makes half the progress of a full-batch step, and the predicted
  critical batch size B_crit = E_min/S_min of the steps–examples trade-off
  (S/S_min − 1)(E/E_min − 1) = 1 (eq. 2.11).

Estimators here:

* :func:`per_example_gradients` — vectorised (``torch.func.vmap`` over ``grad``), (n, P).
* :func:`noise_scale` — B_simple from per-example gradients with the unbiased pieces:
  tr Σ̂ = n/(n − 1)·mean‖gᵢ − Ḡ‖², |G|² ≈ ‖Ḡ‖² − tr Σ̂/n (E‖Ḡ‖² = |G|² + tr Σ/n), and
  optionally B_noise with Hessian-vector products on a subsample of the deviations.
  One pass over chunks of per-example gradients (at most ~2²⁵ entries at once), the
  chunks' means and squared deviations combined exactly (Chan, Golub & LeVeque 1983).
* :func:`two_batch_noise_scale` — the cheaper estimator of App. A.1 from squared gradient
  norms at two batch sizes: |G|² ≈ (B_big|G_big|² − B_small|G_small|²)/(B_big − B_small),
  tr Σ ≈ (|G_small|² − |G_big|²)/(1/B_small − 1/B_big).
* :class:`GradientNoiseProbe` — B_simple every k steps in a :class:`Recorder`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap

from learnmech.errors import UserError
from learnmech.measure.hessian import LossHessian
from learnmech.measure.model_io import (
    ModelMode,
    PrivateStream,
    batch_coupled,
    call_functional,
    check_mode,
    composite_attention,
    in_mode,
    n_rows,
    prediction,
    take,
)
from learnmech.measure.probe import Probe

__all__ = [
    "GradientNoiseProbe",
    "NoiseScale",
    "noise_scale",
    "per_example_gradients",
    "two_batch_noise_scale",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def per_example_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    x: Any,
    y: torch.Tensor,
    chunk: int = 256,
    *,
    model_mode: ModelMode = "keep",
) -> torch.Tensor:
    """Gradients of ``loss_fn(model(xᵢ), yᵢ)`` for every example, flattened: (n, P) in the
    parameters' dtype. ``loss_fn`` gets batches of one (as ``model(x[i:i+1])``) and must
    return the mean loss, so the rows average to the full-batch gradient.

    ``x`` may be a tensor or a dict of tensors (``model(**x)``); ``loss_fn`` receives the
    prediction tensor (a ``ModelOutput``'s logits). ``model_mode``: ``"keep"`` (default),
    ``"train"`` or ``"eval"``; the model's flags and running statistics are restored.
    Dropout in training mode draws an independent mask for every example, as in a
    minibatch. BatchNorm in training mode couples the examples of a batch, so no
    per-example gradient exists: that raises, naming the layers (``model_mode="eval"``
    normalises with the running statistics instead)."""
    return torch.cat(list(_gradient_chunks(model, loss_fn, x, y, chunk, model_mode)))


def _gradient_chunks(
    model: nn.Module, loss_fn: LossFn, x: Any, y: torch.Tensor, chunk: int, model_mode: ModelMode
) -> Iterator[torch.Tensor]:
    """:func:`per_example_gradients` ``chunk`` rows at a time, (c, P) each, in order."""
    n = n_rows(x)
    if n != y.shape[0] or n == 0:
        raise UserError(f"x and y need the same positive number of rows: {n} vs {y.shape[0]}")
    check_mode(model_mode)
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}

    def one(p: dict[str, torch.Tensor], xi: Any, yi: torch.Tensor) -> torch.Tensor:
        return loss_fn(
            prediction(call_functional(model, p, buffers, xi, one=True)), yi.unsqueeze(0)
        )

    with in_mode(model, model_mode):
        coupled = batch_coupled(model)
        if coupled:
            raise UserError(
                "per-example gradients do not exist while BatchNorm normalises with batch "
                f"statistics (training mode: {', '.join(coupled[:3])}"
                f"{', …' if len(coupled) > 3 else ''}); pass model_mode='eval' to use the "
                "running statistics"
            )
        buffers = dict(model.named_buffers())
        g = vmap(grad(one), in_dims=(None, 0, 0), randomness="different")
        # dropout's masks come from a private continuation of the global stream, so a
        # probe inside a training run leaves the run's random numbers alone
        stream = PrivateStream(model)
        for i in range(0, n, chunk):
            # the fused attention kernels have no vmap batching rule
            with composite_attention(), stream():
                gi = g(params, take(x, slice(i, i + chunk)), y[i : i + chunk])
            yield torch.cat([gi[k].reshape(gi[k].shape[0], -1) for k in names], 1)


#: per-example gradient entries held at once by :func:`noise_scale` (float64: 256 MB)
_NOISE_CHUNK_ENTRIES = 1 << 25


@dataclass(frozen=True)
class NoiseScale:
    b_simple: float
    trace_sigma: float
    grad_sq: float  # unbiased |G|²
    b_noise: float | None = None
    b_noise_se: float | None = None
    n: int = 0


def noise_scale(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    hessian_samples: int = 0,
    seed: int = 0,
    population: bool = False,
    model_mode: ModelMode = "keep",
) -> NoiseScale:
    """B_simple (and, with ``hessian_samples`` > 0, B_noise) of the mean loss on (x, y).

    B_noise needs tr(HΣ) = E(gᵢ − G)ᵀH(gᵢ − G): estimated on ``hessian_samples`` random
    deviations (one Hessian-vector product each, with its standard error), over GᵀHG.

    ``population=True``: (x, y) is the whole population the batches are drawn from (e.g.
    the training set that SGD samples), so G is Ḡ exactly and Σ is the plug-in covariance
    — no small-sample corrections. Default: (x, y) is a sample of a larger distribution.

    ``model_mode`` as in :func:`per_example_gradients` (the Hessian products use the same
    mode, with fixed dropout masks).

    Memory: the per-example gradients are made and reduced in chunks of at most ~2²⁵
    entries (256 MB in float64), never all n × P at once. B_noise's Hessian products
    (``hessian_samples`` > 0) still hold the loss graph of all n examples.

    The unbiased |G|² estimate can be ≤ 0 when the gradient is small against its noise
    (e.g. at initialisation with few examples); B_simple is then ``inf`` and a
    ``RuntimeWarning`` says so."""
    n = n_rows(x)
    if n < 2:
        raise UserError("need at least two examples for a gradient covariance")
    # one pass over chunks of per-example gradients, never all n × P at once: each chunk's
    # mean and sum of squared deviations, combined exactly (Chan, Golub & LeVeque 1983)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, n, (hessian_samples,), generator=gen).tolist()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    chunk = max(1, min(256, _NOISE_CHUNK_ENTRIES // max(n_params, 1)))
    count, mean, m2 = 0, torch.zeros(()), 0.0
    kept: dict[int, torch.Tensor] = {}
    for gi in _gradient_chunks(model, loss_fn, x, y, chunk, model_mode):
        gi = gi.to(torch.float64)
        c = gi.shape[0]
        kept |= {i: gi[i - count].clone() for i in set(pick) if count <= i < count + c}
        mi = gi.mean(0)
        flat = gi.sub_(mi).view(-1)  # in place: memory traffic, not FLOPs, is the cost
        m2i = float(flat @ flat)
        if count == 0:
            mean, m2 = mi, m2i
        else:
            delta = mi - mean
            mean = mean + delta * (c / (count + c))
            m2 += m2i + float(delta @ delta) * count * c / (count + c)
        count += c
    corr = 1.0 if population else n / (n - 1)
    tr = m2 / n * corr
    g2 = float(mean @ mean) - (0.0 if population else tr / n)
    b_simple = tr / g2 if g2 > 0 else math.inf
    if g2 <= 0:
        warnings.warn(
            f"noise_scale: the unbiased |G|² estimate is {g2:.3g} ≤ 0 on {n} examples (the "
            "mean gradient is below its own noise): B_simple is reported as inf; use more "
            "examples or population=True if (x, y) is the whole training set",
            RuntimeWarning,
            stacklevel=2,
        )
    if not hessian_samples:
        return NoiseScale(b_simple, tr, g2, n=n)
    H = LossHessian(model, loss_fn, (x, y), cache_graph=True, model_mode=model_mode)
    dev = {i: kept[i] - mean for i in kept}
    q = np.array([float(dev[i] @ H.matvec(dev[i])) for i in pick]) * corr
    ghg = float(mean @ H.matvec(mean))
    trh = float(q.mean())
    se = float(q.std(ddof=1) / math.sqrt(q.size)) if q.size > 1 else math.nan
    if ghg <= 0:
        return NoiseScale(b_simple, tr, g2, math.inf, math.nan, n)
    return NoiseScale(b_simple, tr, g2, trh / ghg, se / ghg, n)


def two_batch_noise_scale(
    g_small_sq: float, b_small: int, g_big_sq: float, b_big: int
) -> tuple[float, float, float]:
    """McCandlish et al. App. A.1: (B_simple, tr Σ, |G|²) from the squared norms of
    gradients averaged over batches of two sizes (average each over several batches)."""
    if not (0 < b_small < b_big):
        raise UserError(f"need 0 < b_small < b_big, got {b_small}, {b_big}")
    g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
    tr = (g_small_sq - g_big_sq) / (1 / b_small - 1 / b_big)
    return (tr / g2 if g2 > 0 else math.inf), tr, g2


class GradientNoiseProbe(Probe):
    """Record ``b_simple``, ``grad_sq`` and ``trace_sigma`` on fixed (x, y) every k steps
    (``model_mode`` as in :func:`per_example_gradients`)."""

    def __init__(
        self,
        loss_fn: LossFn,
        x: Any,
        y: torch.Tensor,
        every: int = 10,
        *,
        model_mode: ModelMode = "keep",
    ):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"every must be a positive integer, got {every!r}")
        self.loss_fn, self.x, self.y, self.every = loss_fn, x, y, every
        self.model_mode = check_mode(model_mode)

    def read(self, model: nn.Module, step: int) -> dict[str, float]:
        with torch.enable_grad():
            ns = noise_scale(model, self.loss_fn, self.x, self.y, model_mode=self.model_mode)
        return {"b_simple": ns.b_simple, "grad_sq": ns.grad_sq, "trace_sigma": ns.trace_sigma}
