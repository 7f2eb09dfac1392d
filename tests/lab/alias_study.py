"""A study with grid points measured as another (Study.measured_as), for the runner tests."""

from __future__ import annotations

from typing import Any

from learnmech.claims import Claims, Estimate
from learnmech.records import Curve, Metric
from learnmech.studies.base import Study, StudyConfig, Sweep, Trials

CALLS: list[dict[str, Any]] = []  # the points measure() saw, in this process


class AliasConfig(StudyConfig):
    schemes: list[str] = Sweep(["plain", "scaled"], key="scheme", order=None)
    sizes: list[int] = Sweep([1, 2, 4], key="size", n=1, ge=1)


class Alias(Study):
    """y = size (plain) or size² (scaled): equal at size 1, which is measured once."""

    name = "alias"
    title = summary = pillar = "alias"
    Config = AliasConfig

    def measured_as(self, cfg: Any, point: dict[str, Any]) -> dict[str, Any]:
        return point | {"scheme": "plain"} if point["size"] == 1 else point

    def measure(self, cfg: Any, point: dict[str, Any], seeds: list[int], device: str) -> dict:
        CALLS.append({k: point[k] for k in ("scheme", "size")})
        z = point["size"] ** (2 if point["scheme"] == "scaled" else 1)
        return {s: [Curve("y", "run", [0], [float(z + s)])] for s in seeds}

    def analyze(self, cfg: Any, theory: list[Curve], trials: Trials) -> dict:
        return {
            (sc, z): list(ts.last("y"))
            for sc, t1 in trials.by("scheme").items()
            for z, ts in t1.by("size").items()
        }

    def claims(self, cfg: Any, s: dict) -> list[Metric]:
        out = Claims()
        for (sc, z), ys in s.items():
            out.reported(f"{sc}@{z}", Estimate.of(ys))
        return out
