"""The records vocabulary every study produces: curves, scored claims, trials, figures.

Predictions (``source="theory"``) and measurements (``source="experiment"``) are the same
kind of record, so one comparison path and one plotting path serve every study. This
module imports nothing of learnmech, so ``theory``, ``measure`` and ``report`` can all use
it without cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "Curve",
    "Figure",
    "Metric",
    "TrialResult",
    "failures_metric",
    "scalars",
    "verdict_of",
]


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


def scalars(coord_name: str, coord: float, **values: float) -> list[Curve]:
    """One single-point curve per keyword, all at one coordinate:
    ``scalars("width", 64, train_loss=0.1, probe_error=0.02)``."""
    return [Curve(k, coord_name, [coord], [v]) for k, v in values.items()]


Comparator = Literal["<=", ">=", "<", ">"]

#: claim kinds (see :mod:`learnmech.claims`); ``point`` is a bare value-vs-tolerance check
KINDS = (
    "point",
    "exact",
    "within",
    "equivalence",
    "below",
    "above",
    "slope",
    "fit",
    "reported",
)


@dataclass
class Metric:
    """A scored claim (or a reported number) as stored.

    ``bound`` is the confidence bound the verdict used (``value`` ± a quantile times
    ``stderr``, or for two-sided claims the bound on |value − expected|); ``passed`` is
    ``bound <comparator> tolerance``. A metric with no tolerance is reported and does not
    enter the verdict. Build metrics with :mod:`learnmech.claims` rather than by hand; a
    bare ``Metric(name, value, tolerance)`` is a ``point`` check on the value itself (use
    it only for exact quantities such as counts).
    """

    name: str
    value: float
    tolerance: float | None = None
    comparator: Comparator = "<="
    stderr: float | None = None
    description: str = ""
    passed: bool | None = field(default=None)
    kind: str = "point"
    bound: float | None = None
    level: float | None = None
    expected: float | None = None

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if self.kind not in KINDS:
            raise ValueError(f"unknown claim kind {self.kind!r}; expected one of {KINDS}")
        if self.tolerance is None:
            if self.kind != "point":
                self.kind = "reported"
            return
        if self.bound is None and self.kind in ("point", "exact"):
            self.bound = self.value
        if self.passed is None:
            b, t = self.bound, float(self.tolerance)
            if b is None or not math.isfinite(b):
                self.passed = False
            else:
                self.passed = {
                    "<=": b <= t,
                    ">=": b >= t,
                    "<": b < t,
                    ">": b > t,
                }[self.comparator]

    @property
    def scored(self) -> bool:
        return self.passed is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "value": self.value,
            "stderr": self.stderr,
            "expected": self.expected,
            "bound": self.bound,
            "level": self.level,
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
    device: str | None = None
    #: torch's intra-op threads during the measurement: float32 reductions, and so the
    #: last digits of a result, depend on it (``--workers`` changes it)
    threads: int | None = None

    def curve(self, observable: str, series: str = "") -> Curve | None:
        for c in self.curves:
            if c.observable == observable and c.series == series:
                return c
        return None


@dataclass(frozen=True)
class Figure:
    """A figure file of a report with its caption."""

    path: Path
    caption: str


def verdict_of(metrics: list[Metric]) -> str:
    """``pass`` if every scored claim passed, ``fail`` if any failed, ``n/a`` if none scored.

    Requiring every claim to pass is an intersection–union test (Berger 1982): the
    verdict's false-pass rate is at most each claim's own level, with no multiplicity
    correction needed.
    """
    scored = [m for m in metrics if m.passed is not None]
    if not scored:
        return "n/a"
    return "pass" if all(m.passed for m in scored) else "fail"


FAILURES = "failed_or_diverged_trials"


def failures_metric(trials: list[TrialResult], extra: int = 0) -> Metric:
    """The claim every run carries: trials that raised or diverged (must be 0).

    ``extra`` adds trials a study counts as failed for its own reasons (e.g. missing curves).
    """
    n_bad = sum(t.status != "ok" for t in trials) + extra
    return Metric(
        FAILURES,
        n_bad,
        0,
        "<=",
        kind="exact",
        description="trials that raised or produced NaN/inf",
    )
