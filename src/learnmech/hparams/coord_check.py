"""Coord check: do per-layer activation sizes stay width-independent during training?

Yang et al. 2022 ("Tensor Programs V", §D.1 and Fig. 5): train each width for a few steps
and plot the mean |coordinate| of every layer's output against width. Under μP every
curve is flat; under SP with Adam the updated activations grow ∝ width; under the NTK
parameterization the updates shrink (the kernel regime). :func:`coord_check` records, on a
fixed probe batch and for every step t = 0 … k:

* ``act``   — mean |h_t| of each recorded module's output (TP V's "coordinate size");
* ``delta`` — mean |h_t − h_0|, the change since initialisation, which isolates the part
  that training adds (the quantity μP keeps Θ(1)).

For every (layer, quantity, step) it fits log value = a + s·log width over all widths and
seeds (slope s and its standard error from the residuals). Verdict: a quantity *grows* if
s > τ and *vanishes* if s < −τ, with τ = 1/4 by default: in the abc-parameterizations the
width exponents of these quantities are multiples of 1/2 (Yang & Hu 2021, Theorem 3.3 and
Table 1 — 0 under μP, 1/2 or 1 when SP blows up, −1/2 in the kernel regime), so 1/4 is the
decision boundary between "flat" and the nearest non-zero exponent. Growth fails for both
quantities; vanishing fails only for ``delta`` (an activation may shrink at init by design —
μP's readout is O(1/√width) at t = 0 — but an update that vanishes with width means the
layer stops learning features).
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from learnmech.errors import UserError
from learnmech.measure.model_io import (
    ModelMode,
    check_mode,
    forward,
    in_mode,
    prediction,
    same_randomness,
)
from learnmech.stats import fit_power_law

__all__ = ["CoordCheck", "coord_check"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _default_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if y.dtype in (torch.long, torch.int64, torch.int32):
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.mse_loss(out, y)


@dataclass
class CoordCheck:
    """Result of :func:`coord_check`: tidy rows, fitted width exponents and a verdict."""

    rows: list[dict[str, Any]]
    slopes: list[dict[str, Any]]
    widths: list[int]
    steps: int
    tolerance: float
    seconds: float = 0.0
    layers: list[str] = field(default_factory=list)

    @classmethod
    def from_rows(
        cls,
        rows: list[dict[str, Any]],
        *,
        tolerance: float = 0.25,
        layers: Sequence[str] | None = None,
    ) -> CoordCheck:
        """Rebuild a result (fits, verdict, diagnosis) from stored tidy rows."""
        ws = sorted({int(r["width"]) for r in rows})
        steps = max(int(r["step"]) for r in rows)
        names = list(layers) if layers else list(dict.fromkeys(r["layer"] for r in rows))
        slopes = _fit_slopes(rows, names, ws, steps, float(tolerance))
        return cls(rows, slopes, ws, steps, float(tolerance), 0.0, names)

    @property
    def passed(self) -> bool:
        return not self.breaks()

    def breaks(self) -> list[dict[str, Any]]:
        """The (layer, quantity, step) fits that are not width-independent."""
        return [s for s in self.slopes if s["verdict"] != "flat"]

    def worst(self) -> dict[str, Any]:
        """The fit furthest from flat (largest |slope| among failing kinds)."""
        return max(self.slopes, key=lambda s: abs(s["slope"]) if s["verdict"] != "flat" else -1)

    def slope(self, layer: str, quantity: str = "delta", step: int | None = None) -> dict[str, Any]:
        step = self.steps if step is None else step
        for s in self.slopes:
            if s["layer"] == layer and s["quantity"] == quantity and s["step"] == step:
                return s
        raise KeyError(f"no fit for {layer!r} {quantity} at step {step}")

    def diagnose(self) -> list[str]:
        """One line per layer that breaks width-independence: which quantity, from which
        step, how fast; plus layers that pass but drift towards the boundary with steps
        (the usual reason a coord check passes and transfer still fails)."""
        lines: list[str] = []
        for layer in self.layers:
            for q in ("act", "delta"):
                fits = sorted(
                    (s for s in self.slopes if s["layer"] == layer and s["quantity"] == q),
                    key=lambda s: s["step"],
                )
                if not fits:
                    continue
                bad = [s for s in fits if s["verdict"] != "flat"]
                if bad:
                    first = bad[0]
                    what = {
                        ("act", "grows"): "activations grow",
                        ("delta", "grows"): "updates grow",
                        ("delta", "vanishes"): "updates vanish",
                    }[(q, first["verdict"])]
                    hint = {
                        "grows": "its learning rate (or a multiplier upstream) scales too fast "
                        "with width",
                        "vanishes": "it is in the kernel (lazy) regime: its learning rate or "
                        "output multiplier shrinks too fast with width",
                    }[first["verdict"]]
                    if q == "act" and first["step"] == 0:
                        hint = "its initial variance is too large for its fan-in"
                    lines.append(
                        f"{layer}: {what} as width^{first['slope']:.2f} ± {first['se']:.2f} "
                        f"from step {first['step']} ({len(bad)} of {len(fits)} steps) — {hint}"
                    )
                    continue
                s = [f["slope"] for f in fits if f["step"] >= 1]
                if (
                    len(s) >= 3
                    and all(abs(b) > abs(a) for a, b in itertools.pairwise(s))
                    and (abs(s[-1]) > self.tolerance / 2)
                ):
                    lines.append(
                        f"{layer}: {q} flat so far but its exponent drifts with steps "
                        f"({s[0]:.2f} → {s[-1]:.2f}); check more steps before trusting transfer"
                    )
        return lines

    def table(self, quantity: str = "act") -> dict[str, dict[int, np.ndarray]]:
        """``{layer: {width: mean over seeds, per step}}``."""
        out: dict[str, dict[int, np.ndarray]] = {}
        for layer in self.layers:
            out[layer] = {}
            for w in self.widths:
                v = np.full(self.steps + 1, np.nan)
                for t in range(self.steps + 1):
                    vals = [
                        r["value"]
                        for r in self.rows
                        if r["layer"] == layer
                        and r["width"] == w
                        and r["step"] == t
                        and r["quantity"] == quantity
                    ]
                    if vals:
                        v[t] = float(np.mean(vals))
                out[layer][w] = v
        return out

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"coord check {verdict}: {len(self.layers)} layers, widths {self.widths}, "
            f"{self.steps} steps, |slope| ≤ {self.tolerance:g} ({self.seconds:.1f} s)"
        ]
        lines += self.diagnose()
        return "\n".join(lines)

    def plot(
        self, path: str | Path, *, title: str = "", steps: Sequence[int] | None = None
    ) -> Path:
        """log-log panels of mean |h_t| (top) and mean |h_t − h_0| (bottom) vs width,
        written to ``path`` (no pyplot state is touched: a notebook keeps its backend)."""
        import matplotlib

        from learnmech.report.plots import save_png, subplots

        steps = (
            list(steps) if steps is not None else sorted({1, max(self.steps // 2, 1), self.steps})
        )
        fig, axes = subplots(2, len(steps), figsize=(3.4 * len(steps), 6.0), squeeze=False)
        cmap = matplotlib.colormaps["tab20"]
        for qi, q in enumerate(("act", "delta")):
            tab = self.table(q)
            for si, t in enumerate(steps):
                ax = axes[qi, si]
                for li, layer in enumerate(self.layers):
                    ys = [tab[layer][w][t] for w in self.widths]
                    ax.plot(self.widths, ys, "o-", ms=3, color=cmap(li % 20), label=layer)
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_xlabel("width")
                ax.set_title(f"{'mean |h_t|' if q == 'act' else 'mean |h_t − h_0|'}, t = {t}")
        axes[0, -1].legend(fontsize=6, loc="best")
        if title:
            fig.suptitle(title)
        return save_png(fig, Path(path))


def _capture(store: dict[str, torch.Tensor], name: str, out: Any) -> None:
    """Keep a module's output (a tensor, or the first tensor of a tuple/ModelOutput, as
    HuggingFace blocks return); a module called twice in one pass keeps its first call."""
    if name in store:
        return
    try:
        store[name] = prediction(out).detach()
    except UserError:
        return


def _record_modules(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    named = [(n, m) for n, m in model.named_modules() if n]
    if layers is None:
        return [(n, m) for n, m in named if any(True for _ in m.parameters(recurse=False))]
    out = [(n, m) for n, m in named if any(fnmatch.fnmatchcase(n, p) for p in layers)]
    if not out:
        raise UserError(f"layers {list(layers)} match no module of the model")
    return out


def coord_check(
    make: Callable[[int, int], tuple[nn.Module, torch.optim.Optimizer]],
    widths: Sequence[int],
    data: Batch | Callable[[int], Batch],
    *,
    steps: int = 5,
    seeds: int | Sequence[int] = 3,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    layers: Sequence[str] | None = None,
    tolerance: float = 0.25,
    progress: Callable[[str], None] | None = None,
    model_mode: ModelMode = "train",
) -> CoordCheck:
    """Train every width for ``steps`` steps and fit each layer's width exponent.

    Arguments:
        make: ``make(width, seed) -> (model, optimizer)``; e.g. builds the model, calls
            :func:`~learnmech.hparams.parametrize` and returns ``p.optimizer()``.
        widths: at least three distinct widths.
        data: a fixed batch ``(x, y)`` or ``data(step) -> (x, y)``; the first batch is the
            probe batch on which coordinates are measured.
        steps: optimizer steps (coordinates are recorded at t = 0 … steps).
        seeds: a count or a list of seeds.
        loss_fn: ``loss_fn(output, y)``; default cross-entropy for integer targets (any
            leading shape), MSE otherwise.
        layers: glob patterns of module names (default: every module owning parameters);
            ``"output"`` is always added for the model output.
        tolerance: τ in the verdict, |slope| ≤ τ is flat.
        model_mode: the mode of the probe forward pass: ``"train"`` (default: what the
            optimizer sees — BatchNorm normalises with the batch's statistics, as in
            training), ``"eval"`` or ``"keep"``. The probe leaves BatchNorm's running
            statistics untouched, and dropout applies the same masks at every step, so
            ``delta`` measures what training changed and not a new mask. Training steps
            run in training mode.

    A batch's inputs may be a tensor or a dict of tensors (``model(**x)``); a model
    returning a HuggingFace ``ModelOutput`` is read through its ``logits``.
    """
    ws = sorted({int(w) for w in widths})
    if len(ws) < 3 or ws[0] < 1:
        raise UserError(f"coord_check needs at least three distinct positive widths, got {widths}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps must be a positive integer, got {steps!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise UserError("coord_check needs at least one seed")
    if not (isinstance(tolerance, int | float) and 0 < tolerance < 10):
        raise UserError(f"tolerance must be a positive number, got {tolerance!r}")
    check_mode(model_mode)
    loss_fn = loss_fn or _default_loss
    batch_at = data if callable(data) else (lambda _t: data)
    x0, _ = batch_at(0)  # type: ignore[misc]

    rows: list[dict[str, Any]] = []
    names: list[str] = []
    t_start = time.perf_counter()
    for w in ws:
        for seed in seed_list:
            model, opt = make(w, seed)
            mods = _record_modules(model, layers)
            if not names:
                names = [n for n, _ in mods] + ["output"]
            captured: dict[str, torch.Tensor] = {}
            hooks = [
                m.register_forward_hook(lambda _m, _a, out, n=n, c=captured: _capture(c, n, out))
                for n, m in mods
            ]
            h0: dict[str, torch.Tensor] = {}
            try:
                for t in range(steps + 1):
                    with (
                        torch.no_grad(),
                        in_mode(model, model_mode),
                        same_randomness(model, seed),
                    ):
                        captured.clear()
                        captured["output"] = forward(model, x0).detach()
                    model.train()
                    for n, v in captured.items():
                        if not torch.isfinite(v).all():
                            raise UserError(
                                f"coord check: non-finite output in {n} at width {w}, step {t}"
                            )
                        if t == 0:
                            h0[n] = v.clone()
                        rows.append(
                            {
                                "width": w,
                                "seed": seed,
                                "step": t,
                                "layer": n,
                                "quantity": "act",
                                "value": float(v.abs().mean()),
                            }
                        )
                        if t > 0:
                            rows.append(
                                {
                                    "width": w,
                                    "seed": seed,
                                    "step": t,
                                    "layer": n,
                                    "quantity": "delta",
                                    "value": float((v - h0[n]).abs().mean()),
                                }
                            )
                    if t == steps:
                        break
                    x, y = batch_at(t)  # type: ignore[misc]
                    opt.zero_grad(set_to_none=True)
                    loss_fn(forward(model, x), y).backward()
                    opt.step()
            finally:
                for h in hooks:
                    h.remove()
        if progress is not None:
            progress(f"coord check: width {w} done ({time.perf_counter() - t_start:.1f} s)")

    slopes = _fit_slopes(rows, names, ws, steps, float(tolerance))
    return CoordCheck(
        rows=rows,
        slopes=slopes,
        widths=ws,
        steps=steps,
        tolerance=float(tolerance),
        seconds=time.perf_counter() - t_start,
        layers=names,
    )


def _fit_slopes(
    rows: list[dict[str, Any]], names: list[str], ws: list[int], steps: int, tol: float
) -> list[dict[str, Any]]:
    by: dict[tuple[str, str, int], tuple[list[float], list[float]]] = {}
    for r in rows:
        k = (r["layer"], r["quantity"], r["step"])
        xs, ys = by.setdefault(k, ([], []))
        xs.append(r["width"])
        ys.append(r["value"])
    out = []
    for (layer, q, t), (xs, ys) in by.items():
        xa, ya = np.asarray(xs, float), np.asarray(ys, float)
        if np.any(ya <= 0) or len(set(xs)) < 2:
            # an exactly-zero quantity (e.g. a frozen layer's update) is width-independent
            if np.all(ya == 0):
                out.append(
                    {
                        "layer": layer,
                        "quantity": q,
                        "step": t,
                        "slope": 0.0,
                        "se": 0.0,
                        "verdict": "flat",
                    }
                )
            continue
        fit = fit_power_law(xa, ya)
        s = fit.exponent
        se = fit.exponent_se if math.isfinite(fit.exponent_se) else 0.0
        if s > tol:
            verdict = "grows"
        elif s < -tol and q == "delta":
            verdict = "vanishes"
        else:
            verdict = "flat"
        out.append(
            {"layer": layer, "quantity": q, "step": t, "slope": s, "se": se, "verdict": verdict}
        )
    order = {n: i for i, n in enumerate(names)}
    out.sort(key=lambda s: (order.get(s["layer"], 0), s["quantity"], s["step"]))
    return out
