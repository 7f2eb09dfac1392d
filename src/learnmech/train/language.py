"""Next-token training and held-out loss for sequence models (the small GPT, or any module
that maps tokens (B, T) to logits (B, T, V)).

* :func:`lm_loss` — mean next-token cross-entropy.
* :func:`heldout_loss` — test loss on held-out sequences, scored only at positions with a
  full context of ``order`` tokens (a Markov chain of order k cannot be predicted better
  than uniform before it), with its standard error over *sequences*: positions within a
  sequence are dependent, sequences are not.
* :func:`train_lm` — a plain training loop on batches of sequences that stops at the
  first non-finite loss and evaluates at chosen steps (constant-rate checkpoints, as
  Kaplan et al. 2020 record a loss curve along one run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from learnmech.stats import mean_se
from learnmech.train.loops import StepRun, train_steps

__all__ = ["heldout_loss", "lm_loss", "train_lm"]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (…, V) against integer targets (…)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def heldout_loss(model: nn.Module, test: torch.Tensor, order: int = 1) -> tuple[float, float]:
    """(mean, SE) of the next-token loss on sequences ``test`` (n, T + 1), at positions
    with at least ``order`` tokens of context; the SE is over the n per-sequence means."""
    if order < 1 or order >= test.shape[1]:
        raise ValueError(f"order must be in 1..{test.shape[1] - 1}, got {order}")
    with torch.no_grad():
        z = model(test[:, :-1])[:, order - 1 :]
        per = F.cross_entropy(
            z.reshape(-1, z.shape[-1]), test[:, order:].reshape(-1), reduction="none"
        ).double()
        seq = per.view(test.shape[0], -1).mean(1).cpu().numpy()
    m, se = mean_se(seq)
    return float(m), float(se)


def train_lm(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Callable[[int], torch.Tensor],
    steps: int,
    *,
    evaluate: Callable[[nn.Module], tuple[float, float]] | None = None,
    at: Iterable[int] = (),
    first_step: int = 1,
) -> StepRun:
    """:func:`~learnmech.train.loops.train_steps` on ``batch(step)`` — token sequences
    (B, T + 1), inputs ``[:, :-1]``, targets ``[:, 1:]`` — with :func:`lm_loss`."""

    def pairs(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = batch(step)
        return b[:, :-1], b[:, 1:]

    return train_steps(
        model, optimizer, pairs, lm_loss, steps, evaluate=evaluate, at=at, first_step=first_step
    )
