"""Sweeps: a grid of config points × seeds → trials with deterministic keys."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Trial", "expand", "run_key", "trial_key"]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def trial_key(study: str, point: dict[str, Any], seed: int) -> str:
    """Hash of study, the trial's full config and its seed: equal work, equal key."""
    return hashlib.sha256(
        _canonical({"study": study, "config": point, "seed": seed}).encode()
    ).hexdigest()[:20]


def run_key(study: str, config: dict[str, Any]) -> str:
    """A run is identified by its study and resolved config (seeds included)."""
    digest = hashlib.sha256(_canonical({"study": study, "config": config}).encode()).hexdigest()
    return f"{study}-{digest[:10]}"


@dataclass(frozen=True)
class Trial:
    key: str
    point: dict[str, Any]
    seed: int


def expand(study: str, points: list[dict[str, Any]], seeds: list[int]) -> list[Trial]:
    """Every (point, seed) pair as a :class:`Trial`, points outermost."""
    return [Trial(trial_key(study, p, s), p, s) for p in points for s in seeds]
