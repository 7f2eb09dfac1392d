"""Calling the models people train: outputs, batches, train/eval mode, randomness.

HuggingFace models return a ``ModelOutput`` (a dict with ``logits``) rather than a tensor
and take dict batches (``input_ids``, ``attention_mask``, ``pixel_values``); ResNets carry
BatchNorm, whose training mode updates running statistics on every forward pass; GPT-2
has dropout (p = 0.1) in training mode. Every measurement in learnmech calls a model
through these helpers, so that

* the prediction is found in whatever the model returns (:func:`prediction`);
* a batch may be a tensor or a mapping of tensors (:func:`call`, :func:`n_rows`,
  :func:`take`);
* a measurement runs in an explicit mode and leaves the model as it found it: training
  flags and BatchNorm running statistics are restored afterwards (:func:`in_mode`);
* random layers draw the same numbers on every evaluation of one batch
  (:func:`same_randomness`), so an operator built from repeated forward passes (a Hessian,
  a coordinate probe) is one deterministic function of the parameters;
* attention built on ``F.scaled_dot_product_attention`` (HuggingFace's default "sdpa",
  torchvision's and timm's ViTs) is differentiated through PyTorch's math backend where a
  measurement needs second derivatives, forward-mode or ``vmap``
  (:func:`composite_attention`); ``nn.Hardsigmoid`` (MobileNetV3's squeeze-excitation) is
  written in operations that have a second derivative for Hessian products
  (:func:`second_order`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _NormBase

from learnmech.errors import UserError

__all__ = [
    "ModelMode",
    "PrivateStream",
    "batch_coupled",
    "call",
    "call_functional",
    "check_mode",
    "composite_attention",
    "forward",
    "in_mode",
    "n_rows",
    "prediction",
    "random_layers",
    "same_randomness",
    "second_order",
    "take",
    "to_device",
    "with_second_order",
]

R = TypeVar("R")

#: "train" or "eval" sets every module's mode for the measurement; "keep" leaves it as is
ModelMode = Literal["train", "eval", "keep"]

_PREDICTION_KEYS = ("logits", "last_hidden_state", "prediction_logits", "pooler_output")


def prediction(out: Any) -> torch.Tensor:
    """The prediction tensor in a model's output: the tensor itself; for a mapping (a
    HuggingFace ``ModelOutput`` is one) its ``logits`` (else ``last_hidden_state``, …, else
    its only tensor); for a tuple or list its first element."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        for key in _PREDICTION_KEYS:
            v = out.get(key)
            if isinstance(v, torch.Tensor):
                return v
        tensors = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise UserError(
            f"cannot tell which entry of the model's {type(out).__name__} is its prediction "
            f"(entries: {', '.join(map(str, out.keys())) or 'none'}); wrap the model so it "
            "returns one tensor"
        )
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise UserError(
        f"the model returned a {type(out).__name__}, not a tensor or a mapping with logits"
    )


@contextlib.contextmanager
def composite_attention() -> Iterator[None]:
    """Run ``F.scaled_dot_product_attention`` on PyTorch's math backend inside the block.

    The fused CPU and CUDA kernels (flash, memory-efficient) have a first derivative only:
    no double backward (Hessian-vector products), no forward-mode rule (NTK-vector
    products) and no ``vmap`` batching rule (per-example gradients, stacked training,
    where functorch would fall back to a loop). The math backend computes the same
    attention, softmax(QKᵀ/√d + mask)·V, from composite operations that have all three.
    Models with no eager switch need this: torchvision's ``VisionTransformer`` calls
    ``nn.MultiheadAttention``, which calls the fused kernel. On a torch without
    ``torch.nn.attention.sdpa_kernel`` (before 2.3) the block runs unchanged.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def _hardsigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


@contextlib.contextmanager
def second_order(model: nn.Module) -> Iterator[None]:
    """What a Hessian product needs of ``model`` inside the block: attention on the math
    backend (:func:`composite_attention`), and every ``nn.Hardsigmoid`` computed as
    relu6(x + 3)/6 — the same function, min(max(x + 3, 0), 6)/6, from operations with a
    double backward (PyTorch's ``hardsigmoid_backward`` has no derivative; MobileNetV3's
    squeeze-excitation uses it). Its second derivative is zero away from the kinks, as
    hardsigmoid's. The modules get their own ``forward`` back afterwards.
    """
    swapped = [m for m in model.modules() if type(m) is nn.Hardsigmoid]
    for m in swapped:
        m.forward = _hardsigmoid  # type: ignore[method-assign]  # shadows the class's
    try:
        with composite_attention():
            yield
    finally:
        for m in swapped:
            del m.forward


def with_second_order(fn: Callable[..., R]) -> Callable[..., R]:
    """Decorate ``fn(model, ...)`` to run inside :func:`second_order` of its model (the
    central flows differentiate the loss three times)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> R:
        model = kwargs["model"] if "model" in kwargs else (args[0] if args else None)
        if not isinstance(model, nn.Module):  # fn names what is wrong
            return fn(*args, **kwargs)
        with second_order(model):
            return fn(*args, **kwargs)

    return wrapped


def call(model: nn.Module, x: Any) -> Any:
    """``model(**x)`` for a mapping batch (HuggingFace style), ``model(x)`` otherwise."""
    return model(**x) if isinstance(x, Mapping) else model(x)


def call_functional(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: Any,
    *,
    one: bool = False,
) -> Any:
    """``model`` called with the given parameters (``torch.func.functional_call``) on a
    tensor or dict batch; ``one=True``: ``x`` is a single example (inside ``vmap``), run
    as a batch of one."""

    def lift(v: Any) -> Any:
        return v.unsqueeze(0) if one and isinstance(v, torch.Tensor) else v

    if isinstance(x, Mapping):
        return functional_call(model, (params, buffers), (), {k: lift(v) for k, v in x.items()})
    return functional_call(model, (params, buffers), (lift(x),))


