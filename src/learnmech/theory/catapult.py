"""The catapult phase of gradient descent (Lewkowycz, Bahri, Dyer, Sohl-Dickstein &
Gur-Ari 2020, "The large learning rate phase of deep learning: the catapult mechanism",
§2, eqs. 3–4 and Fig. 2).

Model: the two-layer linear network f(x) = vᵀUx/√n of width n, trained by full-batch
gradient descent with learning rate η on one example (x, y), |x| = 1, loss ½(f − y)².
Its NTK is the scalar λ = (|v|² + |Ux|²)/n. With g = f − y, one GD step maps (f, λ) to

    f' = f − ηλg + (η²/n) g² f,        λ' = λ + (ηg/n)(ηgλ − 4f),                 (1)

exactly, at every width (derivation: U' = U − ηg v xᵀ/√n and v' = v − ηg Ux/√n, so
U'x = Ux − ηg v/√n; expand v'ᵀU'x and |v'|² + |U'x|²). At large n, with λ₀ the NTK at
initialization, the learning rate puts the run in one of three phases:

* lazy, η < 2/λ₀: the residual contracts by |1 − ηλ₀| every step and λ moves by O(1/n);
* catapult, 2/λ₀ < η < 4/λ₀: the residual grows geometrically until g² ~ n, where the
  (ηg/n)(ηgλ − 4f) term drives λ down until ηλ < 2; the loss peaks (at a height ∝ n)
  and then converges with the final λ below 2/η — a flatter minimum;
* divergent, η > 4/λ₀: the same term drives λ *up* once g is large, and the run blows up.

For deep and nonlinear networks the paper finds the lower boundary 2/λ₀ (the linearized
model's stability edge) but a larger upper one (about 12/λ₀ for its ReLU networks).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["PHASES", "catapult_map", "classify_run", "predicted_phase"]

Phase = Literal["lazy", "catapult", "divergent"]
PHASES: tuple[Phase, ...] = ("lazy", "catapult", "divergent")


def _positive(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(v)


def predicted_phase(eta: float, lam0: float) -> Phase:
    """The large-width phase of gradient descent at learning rate η from the NTK λ₀ at
    initialization: lazy below 2/λ₀, catapult up to 4/λ₀, divergent above (§2)."""
    x = _positive("eta", eta) * _positive("lam0", lam0)
    return "lazy" if x < 2 else "catapult" if x < 4 else "divergent"


def catapult_map(
    f0: float, lam0: float, y: float, width: int, eta: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Iterate eq. (1) from (f₀, λ₀): the network output f_t and NTK λ_t at steps
    0 … ``steps`` of GD on one example (exact at width n). Values after an overflow are
    inf/NaN (a divergent run)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if not all(math.isfinite(v) for v in (f0, y)):
        raise ValueError("f0 and y must be finite")
    lam, eta = _positive("lam0", lam0), _positive("eta", eta)
    f, n = float(f0), float(width)
    fs, lams = np.empty(steps + 1), np.empty(steps + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            fs[t], lams[t] = f, lam
            g = f - y
            f, lam = (
                f - eta * lam * g + eta**2 * g * g * f / n,
                lam + eta * g * (eta * g * lam - 4 * f) / n,
            )
    return fs, lams


def classify_run(losses: np.ndarray, blowup: float = 1e8) -> Phase:
    """The phase a run shows, from its loss curve: divergent if the loss becomes
    non-finite or exceeds ``blowup`` × its initial value, or ends no lower than it began;
    catapult if it converges after rising above its initial value; lazy if it converges
    without ever rising (GD below 2/λ contracts every mode of a linear model)."""
    loss = np.asarray(losses, dtype=np.float64)
    if loss.ndim != 1 or loss.size < 2 or not math.isfinite(loss[0]) or loss[0] <= 0:
        raise ValueError("losses must be a curve of at least two steps from a finite loss > 0")
    if not np.all(np.isfinite(loss)) or loss.max() > blowup * loss[0] or loss[-1] >= loss[0]:
        return "divergent"
    return "catapult" if loss.max() > loss[0] * (1 + 1e-9) else "lazy"
