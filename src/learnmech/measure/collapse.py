"""Neural collapse metrics NC1–NC4 (Papyan, Han & Donoho 2020, PNAS, §3 and Fig. 2–7).

For last-layer features h_i (n × d) with labels y_i ∈ {0…C−1}, class means μ_c, global
mean μ_G, centred means M = [μ_c − μ_G]:

* NC1 — within-class variability collapse: tr(Σ_W Σ_B⁺)/C, with Σ_W the within-class and
  Σ_B the between-class covariance (their Fig. 6).
* NC2 — convergence to a simplex equiangular tight frame: *equinorm*, std/mean of the
  ‖μ_c − μ_G‖ (Fig. 2); *equiangularity*, std of the pairwise cosines of the centred
  means (Fig. 3) and their mean distance from −1/(C−1) (Fig. 4, "max-angle").
* NC3 — self-duality: ‖W/‖W‖_F − Mᵀ/‖M‖_F‖²_F between the classifier rows and the centred
  means (Fig. 5).
* NC4 — simplification to nearest class centre: the fraction of samples where the
  network's decision differs from the nearest-class-mean decision (Fig. 7).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from learnmech.errors import UserError

__all__ = ["neural_collapse"]


def neural_collapse(
    features: Any, labels: Any, weight: Any | None = None, logits: Any | None = None
) -> dict[str, float]:
    """NC1–NC4 of last-layer ``features`` (n × d) with integer ``labels``; NC3 needs the
    classifier ``weight`` (C × d), NC4 the network's ``logits`` (n × C). Every class must
    appear at least twice. Computed in float64."""
    H = (
        torch.as_tensor(
            np.asarray(features) if not isinstance(features, torch.Tensor) else features
        )
        .detach()
        .to(torch.float64)
    )
    y = (
        torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        .detach()
        .long()
    )
    if H.ndim != 2 or y.ndim != 1 or H.shape[0] != y.shape[0]:
        raise UserError(
            f"features (n × d) and labels (n) disagree: {tuple(H.shape)} vs {tuple(y.shape)}"
        )
    if not bool(torch.isfinite(H).all()):
        raise UserError("features contain NaN or inf")
    classes = torch.unique(y)
    C = classes.numel()
    if C < 2:
        raise UserError("neural collapse needs at least two classes")
    counts = torch.stack([(y == c).sum() for c in classes])
    if int(counts.min()) < 2:
        raise UserError("every class needs at least two samples")
    n = H.shape[0]
    mu_g = H.mean(0)
    mus = torch.stack([H[y == c].mean(0) for c in classes])
    M = mus - mu_g
    resid = H - mus[torch.searchsorted(classes, y)]
    # tr(Σ_W Σ_B⁺)/C with Σ_W = RᵀR/n, Σ_B = MᵀM/C: Σ_B⁺ = C·M⁺M⁺ᵀ, so the trace is
    # C·‖R M⁺‖²_F/n — a C × d pseudo-inverse instead of a d × d one (d = 2048: 300× less)
    nc1 = float((resid @ torch.linalg.pinv(M)).pow(2).sum()) / n
    norms = M.norm(dim=1)
    U = M / norms[:, None].clamp_min(1e-300)
    cos = U @ U.T
    off = cos[~torch.eye(C, dtype=torch.bool)]
    out = {
        "nc1": nc1,
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangular": float(off.std()),
        "nc2_maxangle": float((off + 1 / (C - 1)).abs().mean()),
        "mean_cosine": float(off.mean()),
    }
    if weight is not None:
        W = (
            torch.as_tensor(np.asarray(weight) if not isinstance(weight, torch.Tensor) else weight)
            .detach()
            .to(torch.float64)
        )
        if W.shape != M.shape:
            raise UserError(f"weight must be (C, d) = {tuple(M.shape)}, got {tuple(W.shape)}")
        out["nc3"] = float((W / W.norm() - M / M.norm()).square().sum())
    if logits is not None:
        Z = torch.as_tensor(
            np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits
        ).detach()
        if Z.shape != (n, C):
            raise UserError(f"logits must be (n, C) = {(n, C)}, got {tuple(Z.shape)}")
        ncc = classes[torch.cdist(H, mus).argmin(1)]
        net = classes[Z.argmax(1)]
        out["nc4"] = float((ncc != net).double().mean())
        out["train_error"] = float((net != y).double().mean())
    return out
