"""Representation similarity that tells the truth: estimator identity, chance level, interval.

Universality claims ("networks trained differently learn similar representations") rest on
similarity scores whose verdict depends on the metric (REFERENCES §5), so every score here
says which estimator produced it, and :func:`similarity` can add its chance level (a
permutation null: the same score with the samples of one side shuffled) and a bootstrap
interval.

Metrics (``x``: (n, d₁), ``y``: (n, d₂), rows are the same n samples in the same order):

* **Linear CKA** (Kornblith, Norouzi, Lee & Hinton 2019, eq. 4–5):
  HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) with K = XXᵀ, L = YYᵀ. Biased: HSIC = tr(K̄L̄) with
  centred Grams (eq. 3, up to 1/(n−1)², which cancels). Debiased: Song et al. 2012's
  unbiased HSIC estimator (their eq. 5), as in Kornblith et al.'s reference code. Computed
  in feature space (d×d products, cost n·(d₁+d₂)²) or Gram space (n×n, cost n²·(d₁+d₂)),
  whichever is cheaper; both give the same number. Means are subtracted; the n×n centring
  matrix H is never formed.
* **RBF CKA** (Kornblith et al. 2019, §3): Gaussian kernel with σ² = threshold² × the median
  squared distance (their code's convention), then the same HSIC ratio.
* **Mutual kNN** (Huh, Cheung, Wang & Isola 2024, "The Platonic Representation
  Hypothesis", §2): mean over samples of |N_k^X(i) ∩ N_k^Y(i)|/k, neighbours by cosine
  similarity (their default; ``metric="euclidean"`` also), self excluded. Chance level of
  two unrelated neighbourhoods: k/(n−1).
* **CKNNA** (Huh et al. 2024, eq. 3): CKA restricted to pairs (i, j) that are k-nearest
  neighbours in both spaces, with the unbiased HSIC (their reference code, without its
  1e-6 in the denominator).
* **Orthogonal Procrustes distance** (Ding, Denain & Steinhardt 2021, eq. 2): after
  centring and scaling each to unit Frobenius norm, min_R ‖X − YR‖²_F = 2 − 2‖XᵀY‖_*.
* **SVCCA** (Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017): keep the top singular
  directions of each side explaining ``keep`` of the variance (or a fixed count), then the
  mean canonical correlation between them.

Sample alignment: wrap features in :class:`Activations` with sample ids (or
:meth:`Activations.from_inputs`, a hash of each input row); comparing two wraps whose ids
differ is refused, and :meth:`Activations.align` reorders one to match the other.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.model_io import (
    ModelMode,
    call,
    check_mode,
    in_mode,
    n_rows,
    prediction,
    take,
    to_device,
)

__all__ = [
    "METRICS",
    "Activations",
    "LayerSimilarity",
    "Score",
    "StreamingLinearCKA",
    "cknna",
    "gram_cka",
    "layer_similarity",
    "linear_cka",
    "mutual_knn",
    "procrustes_distance",
    "rbf_cka",
    "similarity",
    "svcca",
]

ArrayLike = Any


# --------------------------------------------------------------------------------------
# inputs and alignment


@dataclass
class Activations:
    """Features of n samples (rows) with the samples' ids, so misaligned rows are caught.

    ``ids``: one id per row (ints or strings); :meth:`from_inputs` derives them from the
    inputs themselves (a hash of each input row), so two models run on the same inputs in
    a different order are detected.
    """

    values: ArrayLike
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = _n_rows(self.values)
        if self.ids is not None:
            self.ids = np.asarray(self.ids)
            if self.ids.ndim != 1 or self.ids.size != n:
                raise UserError(
                    f"ids must be one per row: {n} rows but ids of shape {self.ids.shape}"
                )
            if np.unique(self.ids).size != n:
                raise UserError("ids must be unique (a repeated id cannot be aligned)")

    @classmethod
    def from_inputs(cls, values: ArrayLike, inputs: ArrayLike) -> Activations:
        """Ids from a SHA-1 of each input row (the inputs that produced ``values``)."""
        a = _to_numpy(inputs)
        a = np.ascontiguousarray(a.reshape(a.shape[0], -1))
        ids = np.array([hashlib.sha1(r.tobytes()).hexdigest()[:16] for r in a])
        return cls(values, ids)

    def align(self, other: Activations) -> Activations:
        """These features reordered to ``other``'s sample order (both need ids)."""
        if self.ids is None or other.ids is None:
            raise UserError("align needs ids on both sides")
        pos = {k: i for i, k in enumerate(self.ids.tolist())}
        missing = [k for k in other.ids.tolist() if k not in pos]
        if missing:
            raise UserError(
                f"{len(missing)} of the other side's samples are not here (first: {missing[0]!r})"
            )
        order = np.array([pos[k] for k in other.ids.tolist()])
        v = self.values
        v = v[torch.from_numpy(order)] if isinstance(v, torch.Tensor) else np.asarray(v)[order]
        return Activations(v, self.ids[order])


