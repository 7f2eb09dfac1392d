"""Compatibility alias: the records vocabulary lives in :mod:`learnmech.records`."""

from learnmech.records import (  # noqa: F401
    FAILURES,
    Comparator,
    Curve,
    Figure,
    Metric,
    TrialResult,
    failures_metric,
    verdict_of,
)

__all__ = ["FAILURES", "Curve", "Figure", "Metric", "TrialResult", "failures_metric", "verdict_of"]
