"""The study protocol: validated config, predict, measure, compare, figures.

A study declares its tolerances in ``compare``; the verdict is ``pass`` when every scored
metric is within its tolerance. ``grid`` lists the sweep's config points; each point is
run for every seed, and ``measure`` gets all pending seeds of one point at once so it can
train them as one vectorized ensemble.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from learnmech.errors import ConfigError
from learnmech.lab.records import Curve, Metric, TrialResult

__all__ = ["Figure", "Study", "StudyConfig", "subset_of"]


class StudyConfig(BaseModel):
    """Base config: every study has a seed count; subclasses add their fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seeds: int = Field(8, ge=1, le=4096, description="number of seeds per config point")

    @model_validator(mode="before")
    @classmethod
    def _one_value_is_a_list(cls, data: Any) -> Any:
        """A single value for a list field is a one-element list (``--set arms=gpt``)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            if get_origin(field.annotation) is list and name in out:
                if not isinstance(out[name], list | tuple):
                    out[name] = [out[name]]
        return out


def subset_of(values: list[str], allowed: tuple[str, ...] | list[str], name: str) -> list[str]:
    """Validate a config list of names: non-empty and drawn from ``allowed``."""
    if not values or set(values) - set(allowed):
        raise ValueError(f"{name} must be a non-empty subset of {', '.join(allowed)}; got {values}")
    return values


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


class Study(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    pillar: ClassVar[str]
    Config: ClassVar[type[StudyConfig]]
    scales: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}
    #: config fields that span the grid (their value is in each point instead)
    sweep_fields: ClassVar[frozenset[str]] = frozenset()
    #: config fields used only by compare/figures (changing them re-uses measurements)
    analysis_fields: ClassVar[frozenset[str]] = frozenset()

    def config(
        self,
        scale: str = "quick",
        overrides: dict[str, Any] | None = None,
        seeds: int | None = None,
        sources: dict[str, str] | None = None,
    ) -> StudyConfig:
        """Resolve scale defaults, then overrides; raise :class:`ConfigError` on bad values.

        ``sources`` maps a field to where its value came from (e.g. ``--set width=-3``)
        so the message can name it.
        """
        if scale not in self.scales:
            raise ConfigError(
                f"unknown scale {scale!r} for {self.name}; expected one of {sorted(self.scales)}"
            )
        values = dict(self.scales[scale])
        values.update(overrides or {})
        if seeds is not None:
            values["seeds"] = seeds
        try:
            return self.Config(**values)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "config"
            where = f" (from {sources[field]})" if sources and field in sources else ""
            got = first.get("input")
            raise ConfigError(
                f"invalid {self.name} config: {field}: {first['msg']}, got {got!r}{where}"
            ) from None

    def trial_config(self, cfg: StudyConfig, point: dict[str, Any]) -> dict[str, Any]:
        """Everything that determines one trial's measurement: the trial key hashes this."""
        drop = {"seeds"} | set(self.sweep_fields) | set(self.analysis_fields)
        base = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in drop}
        return base | point

    def seed_list(self, cfg: StudyConfig) -> list[int]:
        return list(range(cfg.seeds))

    def seeds_for(self, cfg: StudyConfig, point: dict[str, Any]) -> list[int]:
        """The seeds measured at one grid point (default: every seed of the run); a study
        overrides this when one arm's trials cost far more than another's."""
        return self.seed_list(cfg)

    @abstractmethod
    def grid(self, cfg: Any) -> list[dict[str, Any]]:
        """The sweep's config points (each is run for the seeds of :meth:`seeds_for`)."""

    @abstractmethod
    def predict(self, cfg: Any) -> list[Curve]:
        """Theory curves from the configuration and cheap statistics (no training)."""

    @abstractmethod
    def measure(
        self, cfg: Any, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        """Experiment curves for each seed of one config point (real training)."""

    @abstractmethod
    def compare(self, cfg: Any, theory: list[Curve], trials: list[TrialResult]) -> list[Metric]:
        """Agreement metrics with declared tolerances."""

    def figures(
        self,
        cfg: Any,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        """Figures for the report (theory and measurement on the same axes)."""
        return []