def _n_rows(v: ArrayLike) -> int:
    shape = getattr(v, "shape", None)
    if shape is None:
        raise UserError(f"features must be an array or tensor, got {type(v).__name__}")
    if len(shape) < 1 or shape[0] == 0:
        raise UserError(f"features must have at least one row, got shape {tuple(shape)}")
    return int(shape[0])


def _to_numpy(v: ArrayLike) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _as_matrix(v: ArrayLike, name: str, dtype: torch.dtype, device: Any = None) -> torch.Tensor:
    if isinstance(v, Activations):
        v = v.values
    if isinstance(v, torch.Tensor):
        t = v.detach()
    else:
        try:
            arr = np.asarray(v)
        except Exception as err:  # pragma: no cover - numpy raises many kinds
            raise UserError(f"{name}: cannot read features: {err}") from None
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise UserError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        t = t.reshape(t.shape[0], -1)
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise UserError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(device=device or t.device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise UserError(f"{name} contains NaN or inf")
    return t


def _pair(
    x: ArrayLike, y: ArrayLike, dtype: torch.dtype, min_n: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides as (n, d) tensors of ``dtype``, after the alignment checks."""
    if isinstance(x, Activations) and isinstance(y, Activations):
        if x.ids is not None and y.ids is not None and not np.array_equal(x.ids, y.ids):
            if set(x.ids.tolist()) == set(y.ids.tolist()):
                raise UserError(
                    "x and y hold the same samples in a different order; "
                    "reorder one with x.align(y)"
                )
            raise UserError("x and y are features of different samples (their ids differ)")
    X = _as_matrix(x, "x", dtype)
    Y = _as_matrix(y, "y", dtype, X.device)
    if X.shape[0] != Y.shape[0]:
        raise UserError(f"x and y need the same samples: {X.shape[0]} rows vs {Y.shape[0]}")
    if X.shape[0] < min_n:
        raise UserError(f"need at least {min_n} samples, got {X.shape[0]}")
    return X, Y


# --------------------------------------------------------------------------------------
# CKA


def _center_(X: torch.Tensor) -> torch.Tensor:
    return X - X.mean(0, keepdim=True)


def _debias(xty: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, n: int) -> torch.Tensor:
    """n(n−3)·HSIC_unbiased from the feature-space pieces (Kornblith et al.'s helper):
    ‖XᵀY‖² − n/(n−2)·Σᵢ‖xᵢ‖²‖yᵢ‖² + ‖X‖²‖Y‖²/((n−1)(n−2)), X, Y centred; rx, ry: the
    squared row norms."""
    return xty - n / (n - 2) * (rx @ ry) + rx.sum() * ry.sum() / ((n - 1) * (n - 2))


def _gram_center_(K: torch.Tensor, debiased: bool) -> torch.Tensor:
    """Centre a Gram matrix in place: K − row means − column means + grand mean (biased),
    or the U-centring of Székely & Rizzo 2014 (debiased, zero diagonal), for which
    ⟨Ũ_K, Ũ_L⟩ = n(n−3)·HSIC_unbiased(K, L) (Song et al. 2012)."""
    n = K.shape[0]
    if debiased:
        K.fill_diagonal_(0)
        means = K.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        K -= means[:, None]
        K -= means[None, :]
        K.fill_diagonal_(0)
    else:
        means = K.mean(0)
        K -= means[:, None]
        K -= means[None, :]
        K += means.mean()
    return K


def _cka_from_grams(K: torch.Tensor, L: torch.Tensor, debiased: bool) -> float:
    Kc = _gram_center_(K, debiased)
    Lc = _gram_center_(L, debiased)
    num = (Kc * Lc).sum()
    den = torch.sqrt((Kc * Kc).sum() * (Lc * Lc).sum())
    return _ratio(num, den)


def gram_cka(
    k: ArrayLike, l: ArrayLike, *, debiased: bool = False, dtype: torch.dtype = torch.float64
) -> float:
    """CKA between two n×n kernel (Gram) matrices on the same samples — e.g. a finite
    network's empirical kernel against its infinite-width NNGP (kernel alignment with
    centring, Cortes, Mohri & Rostamizadeh 2012; Kornblith et al. 2019)."""
    K, L = _pair(k, l, dtype, min_n=4 if debiased else 2)
    if K.shape[0] != K.shape[1] or L.shape != K.shape:
        raise UserError(
            f"gram_cka needs two square matrices of the same size, got "
            f"{tuple(K.shape)} and {tuple(L.shape)}"
        )
    return _cka_from_grams(K.clone(), L.clone(), debiased)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    d = float(den)
    if not d > 0:
        return float("nan")  # a constant representation: CKA undefined
    return float(num) / d


def _space(n: int, d1: int, d2: int, space: str) -> str:
    if space not in ("auto", "feature", "gram"):
        raise UserError(f"space must be 'auto', 'feature' or 'gram', got {space!r}")
    if space != "auto":
        return space
    return "feature" if (d1 + d2) ** 2 <= n * (d1 + d2) else "gram"


def linear_cka(
    x: ArrayLike,
    y: ArrayLike,
    *,
    debiased: bool = False,
    space: Literal["auto", "feature", "gram"] = "auto",
    dtype: torch.dtype = torch.float64,
) -> float:
    """Linear CKA (Kornblith et al. 2019, eq. 5), biased or debiased (Song et al. 2012).

    ``space``: ``"feature"`` uses XᵀY (d₁×d₂), ``"gram"`` uses XXᵀ (n×n); ``"auto"`` picks
    the cheaper. Both give the same value.
    """
    X, Y = _pair(x, y, dtype, min_n=4 if debiased else 2)
    return _linear_cka(X, Y, debiased, _space(X.shape[0], X.shape[1], Y.shape[1], space))


def _linear_cka(X: torch.Tensor, Y: torch.Tensor, debiased: bool, space: str) -> float:
    n = X.shape[0]
    X, Y = _center_(X), _center_(Y)
    if space == "gram":
        return _cka_from_grams(X @ X.T, Y @ Y.T, debiased)
    xty = (X.T @ Y).square().sum()
    xtx = (X.T @ X).square().sum()
    yty = (Y.T @ Y).square().sum()
    if debiased:
        rx, ry = X.square().sum(1), Y.square().sum(1)
        xty, xtx, yty = _debias(xty, rx, ry, n), _debias(xtx, rx, rx, n), _debias(yty, ry, ry, n)
    return _ratio(xty, torch.sqrt(xtx * yty))


def _rbf_gram(X: torch.Tensor, threshold: float) -> torch.Tensor:
    sq = X.square().sum(1)
    D = (sq[:, None] + sq[None, :] - 2 * (X @ X.T)).clamp_(min=0)
    med = float(D.median())
    if not med > 0:
        raise UserError("RBF CKA: the median squared distance is 0 (most samples coincide)")
    return D.mul_(-1.0 / (2 * threshold**2 * med)).exp_()


def rbf_cka(
    x: ArrayLike,
    y: ArrayLike,
    *,
    threshold: float = 1.0,
    debiased: bool = False,
    dtype: torch.dtype = torch.float64,
) -> float:
    """RBF-kernel CKA (Kornblith et al. 2019, §3): σ² = threshold² · median squared
    distance, computed per representation (median over all n² pairs, as their code)."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise UserError(f"threshold must be a positive number, got {threshold!r}")
    X, Y = _pair(x, y, dtype, min_n=4 if debiased else 2)
    return _cka_from_grams(_rbf_gram(X, threshold), _rbf_gram(Y, threshold), debiased)


class StreamingLinearCKA:
    """Exact full-data linear CKA (biased and debiased) from minibatches.

    Accumulates, in float64, the sums that the centred feature-space formula expands into
    (Σx, Σy, ΣxxᵀΣ, Σxyᵀ, Σyyᵀ and the squared-row-norm moments the debiased estimator
    needs), so :meth:`value` equals :func:`linear_cka` on the concatenated data up to
    rounding, whatever the batch sizes and however many batches. Memory: (d₁ + d₂)².
    """

    def __init__(self) -> None:
        self.n = 0
        self._s: dict[str, torch.Tensor] = {}

    def update(self, x: ArrayLike, y: ArrayLike) -> StreamingLinearCKA:
        X, Y = _pair(x, y, torch.float64, min_n=1)
        u, v = X.square().sum(1), Y.square().sum(1)
        parts = {
            "sx": X.sum(0),
            "sy": Y.sum(0),
            "xx": X.T @ X,
            "yy": Y.T @ Y,
            "xy": X.T @ Y,
            "u": u.sum(),
            "v": v.sum(),
            "uu": u @ u,
            "vv": v @ v,
            "uv": u @ v,
            "ux": u @ X,
            "vy": v @ Y,
            "uy": u @ Y,
            "vx": v @ X,
        }
        if self._s:
            if parts["xy"].shape != self._s["xy"].shape:
                raise UserError(
                    f"batch feature sizes {tuple(parts['xy'].shape)} differ from "
                    f"earlier batches {tuple(self._s['xy'].shape)}"
                )
            for k, t in parts.items():
                self._s[k] += t
        else:
            self._s = parts
        self.n += X.shape[0]
        return self

    def value(self, debiased: bool = False) -> float:
        n = self.n
        if n < (4 if debiased else 2):
            raise UserError(f"need at least {4 if debiased else 2} samples, got {n}")
        s = self._s
        mx, my = s["sx"] / n, s["sy"] / n

        cxy = s["xy"] - n * torch.outer(mx, my)
        cxx = s["xx"] - n * torch.outer(mx, mx)
        cyy = s["yy"] - n * torch.outer(my, my)
        xty, xtx, yty = cxy.square().sum(), cxx.square().sum(), cyy.square().sum()
        if debiased:
            # centred squared row norms: r_i = uᵢ − 2xᵢᵀμx + ‖μx‖² (same for y)
            ax, ay = mx @ mx, my @ my
            rx_sum = s["u"] - n * ax
            ry_sum = s["v"] - n * ay

            def cross(
                uv: torch.Tensor,
                uy: torch.Tensor,
                vx: torch.Tensor,
                xy: torch.Tensor,
                u: torch.Tensor,
                v: torch.Tensor,
                sx: torch.Tensor,
                sy: torch.Tensor,
                m1: torch.Tensor,
                m2: torch.Tensor,
                a1: torch.Tensor,
                a2: torch.Tensor,
            ) -> torch.Tensor:
                # Σᵢ (uᵢ − 2xᵢᵀm1 + a1)(vᵢ − 2yᵢᵀm2 + a2)
                return (
                    uv
                    - 2 * (uy @ m2)
                    + a2 * u
                    - 2 * (vx @ m1)
                    + 4 * (m1 @ xy @ m2)
                    - 2 * a2 * (sx @ m1)
                    + a1 * v
                    - 2 * a1 * (sy @ m2)
                    + n * a1 * a2
                )

            rxry = cross(
                s["uv"], s["uy"], s["vx"], s["xy"], s["u"], s["v"], s["sx"], s["sy"], mx, my, ax, ay
            )
            rxrx = cross(
                s["uu"], s["ux"], s["ux"], s["xx"], s["u"], s["u"], s["sx"], s["sx"], mx, mx, ax, ax
            )
            ryry = cross(
                s["vv"], s["vy"], s["vy"], s["yy"], s["v"], s["v"], s["sy"], s["sy"], my, my, ay, ay
            )

            def deb(
                t: torch.Tensor, rr: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor
            ) -> torch.Tensor:
                return t - n / (n - 2) * rr + r1 * r2 / ((n - 1) * (n - 2))

            xty = deb(xty, rxry, rx_sum, ry_sum)
            xtx = deb(xtx, rxrx, rx_sum, rx_sum)
            yty = deb(yty, ryry, ry_sum, ry_sum)
        return _ratio(xty, torch.sqrt(xtx * yty))


# --------------------------------------------------------------------------------------
# neighbourhood metrics


def _knn(X: torch.Tensor, k: int, metric: str, block: int = 2048) -> torch.Tensor:
    """Indices (n, k) of each row's k nearest other rows, computed in row blocks."""
    if metric == "cosine":
        Z = X / X.norm(dim=1, keepdim=True).clamp_min(1e-300)
    elif metric == "euclidean":
        Z = X
        sq = X.square().sum(1)
    else:
        raise UserError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    n = X.shape[0]
    out = torch.empty(n, k, dtype=torch.long)
    for i in range(0, n, block):
        S = Z[i : i + block] @ Z.T  # similarity (cosine) or −½·distance² + const
        if metric == "euclidean":
            S = S - 0.5 * sq[None, :]
        r = torch.arange(i, min(i + block, n))
        S[r - i, r] = -math.inf  # self excluded
        out[i : i + block] = S.topk(k, dim=1).indices
    return out


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"k must be a positive integer, got {k!r}")
    if k >= n:
        raise UserError(f"k must be smaller than the number of samples ({n}), got {k}")
    return k


def _mutual_knn_per_sample(X: torch.Tensor, Y: torch.Tensor, k: int, metric: str) -> np.ndarray:
    a, b = _knn(X, k, metric), _knn(Y, k, metric)
    # overlap of two k-sets per row: sort both, count matches via broadcasting (k is small)
    hit = (a[:, :, None] == b[:, None, :]).any(2).sum(1)
    return (hit.double() / k).numpy()


def mutual_knn(
    x: ArrayLike,
    y: ArrayLike,
    *,
    k: int = 10,
    metric: Literal["cosine", "euclidean"] = "cosine",
    dtype: torch.dtype = torch.float64,
) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024, §2): the mean fraction of
    each sample's k neighbours shared by both spaces. Chance level k/(n − 1)."""
    X, Y = _pair(x, y, dtype, min_n=2)
    _check_k(k, X.shape[0])
    return float(_mutual_knn_per_sample(X, Y, k, metric).mean())


