"""Fitting scaling laws: Huber loss in log space, every start at once, bootstrap intervals.

The fit is Hoffmann et al. 2022's Approach 3 (App. D.2), generalised to any family of
:mod:`.families`: minimise Σ_i w_i·Huber_δ(log L̂(x_i; θ) − log L_i) over θ with L-BFGS
from every point of a start grid and keep the best. All starts — and, for the bootstrap,
all replicates × starts — are optimised together by :func:`.optim.batched_lbfgs`.

Two phases. Phase 1 screens: every start runs in float32 until its relative decrease per
iteration falls below 1e-5. Phase 2 polishes: the 16 best rows, every row within 1e-3 of
the best objective, and any row phase 1 left unfinished continue in float64 to the
requested tolerances (default: until float64 makes no progress). The Chinchilla objective
has a long, flat valley (the A–α and B–β trade-offs): a start stopped by a loose tolerance,
as scipy's default ftol = 2.2e-9 stops it, can sit 5% above the valley floor, so which
start "wins" a loose multi-start fit is partly luck. Screening then polishing to the floor
finds the optimum reliably (on the Chinchilla data every one of the 16 polished rows
reaches it) and is checked against a plain scipy loop at tight tolerances in the tests;
``converged_fraction`` counts rows that met their phase's stopping rule.

Uncertainty (Efron & Tibshirani 1993): the bootstrap resamples points (or whole clusters,
e.g. all runs of one model size: ``cluster="N"``; or labelled groups such as runs:
``groups=``) with replacement and refits, optionally within strata (``strata="N"``: each
model size keeps its number of runs, the stratified bootstrap of Davison & Hinkley 1997,
§3.7); intervals are percentile intervals, standard errors the bootstrap standard
deviation. Resampling whole sizes when there are few of them leaves most replicates
with too few distinct sizes to identify the law; the fit notes it (Cameron, Gelbach &
Miller 2008 on the cluster bootstrap with few clusters). Each replicate is
refit from the distinct local minima of the full-data fit (``bootstrap_starts`` of them,
default 8) rather than the whole grid; ``bootstrap_starts=0`` uses the whole grid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learnmech.errors import UserError
from learnmech.laws.families import Law, get_law
from learnmech.laws.optim import batched_lbfgs

__all__ = ["ScalingData", "ScalingFit", "extrapolation_score", "fit_law"]


@dataclass(frozen=True)
class ScalingData:
    """Validated inputs (e.g. N and D, or x) and losses, all positive and finite."""

    inputs: dict[str, np.ndarray]
    loss: np.ndarray

    @classmethod
    def from_arrays(cls, law: Law, loss: Any, **inputs: Any) -> ScalingData:
        y = np.asarray(loss, dtype=np.float64).reshape(-1)
        got: dict[str, np.ndarray] = {}
        for name in law.inputs:
            if name not in inputs:
                raise UserError(f"law {law.name} needs input {name!r}")
            v = np.asarray(inputs[name], dtype=np.float64).reshape(-1)
            if v.shape != y.shape:
                raise UserError(f"input {name!r} has {v.size} values but loss has {y.size}")
            bad = ~np.isfinite(v) | (v <= 0)
            if bad.any():
                raise UserError(
                    f"input {name!r} must be positive and finite; row {int(np.argmax(bad))} "
                    f"is {v[bad][0]!r}"
                )
            got[name] = v
        bad = ~np.isfinite(y) | (y <= 0)
        if bad.any():
            raise UserError(
                f"loss must be positive and finite; row {int(np.argmax(bad))} is {y[bad][0]!r}"
            )
        if y.size < len(law.params) + 1:
            raise UserError(
                f"too few points: {y.size} for a {len(law.params)}-parameter law "
                f"(need at least {len(law.params) + 1})"
            )
        return cls(got, y)

    def subset(self, mask: np.ndarray) -> ScalingData:
        return ScalingData({k: v[mask] for k, v in self.inputs.items()}, self.loss[mask])

    @property
    def n(self) -> int:
        return int(self.loss.size)


def _huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


_ROWS = 512  # rows per block: a (512 × n) float64 block stays in cache
_BLOCK_ELEMENTS = 1 << 22  # ... and at most 4M elements (32 MB in float64) whatever n is
#: above this many points, the 4,500-start screen runs on a seeded random subsample of
#: this size; only the polish (and the bootstrap) see every point
SCREEN_ROWS = 1024
#: a bootstrap's resampling counts (replicates × points, float64) must fit in this
BOOTSTRAP_BYTES = 1 << 30


def _objective(  # type: ignore[no-untyped-def]
    law: Law,
    data: ScalingData,
    delta: float,
    weights: torch.Tensor | None,
    dtype: torch.dtype = torch.float64,
    repeat: int = 1,
):
    """The Huber objective of every start (row of θ) on ``data``; with ``weights``
    (replicates × points), start row ``i`` uses replicate ``i // repeat``."""
    logs = {k: torch.from_numpy(np.log(v)).to(dtype) for k, v in data.inputs.items()}
    y = torch.from_numpy(np.log(data.loss)).to(dtype)
    if weights is not None:
        weights = weights.to(dtype)
    floor = -700.0 if dtype == torch.float64 else -80.0  # stay clear of subnormals

    def fn(theta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        r = law.log_predict(theta, logs) - y[None, :]
        h = _huber(r, delta)
        if weights is not None:
            h = h * weights[rows // repeat]
        return h.sum(1)

    if law.name != "chinchilla":
        return fn, None
    lN, lD = logs["N"], logs["D"]
    n = lN.numel()
    block = max(1, min(_ROWS, _BLOCK_ELEMENTS // (2 * n)))
    # t = θ·M gives both exponents a − α log N and b − β log D in one matrix product, and
    # G·Mᵀ gives four of the five gradient components in another.
    M = torch.zeros(5, 2 * n, dtype=dtype)
    M[0, :n], M[1, n:], M[3, :n], M[4, n:] = 1.0, 1.0, -lN, -lD

    def chin(theta: torch.Tensor, rows: torch.Tensor, grad: bool):  # type: ignore[no-untyped-def]
        """Approach-3 objective (and its analytic gradient), in cache-sized row blocks.

        L̂ = e^{a − α log N} + e^{b − β log D} + e^{e}, summed directly: two exponentials and
        one log per point. Exponents are clamped below at ``floor`` so nothing underflows
        to a (slow) subnormal (the clamped terms are < 1e-304 in float64, < 2e-35 in
        float32); one that overflows makes the value infinite, which the line search
        rejects. Huber via c = clamp(r, ±δ): h = c·(r − c/2), h′ = c.
        """
        vals, grads = [], []
        # every block writes into the same buffers: fresh (block × n) temporaries on each
        # block fragment glibc's heap, and with a million points the process grew to
        # 2.5 GB for ~100 MB of live data
        k = min(block, theta.shape[0])
        ex_buf = torch.empty(k, 2 * n, dtype=theta.dtype)
        z_buf, r_buf, c_buf, h_buf = (torch.empty(k, n, dtype=theta.dtype) for _ in range(4))
        w_buf = torch.empty(k, n, dtype=theta.dtype) if weights is not None else None
        for i in range(0, theta.shape[0], block):
            th = theta[i : i + block]
            b = th.shape[0]
            ex = torch.matmul(th, M, out=ex_buf[:b]).clamp_(min=floor).exp_()  # e^{t1} | e^{t2}
            ee = th[:, 2].exp()
            z = torch.add(ex[:, :n], ex[:, n:], out=z_buf[:b])
            z += ee[:, None]
            r = torch.log(z, out=r_buf[:b]).sub_(y)
            c = torch.clamp(r, -delta, delta, out=c_buf[:b])
            h = torch.mul(c, 0.5, out=h_buf[:b])
            h = torch.sub(r, h, out=h).mul_(c)
            if weights is not None:
                w = torch.index_select(weights, 0, rows[i : i + block] // repeat, out=w_buf[:b])  # type: ignore[index]
                h.mul_(w)
                c.mul_(w)
            vals.append(h.sum(1))
            if grad:
                c = c.div_(z)  # h′ / L̂
                gm = ex.view(b, 2, n).mul_(c[:, None, :]).view(b, 2 * n) @ M.T
                gm[:, 2] = ee * c.sum(1)
                grads.append(gm)
        if not grad:
            return torch.cat(vals)
        return torch.cat(vals), torch.cat(grads)

    def fast_fn(theta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return chin(theta, rows, False)

    def vg(theta: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return chin(theta, rows, True)

    return fast_fn, vg


def _minimize(  # type: ignore[no-untyped-def]
    law,
    data,
    delta,
    starts,
    weights=None,
    chunk: int = 20_000,
    dtype=torch.float64,
    repeat: int = 1,
    **kw,
):
    """Batched L-BFGS from every row of ``starts`` (rows beyond ``chunk`` in pieces); with
    ``weights`` (replicates × points), start row ``i`` fits replicate ``i // repeat``."""
    xs, fs, cs = [], [], []
    chunk -= chunk % repeat  # a chunk holds whole replicates
    for i in range(0, starts.shape[0], chunk):
        w = None if weights is None else weights[i // repeat : (i + chunk) // repeat]
        fn, vg = _objective(law, data, delta, w, dtype, repeat)
        x0 = torch.from_numpy(starts[i : i + chunk]).to(dtype)
        res = batched_lbfgs(fn, x0, value_and_grad=vg, **kw)
        xs.append(res.x.double().numpy())
        fs.append(res.fun.double().numpy())
        cs.append(res.converged.numpy())
    return np.concatenate(xs), np.concatenate(fs), np.concatenate(cs)


def _evaluate(law: Law, data: ScalingData, delta: float, theta: np.ndarray) -> np.ndarray:
    """The objective in float64 at each row of ``theta``."""
    fn, _ = _objective(law, data, delta, None)
    rows = torch.arange(theta.shape[0])
    with torch.no_grad():
        return fn(torch.from_numpy(np.ascontiguousarray(theta)), rows).numpy()


def _polish_candidates(theta: np.ndarray, fun: np.ndarray, k: int = 16) -> np.ndarray:
    """Rows worth refining: the k best, plus every row within 1e-3 relative of the best."""
    finite = np.where(np.isfinite(fun), fun, np.inf)
    order = np.argsort(finite)
    best = finite[order[0]]
    near = np.flatnonzero(finite <= best * (1 + 1e-3) + 1e-300)
    return np.unique(np.concatenate([order[:k], near]))


def _distinct(theta: np.ndarray, fun: np.ndarray, k: int, tol: float = 1e-3) -> np.ndarray:
    """Up to k distinct minima (by parameters), best first."""
    order = np.argsort(fun)
    keep: list[int] = []
    for i in order:
        if not np.all(np.isfinite(theta[i])) or not np.isfinite(fun[i]):
            continue
        if all(
            np.max(np.abs(theta[i] - theta[j])) > tol * (1 + np.max(np.abs(theta[j]))) for j in keep
        ):
            keep.append(int(i))
        if len(keep) >= k:
            break
    return np.array(keep, dtype=np.int64)


@dataclass
class ScalingFit:
    """A fitted law: best parameters, diagnostics and (optionally) bootstrap replicates."""

    law: Law
    data: ScalingData
    theta: np.ndarray  # (P,) log-space parameters
    objective: float
    huber_delta: float
    n_starts: int
    converged_fraction: float
    minima: np.ndarray  # (K, P) distinct local minima, best first
    minima_objective: np.ndarray  # (K,)
    warnings: list[str] = field(default_factory=list)
    boot: np.ndarray | None = None  # (R, P) log-space replicates
    boot_weights: np.ndarray | None = None  # (R, n) resampling counts of each point
    cluster: str | None = None
    strata: str | None = None

    @property
    def params(self) -> dict[str, float]:
        return self.law.natural(self.theta)

    def predict(self, **inputs: Any) -> np.ndarray:
        logs = {
            k: torch.from_numpy(np.log(np.asarray(inputs[k], np.float64)).reshape(-1))
            for k in self.law.inputs
        }
        out = self.law.log_predict(torch.from_numpy(self.theta[None, :]), logs)
        return np.exp(out[0].numpy())

    def predict_interval(self, level: float = 0.95, **inputs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Percentile bootstrap interval of the predicted loss at ``inputs`` (each replicate
        is a refit on resampled points, so the interval carries the fit's uncertainty,
        extrapolation included)."""
        if self.boot is None or len(self.boot) == 0:
            raise UserError("no bootstrap replicates: fit with bootstrap > 0")
        logs = {
            k: torch.from_numpy(np.log(np.asarray(inputs[k], np.float64)).reshape(-1))
            for k in self.law.inputs
        }
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        with np.errstate(all="ignore"):  # a replicate may overflow: its prediction is inf
            reps = np.exp(self.law.log_predict(torch.from_numpy(self.boot), logs).numpy())
            return np.nanpercentile(reps, lo, 0), np.nanpercentile(reps, hi, 0)

    def _boot_natural(self) -> dict[str, np.ndarray]:
        if self.boot is None or len(self.boot) == 0:
            raise UserError("no bootstrap replicates: fit with bootstrap > 0")
        rows = [self.law.natural(t) for t in self.boot]
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}

    def stderr(self) -> dict[str, float]:
        """Bootstrap standard deviation of each natural parameter."""
        return {k: float(np.std(v, ddof=1)) for k, v in self._boot_natural().items()}

    def interval(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of each natural parameter."""
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        return {
            k: (float(np.percentile(v, lo)), float(np.percentile(v, hi)))
            for k, v in self._boot_natural().items()
        }

    def compute_optimal(
        self, compute: Any, level: float = 0.95, flops_per_param_token: float = 6.0
    ) -> dict[str, Any]:
        """N_opt(C), D_opt(C) and D/N for C = k·N·D (Hoffmann et al. 2022, eq. 4: k = 6 for
        a dense transformer's forward and backward pass; pass a counted k for your model),
        with bootstrap percentile intervals when replicates exist. Chinchilla law only."""
        if self.law.name != "chinchilla":
            raise UserError("compute-optimal allocation needs the chinchilla law")
        C = np.asarray(compute, dtype=np.float64).reshape(-1)
        if np.any(~np.isfinite(C) | (C <= 0)):
            raise UserError("compute budgets must be positive and finite")
        k = float(flops_per_param_token)
        if not (math.isfinite(k) and k > 0):
            raise UserError(f"flops_per_param_token must be positive, got {k!r}")

        def alloc(p: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
            a, b = p["alpha"], p["beta"]
            G = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
            return G * (C / k) ** (b / (a + b)), (C / k) ** (a / (a + b)) / G

        n_opt, d_opt = alloc(self.params)
        out: dict[str, Any] = {
            "C": C,
            "N_opt": n_opt,
            "D_opt": d_opt,
            "tokens_per_param": d_opt / n_opt,
        }
        if self.boot is not None and len(self.boot):
            lo, hi = 50 * (1 - level), 50 * (1 + level)
            # a degenerate replicate allocates inf or nan: it stays in the tails
            with np.errstate(all="ignore"):
                reps = [alloc(self.law.natural(t)) for t in self.boot]
                N = np.stack([r[0] for r in reps])
                D = np.stack([r[1] for r in reps])
                for key, arr in (("N_opt", N), ("D_opt", D), ("tokens_per_param", D / N)):
                    out[f"{key}_interval"] = (
                        np.nanpercentile(arr, lo, 0),
                        np.nanpercentile(arr, hi, 0),
                    )
        return out

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "law": self.law.name,
            "params": self.params,
            "log_params": dict(zip(self.law.params, map(float, self.theta), strict=True)),
            "objective": self.objective,
            "huber_delta": self.huber_delta,
            "points": self.data.n,
            "starts": self.n_starts,
            "converged_fraction": self.converged_fraction,
            "warnings": self.warnings,
        }
        if self.boot is not None and len(self.boot):
            d["bootstrap"] = {
                "replicates": len(self.boot),
                "cluster": self.cluster,
                "strata": self.strata,
                "stderr": self.stderr(),
                "interval95": self.interval(0.95),
            }
        return d


def _cluster_weights(
    labels: np.ndarray, reps: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """(reps, n) resampling counts: whole units (points sharing a label) drawn with
    replacement, as many as there are; with ``strata`` (one value per point, constant
    within a unit) within each stratum, as many as it holds."""
    uniq, inv = np.unique(labels, return_inverse=True)
    if strata is None:
        draws = rng.integers(0, uniq.size, (reps, uniq.size))
        counts = np.stack([np.bincount(d, minlength=uniq.size) for d in draws])  # (R, G)
        return counts[:, inv].astype(np.float64)
    of_unit = np.empty(uniq.size, dtype=np.asarray(strata).dtype)
    of_unit[inv] = strata
    counts = np.zeros((reps, uniq.size))
    for s in np.unique(of_unit):
        members = np.flatnonzero(of_unit == s)
        draws = rng.integers(0, members.size, (reps, members.size))
        for r in range(reps):
            counts[r, members] += np.bincount(draws[r], minlength=members.size)
    return counts[:, inv]


def _units(data: ScalingData, cluster: str | None, groups: Any) -> np.ndarray | None:
    """One resampling-unit label per point (None: every point its own unit)."""
    if groups is None:
        return None if cluster is None else np.asarray(data.inputs[cluster])
    if cluster is not None:
        raise UserError("give cluster (an input's values) or groups (labels), not both")
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != data.n:
        raise UserError(f"groups must hold one label per point ({data.n}), got shape {g.shape}")
    if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
        raise UserError("groups must be finite labels")
    return g


def _check_strata(units: np.ndarray | None, strata: np.ndarray, name: str, resampled: bool) -> None:
    """Every resampling unit (None: every point) must lie within one value of the strata
    input; when ``resampled``, some stratum must hold two units (else every replicate is
    the data)."""
    labels = np.arange(strata.size) if units is None else units
    per_stratum: dict[Any, set[Any]] = {}
    unit_stratum: dict[Any, Any] = {}
    for u, v in zip(labels.tolist(), strata.tolist(), strict=True):
        if unit_stratum.setdefault(u, v) != v:
            raise UserError(
                f"a resampling unit ({u!r}) spans several values of {name}: units must "
                "lie within one stratum"
            )
        per_stratum.setdefault(v, set()).add(u)
    if resampled and max(len(us) for us in per_stratum.values()) < 2:
        raise UserError(
            f"every value of {name} holds a single resampling unit: a bootstrap within "
            "strata would redraw the data unchanged"
        )


def fit_law(
    law: str | Law,
    loss: Any,
    *,
    huber_delta: float = 1e-3,
    starts: np.ndarray | None = None,
    bootstrap: int = 0,
    cluster: str | None = None,
    groups: Any = None,
    strata: str | None = None,
    bootstrap_starts: int = 8,
    seed: int = 0,
    max_iter: int = 2000,
    ftol: float = 1e-15,
    gtol: float = 1e-10,
    warn: bool = True,
    **inputs: Any,
) -> ScalingFit:
    """Fit a scaling law by Huber regression of log loss, from every start of a grid.

    Args:
        law: a family name (``chinchilla``, ``saturating``, ``kaplan``, ``bnsl``, ``bnsl2``…)
            or a :class:`~learnmech.laws.families.Law`.
        loss: observed losses; ``inputs`` the law's inputs by name (``N=…, D=…`` or ``x=…``).
        huber_delta: δ of the Huber loss on log L (Hoffmann et al. use 1e-3).
        starts: (G, P) start points in log-space parameters; default the law's grid.
        bootstrap: number of bootstrap replicates (0 = none).
        cluster: resample whole clusters of points sharing this input's value (e.g. "N").
        groups: resample whole groups of points sharing a label, one label per point (e.g.
            a run id: every checkpoint of one run together); instead of ``cluster``.
        strata: resample within each value of this input (e.g. "N"), as many units as the
            stratum holds, so every stratum stays in every replicate — the units are the
            groups, the clusters or single points. With a fixed design of a few model
            sizes, ``groups=run, strata="N"`` resamples seeds within each size; resampling
            the sizes themselves (``cluster="N"``) leaves most replicates with too few
            distinct sizes to identify the law (see ``ScalingFit.warnings``).
        bootstrap_starts: replicates start from this many distinct full-data minima
            (0: from the whole grid).
        max_iter, ftol, gtol: L-BFGS stopping rules per start (see
            :func:`~learnmech.laws.optim.batched_lbfgs`; scipy's defaults are ftol = 2.2e-9,
            gtol = 1e-5).
        warn: raise each diagnostic of ``ScalingFit.warnings`` as a ``UserWarning`` (they
            are recorded on the fit either way).
    """
    lw = get_law(law) if isinstance(law, str) else law
    data = ScalingData.from_arrays(lw, loss, **inputs)
    if not (math.isfinite(huber_delta) and huber_delta > 0):
        raise UserError(f"huber_delta must be positive, got {huber_delta!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise UserError(f"bootstrap must be a non-negative integer, got {bootstrap!r}")
    if cluster is not None and cluster not in data.inputs:
        raise UserError(f"cluster must name an input of {lw.name} ({', '.join(lw.inputs)})")
    if strata is not None and strata not in data.inputs:
        raise UserError(f"strata must name an input of {lw.name} ({', '.join(lw.inputs)})")
    units = _units(data, cluster, groups)
    if strata is not None:
        _check_strata(units, data.inputs[strata], strata, resampled=bool(bootstrap))
    grid = lw.starts() if starts is None else np.asarray(starts, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[1] != len(lw.params):
        raise UserError(f"starts must have shape (G, {len(lw.params)})")
    kw = {"max_iter": max_iter, "ftol": ftol, "gtol": gtol}
    # Phase 1 (float32, every start) screens; phase 2 (float64) polishes the best
    # candidates to the requested tolerances — see the module docstring.
    loose = {"max_iter": max_iter, "ftol": max(ftol, 1e-5), "gtol": max(gtol, 1e-5)}
    if bootstrap and bootstrap * data.n * 8 > BOOTSTRAP_BYTES:
        raise UserError(
            f"a bootstrap of {bootstrap} replicates over {data.n:,} points needs "
            f"{bootstrap * data.n * 8 / 2**30:.1f} GiB of resampling weights (limit "
            f"{BOOTSTRAP_BYTES / 2**30:g} GiB): use at most {BOOTSTRAP_BYTES // (8 * data.n)} "
            "replicates, or a cluster bootstrap of fewer groups"
        )
    # with many points the screen (every start) runs on a seeded random subsample: it only
    # picks which starts to polish, and the polish below sees every point
    screen = data
    if data.n > SCREEN_ROWS:
        pick = np.random.default_rng(seed).choice(data.n, SCREEN_ROWS, replace=False)
        mask = np.zeros(data.n, dtype=bool)
        mask[pick] = True
        screen = data.subset(mask)
    theta, _, conv = _minimize(lw, screen, huber_delta, grid, dtype=torch.float32, **loose)
    fun = _evaluate(lw, screen, huber_delta, theta)
    fun = np.where(np.isfinite(fun), fun, np.inf)
    cand = np.union1d(_polish_candidates(theta, fun), np.flatnonzero(~conv))
    t2, f2, c2 = _minimize(lw, data, huber_delta, theta[cand], **kw)
    if screen is data:
        better = f2 <= fun[cand]
        theta[cand[better]], fun[cand[better]] = t2[better], f2[better]
    else:  # only the polished starts have a full-data objective
        fun = np.full(fun.shape, np.inf)
        theta[cand], fun[cand] = t2, np.where(np.isfinite(f2), f2, np.inf)
    conv[cand] = c2
    keep = _distinct(theta, fun, max(bootstrap_starts, 1))
    if keep.size == 0:
        raise UserError("every start diverged; check the data and the start grid")
    best = int(keep[0])
    notes = _diagnose(lw, grid, theta, fun, best, keep)
    result = ScalingFit(
        law=lw,
        data=data,
        theta=theta[best],
        objective=float(fun[best]),
        huber_delta=huber_delta,
        n_starts=grid.shape[0],
        converged_fraction=float(np.mean(conv)),
        minima=theta[keep],
        minima_objective=fun[keep],
        warnings=notes,
        cluster=cluster if groups is None else "groups",
        strata=strata,
    )
    if bootstrap:
        rng = np.random.default_rng(seed)
        if units is None and strata is None:  # row by row: the same draws as one (R, n)
            W = np.empty((bootstrap, data.n))  # array, n× less memory
            for r in range(bootstrap):
                W[r] = np.bincount(rng.integers(0, data.n, data.n), minlength=data.n)
        else:
            labels = np.arange(data.n) if units is None else units
            W = _cluster_weights(
                labels, bootstrap, rng, None if strata is None else data.inputs[strata]
            )
        s0 = grid if bootstrap_starts == 0 else theta[keep]
        S = s0.shape[0]
        starts_b = np.tile(s0, (bootstrap, 1))
        tb, fb, _ = _minimize(
            lw, data, huber_delta, starts_b, weights=torch.from_numpy(W), repeat=S, **kw
        )
        fb = np.where(np.isfinite(fb), fb, np.inf).reshape(bootstrap, S)
        pick = np.argmin(fb, axis=1)
        result.boot = tb.reshape(bootstrap, S, -1)[np.arange(bootstrap), pick]
        result.boot_weights = W
        result.warnings += _tradeoffs(lw, result.boot)
        if cluster is not None and strata is None:
            result.warnings += _few_clusters(data.inputs[cluster], W, cluster)
    for w in result.warnings if warn else ():
        warnings.warn(w, UserWarning, stacklevel=2)
    return result


def _diagnose(
    law: Law, grid: np.ndarray, theta: np.ndarray, fun: np.ndarray, best: int, keep: np.ndarray
) -> list[str]:
    notes = []
    lo, hi = grid.min(0), grid.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    t = theta[best]
    for j, name in enumerate(law.params):
        if t[j] < lo[j] - 0.01 * span[j] or t[j] > hi[j] + 0.01 * span[j]:
            notes.append(
                f"fitted {name} = {t[j]:.4g} lies outside the start grid [{lo[j]:g}, {hi[j]:g}]: "
                "the optimum may be poorly identified; widen the grid"
            )
    if keep.size > 1:
        f0 = fun[keep[0]]
        for i in keep[1:]:
            if fun[i] <= f0 * (1 + 1e-6) + 1e-15:
                diff = np.max(np.abs(theta[i] - theta[keep[0]]) / (1 + np.abs(theta[keep[0]])))
                notes.append(
                    "another start reaches the same objective with different parameters "
                    f"(relative difference {diff:.2g}): the fit is not identifiable"
                )
                break
    return notes


#: a power law in the cluster's input (level, coefficient, exponent) needs this many
#: distinct values of it
IDENTIFY = 3


def _few_clusters(labels: np.ndarray, W: np.ndarray, name: str) -> list[str]:
    """A cluster bootstrap over few clusters (Cameron, Gelbach & Miller 2008: it is
    unreliable with few clusters): the share of replicates that drew fewer than
    ``IDENTIFY`` distinct clusters, in which a power law in ``name`` is not identified
    and the refit drifts along its flat direction. Noted when that share exceeds 2.5%:
    then one tail of a 95% percentile interval can be made of such replicates alone."""
    uniq = np.unique(labels)
    if uniq.size < IDENTIFY:
        return []
    drawn = np.stack([(W[:, labels == u] > 0).any(1) for u in uniq], 1).sum(1)
    share = float(np.mean(drawn < IDENTIFY))
    if share <= 0.025:
        return []
    return [
        f"cluster bootstrap over only {uniq.size} values of {name}: {share:.0%} of the "
        f"{len(W)} replicates drew fewer than {IDENTIFY} distinct ones, where the law's "
        f"dependence on {name} is not identified; intervals then reflect that, not "
        "sampling noise alone (a cluster bootstrap needs many clusters: Cameron, Gelbach "
        "& Miller 2008)"
    ]


def _tradeoffs(law: Law, boot: np.ndarray) -> list[str]:
    notes: list[str] = []
    if boot.shape[0] < 10:
        return notes
    nat = [law.natural(t) for t in boot]
    for k in nat[0]:
        v = np.array([r[k] for r in nat])
        med = float(np.median(np.abs(v)))
        spread = float(np.subtract(*np.percentile(v, [84, 16]))) / 2  # robust σ
        if med > 0 and spread > 0.5 * med:
            notes.append(
                f"{k} is poorly determined: bootstrap spread ±{spread:.3g} around {med:.3g} "
                "(more than 50%); the data do not constrain it, e.g. they never approach "
                "the regime where it matters"
            )
    with np.errstate(all="ignore"):
        corr = np.corrcoef(boot.T)
    P = len(law.params)
    checked = set(law.checked or law.params)
    for i in range(P):
        for j in range(i + 1, P):
            if law.params[i] not in checked or law.params[j] not in checked:
                continue
            if np.isfinite(corr[i, j]) and abs(corr[i, j]) > 0.95:
                notes.append(
                    f"{law.params[i]} and {law.params[j]} trade off (bootstrap correlation "
                    f"{corr[i, j]:+.3f}): the data fix a combination of them, so their "
                    "errors are not independent; quote intervals of derived quantities "
                    "(e.g. compute-optimal allocations) rather than combining single ones"
                )
    return notes


def extrapolation_score(
    law: str | Law,
    loss: Any,
    *,
    holdout: int = 1,
    by: str | None = None,
    huber_delta: float = 1e-3,
    starts: np.ndarray | None = None,
    warn: bool = True,
    **inputs: Any,
) -> dict[str, Any]:
    """Fit on the smaller runs, score on the largest (leave-largest-out).

    The ``holdout`` largest distinct values of input ``by`` (default: the first input, e.g.
    N) are held out; the law is fitted on the rest and its predictions on the held-out runs
    are scored: mean and max |L̂/L − 1| and RMSE of log L. This is the number to look at
    before trusting an extrapolation.
    """
    lw = get_law(law) if isinstance(law, str) else law
    data = ScalingData.from_arrays(lw, loss, **inputs)
    key = by or lw.inputs[0]
    if key not in data.inputs:
        raise UserError(f"by must name an input of {lw.name} ({', '.join(lw.inputs)})")
    values = np.unique(data.inputs[key])
    if holdout < 1 or holdout >= values.size:
        raise UserError(f"holdout must be between 1 and {values.size - 1} distinct {key} values")
    cut = values[-holdout]
    train = data.inputs[key] < cut
    tr, te = data.subset(train), data.subset(~train)
    f = fit_law(lw, tr.loss, huber_delta=huber_delta, starts=starts, warn=warn, **tr.inputs)
    pred = f.predict(**te.inputs)
    rel = pred / te.loss - 1
    return {
        "law": lw.name,
        "held_out_by": key,
        "threshold": float(cut),
        "train_points": tr.n,
        "test_points": te.n,
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "rmse_log": float(np.sqrt(np.mean(np.log(pred / te.loss) ** 2))),
        "fit": f,
        "predicted": pred,
        "observed": te.loss,
        "test_inputs": te.inputs,
    }
