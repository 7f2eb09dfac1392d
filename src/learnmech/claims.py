"""Scored claims whose verdict is a confidence bound, not a point estimate.

Every claim takes an :class:`Estimate` (value, standard error, degrees of freedom) and a
tolerance fixed before the run, and passes only when a one-sided confidence bound at
``level`` clears it. So a noisy, underpowered run passes *less* easily than a
well-measured one, never more:

=================  ============================================  ===========================
claim              passes when                                   use for
=================  ============================================  ===========================
``within``         |v − expected| + q·SE ≤ tol                    a prediction's accuracy
``equivalent``     |v| + q·SE ≤ margin  (TOST)                    "no effect" claims
``below``          v + q·SE ≤ threshold                           upper limits, decreases
``above``          v − q·SE ≥ threshold                           lower limits, effects
``slope``          ``within`` on a fitted log–log exponent        scaling exponents
``lack_of_fit``    χ² ≤ χ²_level(dof)                             does the model fit at all
``exact``          v ≤ threshold (no sampling error)              counts, rounding checks
``reported``       never scored                                   context numbers
=================  ============================================  ===========================

``q`` is the ``level`` quantile of Student's t with the estimate's degrees of freedom
(the normal quantile when ``df`` is infinite); ``equivalent`` is Schuirmann's (1987) two
one-sided tests at level α = 1 − ``level``. One rule for degenerate input: a non-finite
value, standard error or degrees of freedom fails the claim (an estimate from one seed
has no standard error and cannot clear a bound); a standard error of exactly 0 means the
value has no sampling error and the bound is the value itself.

The default level is :data:`LEVEL` = 0.95 per claim. A study's verdict requires every
claim to pass, an intersection–union test (Berger 1982), so the verdict's false-pass rate
is at most that level's α without a multiplicity correction.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from learnmech.records import Metric

__all__ = [
    "LEVEL",
    "Claims",
    "Estimate",
    "above",
    "below",
    "claims_hash",
    "equivalent",
    "exact",
    "fit_slope",
    "lack_of_fit",
    "quantile",
    "reported",
    "slope",
    "within",
    "within_every",
]

#: default one-sided confidence level of every claim
LEVEL = 0.95


def quantile(level: float, df: float = math.inf) -> float:
    """One-sided ``level`` quantile: Student's t with ``df`` degrees of freedom, or normal."""
    if not 0.5 <= level < 1:
        raise ValueError(f"confidence level must be in [0.5, 1), got {level}")
    if not df > 0:
        return math.nan
    if math.isinf(df):
        return float(_st.norm.ppf(level))
    return float(_st.t.ppf(level, df))


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error and the degrees of freedom of that error.

    ``se = 0`` means no sampling error (a closed form, a deterministic count). Arithmetic
    treats operands as independent (Welch–Satterthwaite degrees of freedom); for paired
    data take the difference per seed first (:meth:`paired`).
    """

    value: float
    se: float = 0.0
    df: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "se", float(self.se))
        object.__setattr__(self, "df", float(self.df))

    @classmethod
    def exact(cls, value: float) -> Estimate:
        return cls(value, 0.0, math.inf)

    @classmethod
    def of(cls, samples: Iterable[float] | np.ndarray) -> Estimate:
        """Mean over independent samples (seeds), SE with ddof = 1, df = n − 1.

        Non-finite samples are kept, so they make the estimate (and its claim) fail.
        """
        s = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples)
        s = s.astype(np.float64).reshape(-1)
        n = s.size
        if n == 0:
            return cls(math.nan, math.nan, math.nan)
        if n == 1:
            return cls(float(s[0]), math.nan, 0.0)
        with np.errstate(invalid="ignore"):  # inf − inf in the spread: NaN, as meant
            return cls(float(s.mean()), float(s.std(ddof=1) / math.sqrt(n)), n - 1)

    @classmethod
    def paired(cls, a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> Estimate:
        """Mean of a − b over pairs (same seed in both arms)."""
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
        return cls.of(a - b)

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.value, self.se)) and not math.isnan(self.df)

    @property
    def z(self) -> float:
        """value / SE (±inf when SE = 0 and value ≠ 0; 0 for 0/0)."""
        if self.se > 0:
            return self.value / self.se
        return 0.0 if self.value == 0 else math.copysign(math.inf, self.value)

    def __neg__(self) -> Estimate:
        return Estimate(-self.value, self.se, self.df)

    def __add__(self, other: Estimate | float) -> Estimate:
        return self._combine(other, 1.0)

    def __sub__(self, other: Estimate | float) -> Estimate:
        return self._combine(other, -1.0)

    def _combine(self, other: Estimate | float, sign: float) -> Estimate:
        o = other if isinstance(other, Estimate) else Estimate.exact(float(other))
        var = self.se**2 + o.se**2
        terms = [(v, d) for v, d in ((self.se**2, self.df), (o.se**2, o.df)) if v > 0]
        if not terms:
            df = math.inf
        elif any(d == 0 for _, d in terms):
            df = 0.0
        else:
            den = sum(v**2 / d for v, d in terms if math.isfinite(d))
            df = var**2 / den if den > 0 else math.inf
        return Estimate(self.value + sign * o.value, math.sqrt(var), df)

    def scale(self, k: float) -> Estimate:
        return Estimate(self.value * k, self.se * abs(k), self.df)

    def log(self) -> Estimate:
        """log of a positive estimate, SE by the delta method (SE / value)."""
        if not self.value > 0:
            return Estimate(math.nan, math.nan, self.df)
        return Estimate(math.log(self.value), self.se / self.value, self.df)

    def __format__(self, spec: str) -> str:
        spec = spec or ".4g"
        if self.se == 0:
            return format(self.value, spec)
        return f"{format(self.value, spec)} ± {format(self.se, spec)}"


def _as_est(x: Estimate | float) -> Estimate:
    return x if isinstance(x, Estimate) else Estimate.exact(float(x))


def _check_tol(name: str, tol: float, what: str = "tolerance") -> float:
    t = float(tol)
    if not math.isfinite(t):
        raise ValueError(f"claim {name!r}: {what} must be finite, got {tol}")
    return t


def _q(est: Estimate, level: float) -> float:
    return 0.0 if est.se == 0 else quantile(level, est.df)


def _bound(est: Estimate, level: float, sign: float) -> float:
    """value + sign·q·SE, NaN when anything is non-finite."""
    if not est.finite:
        return math.nan
    q = _q(est, level)
    return est.value + sign * q * est.se if math.isfinite(q) else math.nan


def _describe(est: Estimate, text: str, level: float) -> str:
    extra = []
    if not est.finite:
        extra.append("not finite: fails")
    elif est.se > 0:
        df = "∞" if math.isinf(est.df) else f"{est.df:.3g}"
        extra.append(f"{level:.0%} bound, df {df}")
    return f"{text} ({'; '.join(extra)})" if extra else text


def within(
    name: str,
    est: Estimate | float,
    expected: float,
    tol: float,
    *,
    level: float = LEVEL,
    description: str = "",
    kind: str = "within",
) -> Metric:
    """The prediction ``expected`` is right to within ``tol``: |v − expected| + q·SE ≤ tol.

    This is the equivalence (TOST) form: it passes only when the whole (1 − 2α) interval
    lies inside ``expected ± tol``.
    """
    e = _as_est(est)
    tol = _check_tol(name, tol)
    dev = Estimate(e.value - float(expected), e.se, e.df)
    bound = abs(dev.value) + _q(dev, level) * dev.se if dev.finite else math.nan
    return Metric(
        name,
        e.value,
        tol,
        "<=",
        stderr=e.se,
        kind=kind,
        bound=bound,
        level=level,
        expected=float(expected),
        description=_describe(e, description, level),
    )


def within_every(
    name: str,
    cells: Sequence[tuple[str, Estimate | float, float, float]],
    *,
    level: float = LEVEL,
    description: str = "",
) -> Metric:
    """Every cell's prediction is right: for each (label, estimate, expected, tol),
    |v − expected| + q·SE ≤ tol. One claim whose value and bound are the largest
    (|v − expected| + q·SE)/tol over the cells, against tolerance 1 — the intersection–
    union test over cells, with a claim set that does not depend on which cell is worst.
    The description names the worst cell. No cells, or a non-finite one, fails."""
    worst: tuple[float, str] = (math.nan, "no cells")
    ratios = []
    for label, est, expected, tol in cells:
        m = within(name, est, expected, tol, level=level)
        r = m.bound / m.tolerance if math.isfinite(m.bound) and m.tolerance > 0 else math.nan
        ratios.append(r)
        e = _as_est(est)
        text = f"worst cell {label}: {e:.4g} vs {expected:.4g} (tolerance {tol:.3g})"
        if not math.isfinite(r) or math.isnan(worst[0]) or r > worst[0]:
            worst = (r, text)
            if not math.isfinite(r):
                break
    bad = not ratios or any(not math.isfinite(r) for r in ratios)
    value = math.nan if bad else max(ratios)
    return Metric(
        name,
        value,
        1.0,
        "<=",
        stderr=0.0,
        kind="within",
        bound=value,
        level=level,
        description=f"{description}; {len(ratios)} cells, value = max (|v − expected| + "
        f"q·SE)/tolerance; {worst[1]}",
    )


def equivalent(
    name: str,
    est: Estimate | float,
    margin: float,
    *,
    level: float = LEVEL,
    description: str = "",
) -> Metric:
    """A "no effect" claim: the effect ``est`` lies within ±``margin`` (TOST)."""
    return within(name, est, 0.0, margin, level=level, description=description, kind="equivalence")


def _one_sided(
    kind: str,
    name: str,
    est: Estimate | float,
    threshold: float,
    level: float,
    description: str,
    strict: bool,
) -> Metric:
    e = _as_est(est)
    up = kind == "below"
    return Metric(
        name,
        e.value,
        _check_tol(name, threshold, "threshold"),
        ("<" if strict else "<=") if up else (">" if strict else ">="),
        stderr=e.se,
        kind=kind,
        bound=_bound(e, level, +1.0 if up else -1.0),
        level=level,
        description=_describe(e, description, level),
    )


def below(
    name: str,
    est: Estimate | float,
    threshold: float,
    *,
    level: float = LEVEL,
    description: str = "",
    strict: bool = False,
) -> Metric:
    """The upper confidence bound v + q·SE is at most ``threshold``."""
    return _one_sided("below", name, est, threshold, level, description, strict)


def above(
    name: str,
    est: Estimate | float,
    threshold: float,
    *,
    level: float = LEVEL,
    description: str = "",
    strict: bool = False,
) -> Metric:
    """The lower confidence bound v − q·SE is at least ``threshold``."""
    return _one_sided("above", name, est, threshold, level, description, strict)


def exact(
    name: str,
    value: float,
    threshold: float,
    comparator: str = "<=",
    *,
    description: str = "",
) -> Metric:
    """A quantity with no sampling error (a count, a rounding error) against a threshold."""
    return Metric(
        name,
        float(value),
        _check_tol(name, threshold, "threshold"),
        comparator,  # type: ignore[arg-type]
        stderr=0.0,
        kind="exact",
        description=description,
    )


def reported(name: str, est: Estimate | float, *, description: str = "") -> Metric:
    """A number shown in the report that does not enter the verdict."""
    e = _as_est(est)
    return Metric(name, e.value, None, stderr=e.se, kind="reported", description=description)


@dataclass(frozen=True)
class SlopeFit:
    """log y = a + b log x by weighted least squares; ``chi2`` against the stated errors."""

    exponent: Estimate
    prefactor: float
    chi2: float
    dof: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=np.float64) ** self.exponent.value


def fit_slope(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    y_se: Sequence[float] | np.ndarray | None = None,
    *,
    df: float | None = None,
) -> SlopeFit:
    """Fit a power law y ∝ x^b in log–log space.

    With ``y_se`` each point is weighted by 1/σ² of log y (σ ≈ SE/y, the delta method)
    and the exponent's SE comes from those stated errors only; it is *not* inflated by
    the reduced χ² (a worse fit must not buy a wider tolerance: lack of fit is scored by
    :func:`lack_of_fit`). ``df`` is the degrees of freedom of the stated errors (seeds
    − 1); default infinite. Without ``y_se`` the SE comes from the residuals with
    n − 2 degrees of freedom.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    # every point at one x has no slope (the normal equations are singular)
    if ok.sum() < 2 or ok.sum() < x.size or np.ptp(x) == 0:
        return SlopeFit(Estimate(math.nan, math.nan, math.nan), math.nan, math.nan, 0)
    lx, ly = np.log(x), np.log(y)
    A = np.stack([np.ones_like(lx), lx], axis=1)
    if y_se is not None:
        sig = np.asarray(y_se, dtype=np.float64) / y
        if not (np.all(np.isfinite(sig)) and np.all(sig > 0)):
            return SlopeFit(Estimate(math.nan, math.nan, math.nan), math.nan, math.nan, 0)
        w = 1.0 / sig**2
        cov = np.linalg.inv(A.T @ (A * w[:, None]))
        coef = cov @ (A.T @ (w * ly))
        chi2 = float(np.sum(w * (ly - A @ coef) ** 2))
        se = math.sqrt(cov[1, 1])
        d = math.inf if df is None else float(df)
    else:
        coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
        resid = ly - A @ coef
        dof = lx.size - 2
        if dof < 1:
            return SlopeFit(Estimate(float(coef[1]), math.nan, 0.0), math.nan, math.nan, 0)
        s2 = float(resid @ resid) / dof
        se = math.sqrt(s2 * np.linalg.inv(A.T @ A)[1, 1])
        chi2, d = math.nan, float(dof)
    return SlopeFit(Estimate(float(coef[1]), se, d), float(math.exp(coef[0])), chi2, lx.size - 2)