def _hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Song et al. 2012, eq. 5 (the form of Huh et al.'s code)."""
    m = K.shape[0]
    Kt = K.clone().fill_diagonal_(0)
    Lt = L.clone().fill_diagonal_(0)
    return (
        (Kt * Lt.T).sum()
        + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
        - 2 * (Kt.sum(0) @ Lt.sum(1)) / (m - 2)
    ) / (m * (m - 3))


def cknna(
    x: ArrayLike,
    y: ArrayLike,
    *,
    k: int = 10,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Centred kernel nearest-neighbour alignment (Huh et al. 2024, eq. 3): CKA with the
    unbiased HSIC restricted to pairs that are k-nearest neighbours (by inner product, on
    unit-normalised features, as their code) in both spaces. Needs n×n memory."""
    X, Y = _pair(x, y, dtype, min_n=5)
    n = X.shape[0]
    _check_k(k, n)
    if k < 2:
        raise UserError("cknna needs k >= 2")
    X = X / X.norm(dim=1, keepdim=True).clamp_min(1e-300)
    Y = Y / Y.norm(dim=1, keepdim=True).clamp_min(1e-300)
    K, L = X @ X.T, Y @ Y.T

    def masked(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        ia = A.clone().fill_diagonal_(-math.inf).topk(k, dim=1).indices
        ib = B.clone().fill_diagonal_(-math.inf).topk(k, dim=1).indices
        ma = torch.zeros_like(A).scatter_(1, ia, 1.0)
        mb = torch.zeros_like(B).scatter_(1, ib, 1.0)
        m = ma * mb
        return _hsic_unbiased(m * A, m * B)

    return _ratio(masked(K, L), torch.sqrt(masked(K, K) * masked(L, L)))


# --------------------------------------------------------------------------------------
# rotation-based metrics


def _unit_centered(X: torch.Tensor) -> torch.Tensor:
    X = _center_(X)
    nrm = X.norm()
    if not float(nrm) > 0:
        raise UserError("a representation is constant across samples (zero after centring)")
    return X / nrm


def procrustes_distance(x: ArrayLike, y: ArrayLike, *, dtype: torch.dtype = torch.float64) -> float:
    """Orthogonal Procrustes distance (Ding et al. 2021, eq. 2) between the centred,
    unit-Frobenius-norm representations: 2 − 2‖XᵀY‖_* ∈ [0, 2] (0: equal up to rotation
    and scale). Different widths are fine (R is d₂×d₁ with orthonormal columns)."""
    X, Y = _pair(x, y, dtype, min_n=2)
    X, Y = _unit_centered(X), _unit_centered(Y)
    M = X.T @ Y if X.shape[0] >= max(X.shape[1], Y.shape[1]) else None
    if M is None:  # fewer samples than features: the nuclear norm via the n×n Grams
        s = torch.linalg.svdvals(_sqrtm_psd(X @ X.T) @ _sqrtm_psd(Y @ Y.T))
    else:
        s = torch.linalg.svdvals(M)
    return max(0.0, 2.0 - 2.0 * float(s.sum()))


def _sqrtm_psd(A: torch.Tensor) -> torch.Tensor:
    w, V = torch.linalg.eigh(A)
    return (V * w.clamp_min(0).sqrt()) @ V.T


def _top_directions(X: torch.Tensor, keep: float | int) -> torch.Tensor:
    """Projections of the centred X onto its top singular directions (SVCCA step 1)."""
    U, s, _ = torch.linalg.svd(_center_(X), full_matrices=False)
    if isinstance(keep, int) and not isinstance(keep, bool):
        r = keep
    else:
        var = s.square()
        frac = torch.cumsum(var, 0) / var.sum()
        r = int(torch.searchsorted(frac, torch.tensor(float(keep), dtype=frac.dtype))) + 1
    r = max(1, min(r, int((s > s[0] * 1e-12).sum())))
    return U[:, :r] * s[:r]


def svcca(
    x: ArrayLike,
    y: ArrayLike,
    *,
    keep: float | int = 0.99,
    dtype: torch.dtype = torch.float64,
) -> float:
    """SVCCA (Raghu et al. 2017): reduce each side to the top singular directions holding
    ``keep`` of its variance (or exactly ``keep`` directions if an int), then the mean of
    the canonical correlations between the two reduced representations (CCA via the
    singular values of Q_xᵀQ_y, Q from thin QR of each centred side)."""
    if isinstance(keep, bool) or not (
        (isinstance(keep, int) and keep >= 1) or (isinstance(keep, float) and 0 < keep <= 1)
    ):
        raise UserError(f"keep must be a variance fraction in (0, 1] or a count >= 1, got {keep!r}")
    X, Y = _pair(x, y, dtype, min_n=3)
    A, B = _top_directions(X, keep), _top_directions(Y, keep)
    if max(A.shape[1], B.shape[1]) >= X.shape[0]:
        raise UserError(
            f"SVCCA needs more samples ({X.shape[0]}) than kept directions "
            f"({A.shape[1]}, {B.shape[1]})"
        )
    qa, _ = torch.linalg.qr(_center_(A))
    qb, _ = torch.linalg.qr(_center_(B))
    rho = torch.linalg.svdvals(qa.T @ qb).clamp(0, 1)
    return float(rho.mean())


# --------------------------------------------------------------------------------------
# scores with chance levels and intervals


@dataclass
class Score:
    """A similarity value with what produced it, its chance level and an interval."""

    value: float
    metric: str
    estimator: str
    n: int
    chance: float | None = None  # mean of the permutation null
    chance_sd: float | None = None
    p_value: float | None = None  # (1 + #null ≥ value)/(1 + permutations)
    permutations: int = 0
    interval: tuple[float, float] | None = None
    level: float | None = None
    bootstrap: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def above_chance(self) -> float | None:
        """(value − chance)/chance_sd: how many null standard deviations above chance."""
        if self.chance is None or not self.chance_sd:
            return None
        return (self.value - self.chance) / self.chance_sd

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "estimator": self.estimator,
            "n": self.n,
            "chance": self.chance,
            "chance_sd": self.chance_sd,
            "p_value": self.p_value,
            "permutations": self.permutations,
            "interval": list(self.interval) if self.interval else None,
            "level": self.level,
            "bootstrap": self.bootstrap,
            **self.extra,
        }


def _metric_table() -> dict[str, tuple[Callable[..., float], str, bool]]:
    """name → (function on tensors, estimator description, higher is more similar)."""
    return {
        "linear_cka": (linear_cka, "linear CKA, biased HSIC (Kornblith et al. 2019 eq. 5)", True),
        "linear_cka_debiased": (
            lambda x, y, **o: linear_cka(x, y, debiased=True, **o),
            "linear CKA, unbiased HSIC (Song et al. 2012 eq. 5)",
            True,
        ),
        "rbf_cka": (rbf_cka, "RBF CKA, σ² = threshold²·median d², biased HSIC", True),
        "rbf_cka_debiased": (
            lambda x, y, **o: rbf_cka(x, y, debiased=True, **o),
            "RBF CKA, σ² = threshold²·median d², unbiased HSIC",
            True,
        ),
        "mutual_knn": (mutual_knn, "mutual k-NN overlap (Huh et al. 2024)", True),
        "cknna": (cknna, "CKNNA, unbiased HSIC on mutual k-NN pairs (Huh et al. 2024 eq. 3)", True),
        "procrustes": (
            procrustes_distance,
            "orthogonal Procrustes distance 2 − 2‖XᵀY‖_* (Ding et al. 2021)",
            False,
        ),
        "svcca": (svcca, "SVCCA mean canonical correlation (Raghu et al. 2017)", True),
    }


METRICS: tuple[str, ...] = tuple(_metric_table())


def similarity(
    x: ArrayLike,
    y: ArrayLike,
    metric: str = "linear_cka",
    *,
    permutations: int = 0,
    bootstrap: int = 0,
    level: float = 0.95,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    **options: Any,
) -> Score:
    """One similarity score with its estimator, chance level and bootstrap interval.

    Args:
        metric: one of :data:`METRICS`.
        permutations: size of the permutation null (rows of ``y`` shuffled, breaking the
            sample correspondence): its mean is the chance level, and ``p_value`` the
            one-sided permutation p-value (for ``procrustes``, a distance, "as extreme"
            means as small).
        bootstrap: resamples of the samples (with replacement) for a percentile interval.
            For ``mutual_knn`` the per-sample overlaps are resampled (duplicated samples
            would be each other's neighbours); ``cknna`` has no bootstrap.
        options: passed to the metric (``k``, ``threshold``, ``keep``, ``space``…).
    """
    table = _metric_table()
    if metric not in table:
        raise UserError(f"unknown metric {metric!r}; expected one of {', '.join(table)}")
    for name, v in (("permutations", permutations), ("bootstrap", bootstrap)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"{name} must be a non-negative integer, got {v!r}")
    if not (0 < level < 1):
        raise UserError(f"level must be in (0, 1), got {level!r}")
    fn, desc, higher = table[metric]
    X, Y = _pair(x, y, dtype, min_n=2)
    n = X.shape[0]
    value = fn(X, Y, dtype=dtype, **options)
    space = ""
    if metric.startswith("linear_cka"):
        space = _space(n, X.shape[1], Y.shape[1], options.get("space", "auto"))
        desc += f", {space} space"
    score = Score(value, metric, f"{desc}, {str(dtype).removeprefix('torch.')}", n)
    gen = torch.Generator().manual_seed(seed)
    if permutations:
        null = np.array(
            [
                fn(X, Y[torch.randperm(n, generator=gen)], dtype=dtype, **options)
                for _ in range(permutations)
            ]
        )
        score.chance = float(null.mean())
        score.chance_sd = float(null.std(ddof=1)) if permutations > 1 else None
        extreme = (null >= value) if higher else (null <= value)
        score.p_value = float((1 + extreme.sum()) / (1 + permutations))
        score.permutations = permutations
        if metric == "mutual_knn":
            score.extra["chance_exact"] = options.get("k", 10) / (n - 1)
    if bootstrap:
        if metric == "cknna":
            raise UserError(
                "bootstrap is not available for cknna (duplicated samples would "
                "be each other's nearest neighbours); use permutations"
            )
        if metric == "mutual_knn":
            per = _mutual_knn_per_sample(
                X, Y, _check_k(options.get("k", 10), n), options.get("metric", "cosine")
            )
            idx = torch.randint(0, n, (bootstrap, n), generator=gen).numpy()
            boots = per[idx].mean(1)
        else:
            boots = np.array(
                [
                    fn(X[i], Y[i], dtype=dtype, **options)
                    for i in torch.randint(0, n, (bootstrap, n), generator=gen)
                ]
            )
        a = (1 - level) / 2
        score.interval = (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))
        score.level, score.bootstrap = level, bootstrap
    return score


# --------------------------------------------------------------------------------------
# layer × layer


@dataclass
class LayerSimilarity:
    """Similarity of every layer of model A (rows) with every layer of model B (columns)."""

    matrix: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    metric: str
    estimator: str
    n: int
    #: default layers left out, with the reason (e.g. a module called twice per pass)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "matrix": self.matrix.tolist(),
            "layers_a": self.layers_a,
            "layers_b": self.layers_b,
            "metric": self.metric,
            "estimator": self.estimator,
            "n": self.n,
            "skipped": self.skipped,
        }


_SKIP = (nn.Dropout, nn.Identity)


def _default_layers(model: nn.Module) -> list[str]:
    """Leaf modules that compute something (no Dropout/Identity), in registration order."""
    names = [
        n
        for n, m in model.named_modules()
        if n and not any(True for _ in m.children()) and not isinstance(m, _SKIP)
    ]
    if not names:
        raise UserError(f"{type(model).__name__} has no leaf modules to compare; pass layers=")
    return names


def _collect(
    model: nn.Module,
    layers: Sequence[str],
    batches: Iterable[Any],
    device: Any,
    strict: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Per-sample outputs of ``layers`` over ``batches``: {layer: (n, features)}, and the
    layers that have none, with the reason. A layer qualifies when it runs exactly once per
    forward pass and its output's first dimension is the batch (a ReLU module reused inside
    a block fires twice; GPT-2's position embedding returns one row for the whole batch).
    ``strict`` (layers the user named): a layer that does not qualify raises instead."""
    mods = dict(model.named_modules())
    unknown = [n for n in layers if n not in mods]
    if unknown:
        raise UserError(f"{type(model).__name__} has no module named {unknown[0]!r}")
    store: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    calls: dict[str, list[torch.Tensor | None]] = {}
    skipped: dict[str, str] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            try:
                t: torch.Tensor | None = prediction(out)
            except UserError:
                t = None
            calls.setdefault(name, []).append(t)

        return hook

    handles = [mods[n].register_forward_hook(hook_for(n)) for n in layers]
    try:
        with torch.no_grad():
            for b in batches:
                calls.clear()
                rows = n_rows(b)
                call(model, to_device(b, device))
                for n in layers:
                    got = calls.get(n, [])
                    t = got[0] if len(got) == 1 else None
                    if len(got) != 1:
                        why = f"it ran {len(got)} times in one forward pass"
                    elif t is None:
                        why = "it does not output a tensor"
                    elif t.ndim == 0 or t.shape[0] != rows:
                        why = f"its output's first dimension is not the batch ({rows} samples)"
                    else:
                        store[n].append(t.detach().reshape(rows, -1).to("cpu", torch.float64))
                        continue
                    if strict:
                        raise UserError(f"layer {n!r} cannot be compared per sample: {why}")
                    skipped.setdefault(n, why)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in store.items() if n not in skipped}, skipped


def layer_similarity(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: ArrayLike,
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    metric: Literal["linear_cka", "linear_cka_debiased"] = "linear_cka",
    batch_size: int = 256,
    device: Any = None,
    model_mode: ModelMode = "eval",
) -> LayerSimilarity:
    """Linear CKA between every named layer of ``model_a`` and of ``model_b`` on ``inputs``.

    Forward hooks collect each layer's output (flattened per sample) while the inputs run
    through both models in batches; the hooks are removed afterwards, even on error. Each
    layer's centred Gram matrix is built once and normalised, so the whole matrix costs
    one Gram per layer plus one inner product per pair (not a CKA from scratch per pair).

    ``inputs`` may be a tensor or a dict of tensors (``model(**x)``, e.g. ``input_ids``).
    ``model_mode``: ``"eval"`` by default — representations without dropout's random
    masks (in training mode CKA(a, a) of GPT-2 with itself is not 1) and BatchNorm with
    its running statistics; the models' flags and statistics are restored afterwards.
    Default layers that cannot be compared per sample (run twice per pass, or an output
    without a batch dimension) are left out with a ``UserWarning`` and listed in
    :attr:`LayerSimilarity.skipped`; a named layer of that kind raises. A layer whose
    output is the same for every input (torchvision's ViT zero-initialises its head) has
    no CKA: its row or column is NaN, with a ``UserWarning`` naming it.
    """
    if metric not in ("linear_cka", "linear_cka_debiased"):
        raise UserError(
            f"layer_similarity supports linear_cka and linear_cka_debiased, got {metric!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_mode(model_mode)
    if isinstance(inputs, Mapping | torch.Tensor):
        xin: Any = inputs
    else:
        xin = torch.as_tensor(np.asarray(inputs))
    n = n_rows(xin)
    if n < 4:
        raise UserError(f"need at least 4 input samples, got {n}")
    la = list(layers_a) if layers_a is not None else _default_layers(model_a)
    lb = list(layers_b) if layers_b is not None else _default_layers(model_b)
    debiased = metric == "linear_cka_debiased"
    batches = [take(xin, slice(i, i + batch_size)) for i in range(0, n, batch_size)]
    with in_mode(model_a, model_mode), in_mode(model_b, model_mode):
        feats_a, skip_a = _collect(model_a, la, batches, device, layers_a is not None)
        feats_b, skip_b = _collect(model_b, lb, batches, device, layers_b is not None)
    skipped = {f"a:{k}": v for k, v in skip_a.items()} | {f"b:{k}": v for k, v in skip_b.items()}
    if skipped:
        warnings.warn(
            f"layer_similarity left out {len(skipped)} default layer(s) that cannot be "
            f"compared per sample, e.g. {next(iter(skipped))} ({next(iter(skipped.values()))})",
            UserWarning,
            stacklevel=2,
        )
    la = [k for k in la if k not in skip_a]
    lb = [k for k in lb if k not in skip_b]
    if not la or not lb:
        raise UserError("no layer of one of the models can be compared per sample; pass layers=")

    constant: list[str] = []

    def unit_gram(F: torch.Tensor, name: str) -> torch.Tensor:
        F = _center_(F)
        K = _gram_center_(F @ F.T, debiased)
        nrm = K.norm()
        if float(nrm) > 0:
            return K / nrm
        constant.append(name)
        return torch.full_like(K, math.nan)

    ga = torch.stack([unit_gram(feats_a.pop(name), f"a:{name}").reshape(-1) for name in la])
    M = torch.empty(len(la), len(lb), dtype=torch.float64)
    for j, name in enumerate(lb):
        M[:, j] = ga @ unit_gram(feats_b.pop(name), f"b:{name}").reshape(-1)
    if constant:
        warnings.warn(
            f"{len(constant)} layer(s) give the same output for every input (a zero-"
            f"initialised head, say), so their CKA is undefined (NaN): {', '.join(constant[:4])}"
            f"{', …' if len(constant) > 4 else ''}",
            UserWarning,
            stacklevel=2,
        )
    _, desc, _ = _metric_table()[metric]
    return LayerSimilarity(M.numpy(), la, lb, metric, desc + ", gram space, float64", n, skipped)
