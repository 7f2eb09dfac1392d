"""A user's own training run in the store: probe curves recorded from their loop.

:class:`learnmech.integrations.StoreSink` writes one run of the pseudo-study
``tracked-run``: one trial whose curves are the probes' observables against the step. It
shows up in ``learnmech runs list`` and ``learnmech report RUN`` renders its curves. It
makes no predictions, so it has no claims and no verdict.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict, Field

from learnmech.records import Curve, Figure, Metric, TrialResult
from learnmech.studies.base import Control, Evaluation, Study, StudyConfig, Trials

__all__ = ["TRACKED", "TrackedRun", "TrackedRunConfig"]

TRACKED = "tracked-run"
_PANELS = 6  # observable groups per figure row


class TrackedRunConfig(StudyConfig):
    """Whatever the user described their run with (model, optimizer, data …)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    seeds: int = Field(1, ge=1, le=1)


class TrackedRun(Study):
    name = TRACKED
    title = "A tracked training run"
    summary = "probe curves recorded from the user's own training loop"
    pillar = "user runs"
    Config = TrackedRunConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {"tracked": {}}
    controls: ClassVar[tuple[Control, ...]] = ()

    def measure(
        self, cfg: Any, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        raise TypeError("a tracked run records the user's own loop; it cannot be re-run")

    def evaluate(self, cfg: Any, theory: list[Curve], trials: list[TrialResult]) -> Evaluation:
        return Evaluation(Trials(trials), [])

    def claims(self, cfg: Any, s: Any) -> list[Metric]:
        return []

    def figures(self, cfg: Any, s: Trials, outdir: Path) -> list[Figure]:
        from learnmech.report.plots import save_png, subplots

        curves = [c for t in s for c in t.curves]
        groups: dict[str, list[Curve]] = {}
        for c in curves:
            groups.setdefault(c.observable.split("/")[0], []).append(c)
        if not groups:
            return []
        cols = min(len(groups), _PANELS)
        rows = math.ceil(len(groups) / cols)
        fig, axes = subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
        for ax, (group, cs) in zip(axes.flat, sorted(groups.items()), strict=False):
            for c in cs[:12]:  # per-parameter groups can be long: the first dozen
                label = c.observable.split("/", 1)[1] if "/" in c.observable else None
                ax.plot(c.coords, c.values, lw=1, label=label)
            positive = all(np.all(np.asarray(c.values) > 0) for c in cs)
            ax.set(xlabel="step", yscale="log" if positive else "linear")
            ax.set_title(group + (f" ({len(cs)} curves)" if len(cs) > 12 else ""), fontsize=8)
            if len(cs) > 1:
                ax.legend(fontsize=5)
        for ax in list(axes.flat)[len(groups) :]:
            ax.set_visible(False)
        caption = "Every recorded observable against the training step, grouped by prefix."
        return [Figure(save_png(fig, outdir / "tracked.png"), caption)]