def slope(
    name: str,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    y_se: Sequence[float] | np.ndarray | None = None,
    *,
    expected: float,
    tol: float,
    df: float | None = None,
    level: float = LEVEL,
    description: str = "",
) -> Metric:
    """A fitted log–log exponent is ``expected`` to within ``tol`` (see :func:`fit_slope`)."""
    fit = fit_slope(x, y, y_se, df=df)
    return within(
        name, fit.exponent, expected, tol, level=level, description=description, kind="slope"
    )


def lack_of_fit(
    name: str, chi2: float, dof: int, *, level: float = LEVEL, description: str = ""
) -> Metric:
    """The model fits the points within their stated errors: χ² ≤ the χ²(dof) ``level``
    quantile. Value and bound are χ²/dof; the tolerance is the quantile / dof."""
    if dof < 1 or not math.isfinite(chi2):
        return Metric(
            name,
            chi2 / dof if dof >= 1 else math.nan,
            math.nan if dof < 1 else 1.0,
            "<=",
            kind="fit",
            bound=math.nan,
            level=level,
            passed=False,
            description=f"{description} (no degrees of freedom or non-finite χ²: fails)",
        )
    crit = float(_st.chi2.ppf(level, dof)) / dof
    red = chi2 / dof
    return Metric(
        name,
        red,
        crit,
        "<=",
        stderr=0.0,
        kind="fit",
        bound=red,
        level=level,
        description=f"{description} (reduced χ², {dof} dof; p = {_st.chi2.sf(chi2, dof):.3g})",
    )


