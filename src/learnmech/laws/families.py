"""Scaling-law families, written as log-loss predictors with log-space parameters.

Every family predicts log L from the log of its inputs with parameters that are
unconstrained reals (prefactors enter as their logs), so that a fit in log space with a
Huber loss is the same problem for all of them (Hoffmann et al. 2022, App. D.2).

* ``saturating``: L(x) = E + A x^−α (Kaplan et al. 2020; Hestness et al. 2017).
* ``chinchilla``: L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 2 / Approach 3),
  log L = LSE(a − α log N, b − β log D, e) with A = e^a, B = e^b, E = e^e.
* ``kaplan``: L(N, D) = [(N_c/N)^{α_N/α_D} + D_c/D]^{α_D} (Kaplan et al. 2020, eq. 1.5).
* ``bnsl``: broken neural scaling law with k breaks (Caballero et al. 2023, eq. 1),
  L(x) = a + b x^{−c₀} Π_i (1 + (x/d_i)^{1/f_i})^{−c_i f_i}.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from learnmech.errors import UserError

__all__ = ["LAWS", "Law", "get_law"]


@dataclass(frozen=True)
class Law:
    """A law family: names, inputs, its log-loss predictor and its default start grid."""

    name: str
    inputs: tuple[str, ...]  # e.g. ("N", "D") or ("x",)
    params: tuple[str, ...]  # log-space parameters, in optimizer order
    grid: dict[str, tuple[float, ...]] = field(repr=False)
    doc: str = ""
    #: parameters whose pairwise bootstrap correlation signals a real trade-off (log
    #: prefactors always correlate with their exponent: the intercept sits far from the data)
    checked: tuple[str, ...] = ()

    def log_predict(self, theta: torch.Tensor, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """log L for parameters θ (B, P) at inputs (log x per input, each (n,)) → (B, n)."""
        cols = [theta[:, i : i + 1] for i in range(len(self.params))]
        return _PREDICTORS[self.name](cols, logs, self)

    def starts(self) -> np.ndarray:
        """The full grid of starting points, (G, P), in the order of ``params``."""
        return np.array(list(itertools.product(*[self.grid[p] for p in self.params])))

    def natural(self, theta: np.ndarray) -> dict[str, float]:
        """Parameters as users quote them (prefactors exponentiated)."""
        t = dict(zip(self.params, np.asarray(theta, dtype=np.float64), strict=True))
        with np.errstate(over="ignore"):  # a runaway log-prefactor is reported as inf
            return _NATURAL[self.name](t)


def _chinchilla(cols, logs, law):  # type: ignore[no-untyped-def]
    a, b, e, alpha, beta = cols
    terms = torch.stack(
        [
            a - alpha * logs["N"][None, :],
            b - beta * logs["D"][None, :],
            e.expand(-1, logs["N"].numel()),
        ]
    )
    return torch.logsumexp(terms, 0)


def _saturating(cols, logs, law):  # type: ignore[no-untyped-def]
    a, e, alpha = cols
    x = logs["x"][None, :]
    return torch.logsumexp(torch.stack([a - alpha * x, e.expand(-1, x.shape[1])]), 0)


def _kaplan(cols, logs, law):  # type: ignore[no-untyped-def]
    n_c, d_c, alpha_n, alpha_d = cols
    t1 = (alpha_n / alpha_d) * (n_c - logs["N"][None, :])
    t2 = d_c - logs["D"][None, :]
    return alpha_d * torch.logsumexp(torch.stack([t1, t2]), 0)


def _bnsl(cols, logs, law):  # type: ignore[no-untyped-def]
    k = (len(cols) - 3) // 3
    log_a, log_b, c0 = cols[:3]
    x = logs["x"][None, :]
    power = log_b - c0 * x
    for i in range(k):
        c, log_d, log_f = cols[3 + 3 * i : 6 + 3 * i]
        f = torch.exp(log_f)
        power = power - c * f * torch.nn.functional.softplus((x - log_d) / f)
    return torch.logsumexp(torch.stack([log_a.expand(-1, x.shape[1]), power]), 0)


_PREDICTORS = {
    "chinchilla": _chinchilla,
    "saturating": _saturating,
    "kaplan": _kaplan,
}


def _nat_chinchilla(t: dict[str, float]) -> dict[str, float]:
    return {
        "E": float(np.exp(t["e"])),
        "A": float(np.exp(t["a"])),
        "B": float(np.exp(t["b"])),
        "alpha": float(t["alpha"]),
        "beta": float(t["beta"]),
    }


def _nat_saturating(t: dict[str, float]) -> dict[str, float]:
    return {"E": float(np.exp(t["e"])), "A": float(np.exp(t["a"])), "alpha": float(t["alpha"])}


def _nat_kaplan(t: dict[str, float]) -> dict[str, float]:
    return {
        "N_c": float(np.exp(t["n_c"])),
        "D_c": float(np.exp(t["d_c"])),
        "alpha_N": float(t["alpha_n"]),
        "alpha_D": float(t["alpha_d"]),
    }


def _nat_bnsl(t: dict[str, float]) -> dict[str, float]:
    out = {"a": float(np.exp(t["log_a"])), "b": float(np.exp(t["log_b"])), "c0": t["c0"]}
    i = 1
    while f"c{i}" in t:
        out[f"c{i}"] = t[f"c{i}"]
        out[f"d{i}"] = float(np.exp(t[f"log_d{i}"]))
        out[f"f{i}"] = float(np.exp(t[f"log_f{i}"]))
        i += 1
    return out


_NATURAL = {
    "chinchilla": _nat_chinchilla,
    "saturating": _nat_saturating,
    "kaplan": _nat_kaplan,
}

# Hoffmann et al. 2022 (App. D.2) / Besiroglu et al. 2024: the 4,500-point grid.
CHINCHILLA = Law(
    "chinchilla",
    ("N", "D"),
    ("a", "b", "e", "alpha", "beta"),
    {
        "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
        "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
    },
    "L(N, D) = E + A/N^α + B/D^β",
    ("e", "alpha", "beta"),
)
SATURATING = Law(
    "saturating",
    ("x",),
    ("a", "e", "alpha"),
    {
        "a": (0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0),
        "e": (-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0),
        "alpha": (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0),
    },
    "L(x) = E + A x^−α",
    ("e", "alpha"),
)
KAPLAN = Law(
    "kaplan",
    ("N", "D"),
    ("n_c", "d_c", "alpha_n", "alpha_d"),
    {
        "n_c": (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0),
        "d_c": (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0),
        "alpha_n": (0.03, 0.07, 0.15, 0.3, 0.6),
        "alpha_d": (0.03, 0.07, 0.15, 0.3, 0.6),
    },
    "L(N, D) = [(N_c/N)^{α_N/α_D} + D_c/D]^{α_D}",
    ("alpha_n", "alpha_d"),
)


def bnsl(breaks: int = 1) -> Law:
    """A broken neural scaling law with ``breaks`` breaks (Caballero et al. 2023, eq. 1)."""
    if not 1 <= breaks <= 4:
        raise UserError(f"bnsl supports 1 to 4 breaks, got {breaks}")
    params = ["log_a", "log_b", "c0"]
    grid: dict[str, tuple[float, ...]] = {
        "log_a": (-2.0, -0.5, 0.5),
        "log_b": (0.0, 2.0, 5.0),
        "c0": (0.0, 0.2, 0.5),
    }
    for i in range(1, breaks + 1):
        params += [f"c{i}", f"log_d{i}", f"log_f{i}"]
        grid[f"c{i}"] = (0.0, 0.3)
        grid[f"log_d{i}"] = (2.0, 6.0, 10.0, 14.0)
        grid[f"log_f{i}"] = (-1.0, 0.5)
    checked = tuple(p for p in params if p.startswith(("c", "log_a")))
    return Law(
        f"bnsl{breaks}", ("x",), tuple(params), grid, f"BNSL with {breaks} break(s)", checked
    )


LAWS: dict[str, Law] = {"chinchilla": CHINCHILLA, "saturating": SATURATING, "kaplan": KAPLAN}


def get_law(name: str) -> Law:
    """A law by name: ``chinchilla``, ``saturating``, ``kaplan``, ``bnsl`` or ``bnslK``."""
    if name in LAWS:
        return LAWS[name]
    if name.startswith("bnsl"):
        k = name[4:] or "1"
        if k.isdigit():
            return bnsl(int(k))
    raise UserError(f"unknown law {name!r}; expected one of {', '.join(LAWS)}, bnsl, bnsl2…")


def _bnsl_predict(cols, logs, law):  # type: ignore[no-untyped-def]
    return _bnsl(cols, logs, law)


def _bnsl_natural(t: dict[str, float]) -> dict[str, float]:
    return _nat_bnsl(t)


for _k in range(1, 5):
    _PREDICTORS[f"bnsl{_k}"] = _bnsl_predict
    _NATURAL[f"bnsl{_k}"] = _bnsl_natural