def forward(model: nn.Module, x: Any) -> torch.Tensor:
    """The prediction tensor of ``model`` on batch ``x`` (see :func:`prediction`)."""
    return prediction(call(model, x))


def n_rows(x: Any) -> int:
    """Examples in a batch: a tensor's first dimension, or the common first dimension of a
    mapping's tensors."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 0:
            raise UserError("a batch must have a leading example dimension, got a scalar")
        return int(x.shape[0])
    if isinstance(x, Mapping):
        sizes = {int(v.shape[0]) for v in x.values() if isinstance(v, torch.Tensor) and v.ndim}
        if len(sizes) != 1:
            raise UserError(
                f"a dict batch needs tensors with one common first dimension, got {sorted(sizes)}"
            )
        return sizes.pop()
    raise UserError(f"a batch must be a tensor or a dict of tensors, got {type(x).__name__}")


def take(x: Any, idx: slice | torch.Tensor) -> Any:
    """Rows ``idx`` of a tensor or of every tensor in a mapping (other values kept)."""
    if isinstance(x, Mapping):
        return {k: (v[idx] if isinstance(v, torch.Tensor) and v.ndim else v) for k, v in x.items()}
    return x[idx]


def to_device(x: Any, device: Any) -> Any:
    """A tensor or every tensor of a mapping batch on ``device`` (``None``: unchanged)."""
    if not device:
        return x
    if isinstance(x, Mapping):
        return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in x.items()}
    return x.to(device) if isinstance(x, torch.Tensor) else x


def batch_coupled(model: nn.Module) -> list[str]:
    """Modules that couple the examples of a batch: BatchNorm layers in training mode."""
    return [n or type(m).__name__ for n, m in model.named_modules() if _is_bn_training(m)]


def random_layers(model: nn.Module) -> list[str]:
    """Modules that draw random numbers in their current mode: dropout with p > 0, and
    stochastic depth — timm's ``DropPath``/``DropBlock2d`` (``drop_prob``), torchvision's
    ``StochasticDepth`` (``p``), HuggingFace's ``*DropPath`` — when their rate is > 0."""
    return [n or type(m).__name__ for n, m in model.named_modules() if _draws(m)]


def _draws(m: nn.Module) -> bool:
    if not m.training:
        return False
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return float(getattr(m, "p", 0.0)) > 0
    name = type(m).__name__
    if "Drop" in name or "StochasticDepth" in name:
        for attr in ("p", "drop_prob", "drop_rate"):
            v = getattr(m, attr, None)
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                return True
    return False


def _cuda_devices(model: nn.Module) -> list[int]:
    """The CUDA device indices holding the model's parameters (their random states)."""
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


class PrivateStream:
    """Random numbers for a measurement from its own continuation of the global stream.

    Each ``with stream():`` block draws from where the previous block of this stream left
    off (the first starts from the global state), and leaves the global state — CPU and
    the model's CUDA devices — as it found it. A measurement inside a training run (the
    per-example gradients of a noise-scale probe, with independent dropout masks) then
    does not move the run's own random stream: the run ends bitwise where it ends without
    the probe. A no-op when the model has no random layers in its current mode.
    """

    def __init__(self, model: nn.Module) -> None:
        self.active = bool(random_layers(model))
        self.devices = _cuda_devices(model)
        self._state: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if not self.active:
            yield
            return
        with torch.random.fork_rng(devices=self.devices):
            if self._state is not None:
                torch.random.set_rng_state(self._state[0])
                for d, st in zip(self.devices, self._state[1], strict=True):
                    torch.cuda.set_rng_state(st, d)
            yield
            cuda = [torch.cuda.get_rng_state(d) for d in self.devices]
            self._state = (torch.random.get_rng_state(), cuda)


def _is_bn_training(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training


def check_mode(mode: Any) -> ModelMode:
    if mode not in ("train", "eval", "keep"):
        raise UserError(f"model_mode must be 'train', 'eval' or 'keep', got {mode!r}")
    return mode  # type: ignore[no-any-return]


@contextlib.contextmanager
def in_mode(model: nn.Module, mode: ModelMode = "keep") -> Iterator[nn.Module]:
    """Run a measurement with ``model`` in ``mode``; afterwards every module's training
    flag and every norm layer's running statistics are what they were before, so a
    measurement never changes the model it measures (a training-mode BatchNorm would
    otherwise update its running mean on every forward pass)."""
    check_mode(mode)
    flags = [(m, m.training) for m in model.modules()]
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    for m in model.modules():
        if isinstance(m, _NormBase) and m.track_running_stats:
            for b in (m.running_mean, m.running_var, m.num_batches_tracked):
                if isinstance(b, torch.Tensor):
                    saved.append((b, b.detach().clone()))
    if mode == "train":
        model.train()
    elif mode == "eval":
        model.eval()
    try:
        yield model
    finally:
        for m, f in flags:
            m.training = f
        # through .data: a training-mode batch norm hands its running statistics to
        # autograd, and its backward (which uses the batch statistics, not these) would
        # refuse to run after an in-place write to the tensors themselves
        for b, v in saved:
            b.data.copy_(v)


@contextlib.contextmanager
def same_randomness(model: nn.Module, seed: int) -> Iterator[None]:
    """Draw the random numbers of the enclosed forward passes from a generator state fixed
    by ``seed`` (CPU and the model's CUDA devices), restoring the global state afterwards:
    dropout then applies the same masks on every evaluation, so the function being
    differentiated does not change between calls. A no-op when nothing is random."""
    if not random_layers(model):
        yield
        return
    devices = _cuda_devices(model)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
