"""The study protocol (v2): validated config, predict, measure, analyze, claims, figures.

A study is short because the protocol does the rest::

    class MyConfig(StudyConfig):
        widths: list[int] = Sweep([64, 256], key="width")   # one grid axis
        epochs: int = Field(100, ge=1)                      # hashed into every trial
        margin: float = Analysis(0.1)                       # claims only: re-uses trials

    class MyStudy(Study):
        def measure(self, cfg, point, seeds, device): ...   # {seed: [Curve, ...]}
        def analyze(self, cfg, theory, trials): ...         # one tidy summary
        def claims(self, cfg, s): ...                       # [within(...), above(...)]
        def figures(self, cfg, s, outdir): ...              # [Figure(...)]

* ``grid`` is the product of the :func:`Sweep` fields (override it for irregular grids);
  :meth:`Study.trial_config` hashes everything else except :func:`Analysis` fields.
* :meth:`Study.setup` builds state shared by every trial of a config (a kernel, a data
  set) once per process; :meth:`Study.state` returns it.
* :meth:`Study.analyze` turns the stored trials (a :class:`Trials` view) into one summary
  that both :meth:`Study.claims` and :meth:`Study.figures` read, so nothing is aggregated
  twice.
* The protocol adds the ``failed_or_diverged_trials`` claim itself.
* :attr:`Study.controls` declares negative controls: configurations in which the theory
  must fail, and the claims that must fail there (``learnmech run STUDY --control NAME``).

Claims are built with :mod:`learnmech.claims`; their tolerances are module constants or
a-priori formulas with their source in the study's docstring.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_origin

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from learnmech.errors import ConfigError
from learnmech.records import FAILURES, Curve, Figure, Metric, TrialResult, failures_metric

__all__ = [
    "Analysis",
    "Control",
    "Evaluation",
    "Figure",
    "Study",
    "StudyConfig",
    "Sweep",
    "Trials",
    "Values",
    "available_memory",
    "check_list",
    "check_memory",
    "subset_of",
]


def _list_field(default: Any, extra: dict[str, Any], kw: dict[str, Any]) -> Any:
    if "learnmech_list" in extra:
        kw = kw | {"validate_default": True}
    if isinstance(default, list):
        return Field(default_factory=lambda d=default: list(d), json_schema_extra=extra, **kw)
    return Field(default, json_schema_extra=extra, **kw)


def _spec(n: int, order: str | None, choices: Any, bounds: dict[str, Any]) -> dict[str, Any]:
    bad = set(bounds) - {"gt", "ge", "lt", "le"}
    if bad:
        raise TypeError(f"unknown list bound(s) {sorted(bad)}")
    spec = {"n": n, "order": order, "choices": choices, **bounds}
    return {k: v for k, v in spec.items() if v is not None}


def Sweep(
    default: Any,
    *,
    key: str,
    n: int = 1,
    order: str | None = "asc",
    choices: tuple[str, ...] | None = None,
    description: str | None = None,
    **bounds: float,
) -> Any:
    """A list field whose values span one grid axis; each point holds one value as ``key``.

    Checked like :func:`Values`: at least ``n`` distinct finite values within ``bounds``
    (``gt``/``ge``/``lt``/``le``), kept sorted by ``order`` ("asc", "desc", or None for the
    given order); or, with ``choices``, a non-empty subset of those names.
    """
    spec = _spec(n, order, choices, bounds)
    extra = {"learnmech_role": "sweep", "learnmech_key": key, "learnmech_list": spec}
    return _list_field(default, extra, {"description": description})


def Values(
    default: list[Any],
    *,
    n: int = 1,
    order: str | None = "asc",
    choices: tuple[str, ...] | None = None,
    description: str | None = None,
    **bounds: float,
) -> Any:
    """A checked list field that is not a grid axis (see :func:`Sweep` for the checks)."""
    extra = {"learnmech_list": _spec(n, order, choices, bounds)}
    return _list_field(default, extra, {"description": description})


def Analysis(default: Any, **kw: Any) -> Any:
    """A field read only by analyze/claims/figures: changing it re-uses stored trials."""
    return _list_field(default, {"learnmech_role": "analysis"}, kw)


_SIGN = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
_TEST = {
    "gt": lambda x, b: x > b,
    "ge": lambda x, b: x >= b,
    "lt": lambda x, b: x < b,
    "le": lambda x, b: x <= b,
}


def check_list(values: list[Any], name: str, spec: dict[str, Any]) -> list[Any]:
    """Apply a :func:`Sweep`/:func:`Values` spec to ``values`` (raises ``ValueError``)."""
    if "choices" in spec:
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must not repeat a value; got {values}")
        return subset_of(values, spec["choices"], name)
    bounds = {k: b for k, b in spec.items() if k in _TEST}

    def ok(x: Any) -> bool:
        if isinstance(x, str) and not bounds:  # names: only non-empty and distinct
            return True
        real = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        return real and all(_TEST[k](x, b) for k, b in bounds.items())

    n = spec.get("n", 1)
    if len(set(values)) < n or not all(ok(x) for x in values):
        need = f"at least {n} distinct values" if n > 1 else "at least one value"
        each = " and ".join(f"{_SIGN[k]} {b:g}" for k, b in bounds.items())
        raise ValueError(f"{name} needs {need}, each finite{' and ' + each if each else ''}")
    order = spec.get("order")
    if order is None and len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value; got {values}")
    return list(values) if order is None else sorted(set(values), reverse=order == "desc")


def _extra(field_info: Any) -> dict[str, Any]:
    extra = field_info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _role(field_info: Any) -> tuple[str | None, str | None]:
    extra = field_info.json_schema_extra
    if isinstance(extra, dict):
        return extra.get("learnmech_role"), extra.get("learnmech_key")  # type: ignore[return-value]
    return None, None


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
        for name, f in cls.model_fields.items():
            if get_origin(f.annotation) is list and name in out:
                if not isinstance(out[name], list | tuple):
                    out[name] = [out[name]]
        return out

    @field_validator("*")
    @classmethod
    def _checked_lists(cls, v: Any, info: ValidationInfo) -> Any:
        spec = _extra(cls.model_fields[info.field_name or ""]).get("learnmech_list")
        return v if spec is None else check_list(v, info.field_name or "", spec)

    @model_validator(mode="after")
    def _numbers_are_finite(self) -> StudyConfig:
        """No NaN or infinity anywhere in a config (a property test found
        ``teacher_angles_deg=inf`` accepted, then stored as non-standard JSON)."""
        for name in type(self).model_fields:
            v = getattr(self, name)
            items = v if isinstance(v, list | tuple) else [v]
            if any(isinstance(x, float) and not math.isfinite(x) for x in items):
                raise ValueError(f"{name} must be finite, got {v!r}")
        return self

    @model_validator(mode="after")
    def _sweeps_are_non_empty_and_distinct(self) -> StudyConfig:
        for name, f in type(self).model_fields.items():
            role, _ = _role(f)
            if role != "sweep":
                continue
            v = getattr(self, name)
            if not v and _extra(f).get("learnmech_list", {}).get("n", 1) > 0:
                raise ValueError(f"{name} must not be empty")
            if len({json.dumps(x, sort_keys=True, default=str) for x in v}) != len(v):
                raise ValueError(f"{name} must not repeat a value; got {v}")
        return self

    @classmethod
    def fields_with_role(cls, role: str) -> dict[str, str | None]:
        """Config field → point key, for the fields declared with ``role``."""
        out = {}
        for name, f in cls.model_fields.items():
            r, key = _role(f)
            if r == role:
                out[name] = key
        return out


def subset_of(values: list[str], allowed: tuple[str, ...] | list[str], name: str) -> list[str]:
    """Validate a config list of names: non-empty and drawn from ``allowed``."""
    if not values or set(values) - set(allowed):
        raise ValueError(f"{name} must be a non-empty subset of {', '.join(allowed)}; got {values}")
    return values


# ------------------------------------------------------------------------------------------
class Trials:
    """A read-only view of stored trials: filter by point, group, stack seeds.

    Only ``ok`` trials are seen by the accessors; :attr:`all` keeps every trial.
    """

    def __init__(self, trials: list[TrialResult] | Trials, *, _ok: bool = False) -> None:
        raw = trials.ok if isinstance(trials, Trials) else list(trials)
        self.all = list(raw)
        self.ok = self.all if _ok else [t for t in self.all if t.status == "ok"]

    def __iter__(self) -> Iterator[TrialResult]:
        return iter(self.ok)

    def __len__(self) -> int:
        return len(self.ok)

    def __bool__(self) -> bool:
        return bool(self.ok)

    def where(self, pred: Callable[[dict[str, Any]], bool] | None = None, **eq: Any) -> Trials:
        """Trials whose point has every ``key=value`` of ``eq`` (and satisfies ``pred``)."""

        def keep(t: TrialResult) -> bool:
            if any(t.point.get(k) != v for k, v in eq.items()):
                return False
            return pred is None or bool(pred(t.point))

        return Trials([t for t in self.ok if keep(t)], _ok=True)

    def values(self, key: str) -> list[Any]:
        """Distinct values of one point key, sorted (None last)."""
        vals = {json.dumps(t.point.get(key), sort_keys=True): t.point.get(key) for t in self.ok}
        return sorted(vals.values(), key=lambda v: (v is None, v))

    def by(self, key: str) -> dict[Any, Trials]:
        return {v: self.where(**{key: v}) for v in self.values(key)}

    @property
    def seeds(self) -> list[int]:
        return sorted({t.seed for t in self.ok})

    def has(self, observable: str, series: str = "") -> Trials:
        return Trials([t for t in self.ok if t.curve(observable, series) is not None], _ok=True)

    def stack(self, observable: str, series: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(coords, values[seed, coord]) over trials that recorded the curve, truncated to
        the shortest; seeds in :attr:`seeds` order. Empty arrays when none did."""
        curves = [
            c
            for t in sorted(self.ok, key=lambda t: t.seed)
            if (c := t.curve(observable, series)) is not None
        ]
        if not curves:
            return np.zeros(0), np.zeros((0, 0))
        n = min(c.values.size for c in curves)
        return curves[0].coords[:n], np.stack([c.values[:n] for c in curves])

    def last(self, observable: str, series: str = "") -> np.ndarray:
        """Each seed's last recorded value (seed order)."""
        _, v = self.stack(observable, series)
        return v[:, -1] if v.size else np.zeros(0)

    def at(self, observable: str, coord: float, series: str = "") -> np.ndarray:
        """Each seed's value at one coordinate (NaN where it was not recorded)."""
        out = []
        for t in sorted(self.ok, key=lambda t: t.seed):
            c = t.curve(observable, series)
            if c is None:
                continue
            hit = np.flatnonzero(np.isclose(c.coords, coord))
            out.append(c.values[hit[0]] if hit.size else np.nan)
        return np.asarray(out, dtype=np.float64)

    @property
    def observables(self) -> list[str]:
        """The names of the curves any trial recorded (in the default series), sorted."""
        return sorted({c.observable for t in self.ok for c in t.curves if not c.series})

    def tables(self, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """:meth:`table` for every observable in :attr:`observables` (none left empty)."""
        return {o: v for o in self.observables if (v := self.table(key, o))[1].size}

    def table(self, key: str, observable: str, series: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(values of point ``key``, first value of ``observable`` [seed, key]) over the seeds
        that recorded it at every ``key`` value (seed order); empty arrays when none did."""
        obs = self.has(observable, series)
        by = {x: obs.where(**{key: x}) for x in obs.values(key)}
        seeds = set.intersection(*(set(ts.seeds) for ts in by.values())) if by else set()
        if not seeds:
            return np.zeros(0), np.zeros((0, 0))
        cols = [
            [
                c.values[0]
                for t in sorted(ts, key=lambda t: t.seed)
                if t.seed in seeds
                for c in [t.curve(observable, series)]
                if c is not None
            ]
            for ts in by.values()
        ]
        return np.array(list(by), dtype=np.float64), np.array(cols, dtype=np.float64).T

    def mean(self, observable: str, series: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(coords, mean, SE) over seeds (SE NaN with one seed)."""
        x, v = self.stack(observable, series)
        if not v.size:
            return x, np.zeros(0), np.zeros(0)
        se = v.std(axis=0, ddof=1) / np.sqrt(v.shape[0]) if v.shape[0] > 1 else v[0] * np.nan
        return x, v.mean(axis=0), se


# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """A negative control: a configuration where the study's theory must fail.

    ``overrides`` are applied on top of ``scale``; every claim matching a pattern of
    ``fails`` (shell-style, e.g. ``"sp_*"``) must fail there, and at least one must exist.
    """

    name: str
    overrides: dict[str, Any]
    fails: tuple[str, ...]
    why: str
    scale: str = "quick"


@dataclass
class Evaluation:
    summary: Any
    metrics: list[Metric] = field(default_factory=list)


def _canonical(config: dict[str, Any]) -> str:
    """A trial config as text, as the trial key hashes it (``lab.sweep``): equal configs,
    equal text."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


class Study(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    pillar: ClassVar[str]
    Config: ClassVar[type[StudyConfig]]
    scales: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}
    #: negative controls (at least one per study)
    controls: ClassVar[tuple[Control, ...]] = ()
    #: legacy declarations; new studies mark fields with :func:`Sweep` / :func:`Analysis`
    sweep_fields: ClassVar[frozenset[str]] = frozenset()
    analysis_fields: ClassVar[frozenset[str]] = frozenset()
    #: config fields that only some grid points read: field → the point values under which
    #: it is hashed into a trial (elsewhere it is left out, so a config that changes it
    #: re-uses those trials)
    hashed_for: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    # -- configuration -----------------------------------------------------------------
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
            fld = ".".join(str(p) for p in first["loc"]) or "config"
            where = f" (from {sources[fld]})" if sources and fld in sources else ""
            got = first.get("input")
            msg = first["msg"].removeprefix("Value error, ")
            shown = f", got {got!r}" if fld != "config" else ""
            raise ConfigError(f"invalid {self.name} config: {fld}: {msg}{shown}{where}") from None

    def control(self, name: str) -> Control:
        for c in self.controls:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.controls) or "none"
        raise ConfigError(f"{self.name} has no control {name!r}; its controls: {known}")

    def _sweeps(self) -> dict[str, str | None]:
        return self.Config.fields_with_role("sweep")

    def _dropped(self) -> set[str]:
        return (
            {"seeds"}
            | set(self._sweeps())
            | set(self.Config.fields_with_role("analysis"))
            | set(self.sweep_fields)
            | set(self.analysis_fields)
        )

    def trial_config(self, cfg: StudyConfig, point: dict[str, Any]) -> dict[str, Any]:
        """Everything that determines one trial's measurement: the trial key hashes this."""
        drop = self._dropped() | {
            f
            for f, when in self.hashed_for.items()
            if any(point.get(k) != v for k, v in when.items())
        }
        base = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in drop}
        return base | point

    def measured_as(self, cfg: Any, point: dict[str, Any]) -> dict[str, Any]:
        """The point whose measurement stands for grid point ``point`` (default: itself).

        Where two points' measurements are equal by construction — μP at its base width
        *is* SP, every scaling rule at k = 1 is the same base run — return the one for the
        other: the runner measures it once (and another run whose grid holds it re-uses
        it), and :meth:`evaluate` shows its trials under both points, so :meth:`analyze`
        need not know. A test should check the equality the study relies on.
        """
        return point

    def measured_points(self, cfg: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """What the runner measures, each once, in grid order: (:meth:`trial_config`, the
        grid point it is of) for every distinct :meth:`measured_as` of the grid."""
        out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for g in self.grid(cfg):
            m = self.measured_as(cfg, g)
            p = self.trial_config(cfg, m)
            out.setdefault(_canonical(p), (p, m))
        return list(out.values())

    def with_aliases(self, cfg: Any, trials: list[TrialResult]) -> list[TrialResult]:
        """The trials as the grid sees them: those of a point measured as another
        (:meth:`measured_as`) appear under the grid point's own config, once per grid point
        that reads them (a measured point outside the grid is seen only through its
        aliases). Trials of no grid point pass through unchanged."""
        readers: dict[str, dict[str, dict[str, Any]]] = {}
        for g in self.grid(cfg):
            src = _canonical(self.trial_config(cfg, self.measured_as(cfg, g)))
            dst = self.trial_config(cfg, g)
            readers.setdefault(src, {})[_canonical(dst)] = dst
        out = []
        for t in trials:
            dsts = readers.get(_canonical(t.point))
            if dsts is None:
                out.append(t)
                continue
            out += [t if d == t.point else dataclasses.replace(t, point=d) for d in dsts.values()]
        return out

    def memory_bytes(self, cfg: Any) -> int | None:
        """A lower bound on the memory the largest trial of ``cfg`` needs (None: no
        estimate). :func:`check_memory` refuses a config whose bound exceeds what the
        device has free, before anything runs or is written (issue #19, item 1: a width of
        100,000 tried to allocate 40 GB, then broke the report)."""
        return None

    def seed_list(self, cfg: StudyConfig) -> list[int]:
        return list(range(cfg.seeds))

    def seeds_for(self, cfg: StudyConfig, point: dict[str, Any]) -> list[int]:
        """The seeds measured at one grid point (default: every seed of the run); a study
        overrides this when one arm's trials cost far more than another's."""
        return self.seed_list(cfg)

    def grid(self, cfg: Any) -> list[dict[str, Any]]:
        """The sweep's config points: the product of the :func:`Sweep` fields."""
        sweeps = self._sweeps()
        if not sweeps:
            return [{}]
        names = list(sweeps)
        keys = [sweeps[n] or n for n in names]
        axes = [getattr(cfg, n) for n in names]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]

    # -- shared state ------------------------------------------------------------------
    def setup(self, cfg: Any) -> Any:
        """State shared by every trial and by the analysis of one config (a data set, a
        kernel): built once per process by :meth:`state`. Default: nothing."""
        return None

    def state(self, cfg: Any) -> Any:
        """:meth:`setup`'s result for ``cfg``, built once per process (four configs kept)."""
        if not hasattr(self, "_state"):  # a subclass whose __init__ skipped ours
            self._state = {}
        key = cfg.model_dump_json()
        if key not in self._state:
            if len(self._state) >= 4:
                self._state.pop(next(iter(self._state)))
            self._state[key] = self.setup(cfg)
        return self._state[key]

    # -- the loop ----------------------------------------------------------------------
    def predict(self, cfg: Any) -> list[Curve]:
        """Theory curves from the configuration and cheap statistics (no training); a
        study whose predictions are closed forms inside its claims returns none."""
        return []

    @abstractmethod
    def measure(
        self, cfg: Any, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        """Experiment curves for each seed of one config point (real training), on
        ``device``."""

    def analyze(self, cfg: Any, theory: list[Curve], trials: Trials) -> Any:
        """One tidy summary of the run, read by both :meth:`claims` and :meth:`figures`."""
        return None

    def claims(self, cfg: Any, s: Any) -> list[Metric]:
        """Scored claims (built with :mod:`learnmech.claims`) from the summary."""
        return []

    def figures(self, cfg: Any, s: Any, outdir: Path) -> list[Figure]:
        """Figures for the report, drawn from the summary."""
        return []

    # -- driven by the runner ----------------------------------------------------------
    @property
    def legacy(self) -> bool:
        """A study still on the v1 protocol (it overrides ``compare``)."""
        return type(self).compare is not Study.compare

    def compare(self, cfg: Any, theory: list[Curve], trials: list[TrialResult]) -> list[Metric]:
        return self.evaluate(cfg, theory, trials).metrics

    def evaluate(self, cfg: Any, theory: list[Curve], trials: list[TrialResult]) -> Evaluation:
        """analyze → claims, plus the failed-trials claim (the protocol's, not the study's)."""
        seen = self.with_aliases(cfg, trials)
        if self.legacy:
            metrics = list(type(self).compare(self, cfg, theory, seen))
            summary = None
        else:
            summary = self.analyze(cfg, theory, Trials(seen))
            metrics = list(self.claims(cfg, summary))
        if not any(m.name == FAILURES for m in metrics):
            metrics.append(failures_metric(trials))
        if not any(t.status == "ok" for t in trials):
            metrics.append(
                Metric(
                    "ok_trials",
                    0,
                    1,
                    ">=",
                    kind="exact",
                    description="no trial finished: nothing was measured, nothing can pass",
                )
            )
        return Evaluation(summary, metrics)

    def render_figures(
        self,
        cfg: Any,
        theory: list[Curve],
        trials: list[TrialResult],
        ev: Evaluation,
        outdir: Path,
    ) -> list[Figure]:
        if not self.legacy:
            return self.figures(cfg, ev.summary, outdir)
        if type(self).figures is Study.figures:
            return []
        draw: Any = type(self).figures
        return draw(self, cfg, theory, trials, ev.metrics, outdir)


def failing_claims(control: Control, metrics: list[Metric]) -> tuple[list[str], list[str]]:
    """(targeted claims that failed, targeted claims that did not) for a control run."""
    hit = [m for m in metrics if any(fnmatch.fnmatchcase(m.name, p) for p in control.fails)]
    failed = [m.name for m in hit if m.passed is False]
    return failed, [m.name for m in hit if m.passed is not False]


def available_memory(device: str = "cpu") -> int | None:
    """Bytes free on ``device``: ``MemAvailable`` of /proc/meminfo for the CPU (else the
    physical memory), ``torch.cuda.mem_get_info`` for a GPU; None when unknown."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(study: Study, cfg: Any, device: str = "cpu") -> None:
    """Raise :class:`ConfigError` when the study's lower bound on a trial's memory exceeds
    what ``device`` has free: one line, before any work."""
    need = study.memory_bytes(cfg)
    have = available_memory(device)
    if need is None or have is None or need <= have:
        return
    raise ConfigError(
        f"{study.name}: the largest trial needs at least {need / 2**30:.1f} GiB on {device} "
        f"but {have / 2**30:.1f} GiB is free; use smaller sizes"
    )
