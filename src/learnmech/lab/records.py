"""The records every study produces: curves of observables and scored metrics.

Predictions (``source="theory"``) and measurements (``source="experiment"``) are the same
kind of record, so one comparison path and one plotting path serve every study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Curve", "Metric", "TrialResult", "failures_metric", "verdict_of"]


@dataclass
class Curve:
    """One observable against one coordinate (step, width, n, lr …).

    ``series`` distinguishes several curves of the same observable within one trial
    (e.g. one per test point); empty when there is one.
    """

    observable: str
    coord_name: str
    coords: np.ndarray
    values: np.ndarray
    series: str = ""

    def __post_init__(self) -> None:
        self.coords = np.asarray(self.coords, dtype=np.float64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if self.coords.shape != self.values.shape:
            raise ValueError(
                f"curve {self.observable!r}: {self.coords.size} coordinates but "
                f"{self.values.size} values"
            )

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.values)))


Comparator = Literal["<=", ">=", "<", ">"]


@dataclass
class Metric:
    """An agreement metric with its declared tolerance.

    ``passed`` is ``value <comparator> tolerance``; a metric with no tolerance is reported
    but does not enter the verdict.
    """

    name: str
    value: float
    tolerance: float | None = None
    comparator: Comparator = "<="
    stderr: float | None = None
    description: str = ""
    passed: bool | None = field(default=None)

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if self.passed is None and self.tolerance is not None:
            v, t = self.value, float(self.tolerance)
            if not math.isfinite(v):
                self.passed = False
            else:
                self.passed = {
                    "<=": v <= t,
                    ">=": v >= t,
                    "<": v < t,
                    ">": v > t,
                }[self.comparator]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "stderr": self.stderr,
            "tolerance": self.tolerance,
            "comparator": self.comparator,
            "passed": self.passed,
            "description": self.description,
        }


@dataclass
class TrialResult:
    """One (config point, seed) trial as stored."""

    key: str
    point: dict[str, Any]
    seed: int
    status: str  # "ok" | "diverged" | "error"
    error: str | None
    duration: float
    curves: list[Curve]

    def curve(self, observable: str, series: str = "") -> Curve | None:
        for c in self.curves:
            if c.observable == observable and c.series == series:
                return c
        return None


def verdict_of(metrics: list[Metric]) -> str:
    """``pass`` if every scored metric passed, ``fail`` if any failed, ``n/a`` if none scored."""
    scored = [m for m in metrics if m.passed is not None]
    if not scored:
        return "n/a"
    return "pass" if all(m.passed for m in scored) else "fail"


def failures_metric(trials: list[TrialResult], extra: int = 0) -> Metric:
    """The metric every study reports: trials that raised or diverged (must be 0).

    ``extra`` adds trials a study counts as failed for its own reasons (e.g. missing curves).
    """
    n_bad = sum(t.status != "ok" for t in trials) + extra
    return Metric(
        "failed_or_diverged_trials",
        n_bad,
        0,
        "<=",
        description="trials that raised or produced NaN/inf",
    )