def claims_hash(metrics: Iterable[Metric]) -> str:
    """Hash of what a run scores: each scored claim's name, kind, comparator, tolerance,
    expected value and level — not the measured values. Two runs of one study with one
    config share it unless a tolerance was computed from the data."""

    def r(x: float | None) -> float | None:
        return None if x is None else float(f"{x:.10g}")

    spec = sorted(
        (m.name, m.kind, m.comparator, r(m.tolerance), r(m.expected), m.level)
        for m in metrics
        if m.scored
    )
    return hashlib.sha256(json.dumps(spec, default=str).encode()).hexdigest()[:16]


class Claims(list[Metric]):
    """A study's list of claims with one method per builder: ``c.within(...)`` appends
    ``within(...)`` and returns it. A plain list of :class:`Metric` otherwise."""

    def _add(self, m: Metric) -> Metric:
        self.append(m)
        return m

    def within(self, *args: Any, **kw: Any) -> Metric:
        return self._add(within(*args, **kw))

    def within_every(self, *args: Any, **kw: Any) -> Metric:
        return self._add(within_every(*args, **kw))

    def equivalent(self, *args: Any, **kw: Any) -> Metric:
        return self._add(equivalent(*args, **kw))

    def below(self, *args: Any, **kw: Any) -> Metric:
        return self._add(below(*args, **kw))

    def above(self, *args: Any, **kw: Any) -> Metric:
        return self._add(above(*args, **kw))

    def slope(self, *args: Any, **kw: Any) -> Metric:
        return self._add(slope(*args, **kw))

    def lack_of_fit(self, *args: Any, **kw: Any) -> Metric:
        return self._add(lack_of_fit(*args, **kw))

    def exact(self, *args: Any, **kw: Any) -> Metric:
        return self._add(exact(*args, **kw))

    def reported(self, *args: Any, **kw: Any) -> Metric:
        return self._add(reported(*args, **kw))
