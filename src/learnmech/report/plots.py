"""Matplotlib figures: theory and measurement on the same axes, with error bands."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

from learnmech.records import Figure
from learnmech.stats import fit_power_law

__all__ = [
    "band",
    "colors",
    "deep_linear_figures",
    "errorbars",
    "law_curves",
    "lazy_rich_figures",
    "legend",
    "save_png",
    "scaling_fit_figure",
    "subplots",
    "wide_nets_figures",
]

_STYLE = {
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kw: Any
) -> tuple[Any, Any]:
    """A new figure and its axes, built without pyplot: no backend is chosen or changed
    (a notebook keeps its own), and nothing is left open. ``kw`` goes to
    :meth:`matplotlib.figure.Figure.subplots` (``squeeze``, ``sharex`` …)."""
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    with matplotlib.rc_context(_STYLE):
        fig = MplFigure(figsize=figsize, dpi=_STYLE["figure.dpi"])
        axes = fig.subplots(nrows, ncols, **kw)
    for ax in np.atleast_1d(axes).reshape(-1):
        ax.grid(True, alpha=0.3)
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
    return fig, axes


def _plt():  # type: ignore[no-untyped-def]
    """pyplot with the house style (legacy helper; prefer :func:`subplots`)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(_STYLE)
    return plt


_SUPERSCRIPT = str.maketrans("0123456789-.", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻·")


def _unicode_tick(label: str) -> str:
    """A log axis's mathtext tick label (``$\\mathdefault{2\\times10^{-3}}$``) as plain
    text with Unicode superscripts (``2×10⁻³``); anything else unchanged."""
    m = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
    if m is None:
        return label
    body = m.group(1).replace("\\times", "×")
    body = re.sub(r"\^\{(-?[0-9]+)\}", lambda e: e.group(1).translate(_SUPERSCRIPT), body)
    body = body.replace("-", "−")
    return label if any(c in body for c in "\\{}^$") else body


@functools.cache
def _plain_formatter() -> type:
    """matplotlib's log formatter with its labels passed through :func:`_unicode_tick`
    (built on first use: this module imports matplotlib lazily)."""
    from matplotlib.ticker import LogFormatterSciNotation

    class _Plain(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return _unicode_tick(super().__call__(x, pos))

    return _Plain


def _plain_log_labels(fig: Any) -> None:
    """Give log axes plain-text tick labels. Matplotlib's default log formatter writes
    mathtext, whose parsing and layout were about a third of the time to lay out and save a
    typical figure here (issue #17: the planner's overhead)."""
    plain = _plain_formatter()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for f in (axis.get_major_formatter(), axis.get_minor_formatter()):
                if type(f) is plain.__base__:
                    f.__class__ = plain  # keeps its state (base, minor thresholds, axis)


def save_png(fig: Any, path: Path) -> Path:
    """Lay out and write a figure (closing it if pyplot owns it); returns its path. Log
    axes get plain-text tick labels (:func:`_plain_log_labels`)."""
    _plain_log_labels(fig)
    fig.tight_layout()
    fig.savefig(path)
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        if plt.fignum_exists(getattr(fig, "number", -1)):
            plt.close(fig)
    return path


def colors(n: int, cmap: str = "viridis") -> list[Any]:
    """``n`` colours spread along a colormap (e.g. one per width)."""
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    return [cm(0.1 + 0.8 * i / max(n - 1, 1)) for i in range(n)]


def band(
    ax: Any,
    x: np.ndarray,
    mean: np.ndarray,
    se: np.ndarray | None = None,
    *,
    k: float = 2.0,
    **kw: Any,
) -> Any:
    """Plot a mean with a ±k·SE band (SE NaN or None: the line alone); returns the line."""
    (line,) = ax.plot(x, mean, **kw)
    if se is not None and np.all(np.isfinite(se)):
        ax.fill_between(x, mean - k * se, mean + k * se, color=line.get_color(), alpha=0.2, lw=0)
    return line


def errorbars(ax: Any, x: Any, values: Any, *, k: float = 2.0, **kw: Any) -> Any:
    """Mean over seeds with ±k·SE bars at each x: ``values`` is (seeds, len(x)) or one
    array of seed values per x (ragged). ``kw`` goes to ``ax.errorbar``."""
    cols = list(np.asarray(values).T) if isinstance(values, np.ndarray) else list(values)
    m = np.array([np.mean(c) for c in cols])
    se = np.array([np.std(c, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else 0.0 for c in cols])
    kw.setdefault("capsize", 3)
    return ax.errorbar(x, m, k * se, **kw)


def legend(*axes: Any, **kw: Any) -> None:
    """A legend on each axis that has labelled artists (``kw`` to ``ax.legend``)."""
    kw.setdefault("fontsize", 7)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(**kw)


def law_curves(
    ax: Any,
    fit: Any,
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    *,
    held_from: float | None = None,
    floors: dict[str, float] | None = None,
    extend_to: float | None = None,
) -> None:
    """Loss against tokens D, one colour per model size N: the measured points and a
    fitted L(N, D) law's curve (``fit.predict(N=…, D=…)``). Sizes ≥ ``held_from`` were held
    out of the fit: crosses and dashed lines (the extrapolation). ``floors`` draws dotted
    horizontal lines (e.g. a known Bayes-optimal loss, the fit's E); ``extend_to`` carries
    the curves past the data to that D."""
    sizes = np.unique(N)
    dd = np.geomspace(D.min(), max(D.max(), extend_to or 0.0), 100)
    for c, n in zip(colors(sizes.size), sizes, strict=True):
        k, held = N == n, held_from is not None and n >= held_from
        label = f"N = {n:,.0f}" + (" (held out)" if held else "")
        ax.plot(D[k], L[k], "x" if held else "o", color=c, label=label)
        ax.plot(dd, fit.predict(N=np.full(dd.size, n), D=dd), "--" if held else "-", color=c)
    for (name, y), c in zip((floors or {}).items(), ("k", "r", "b", "g"), strict=False):
        ax.axhline(y, color=c, lw=1, ls=":", label=f"{name} = {y:.3f}")
    ax.set(xscale="log", xlabel="training tokens D", ylabel="loss")


def _width_colors(widths: list[int]) -> dict[int, Any]:
    return dict(zip(widths, colors(len(widths)), strict=True))


def _loss_panel(ax, th, per, key: str, pred: np.ndarray, colors) -> None:  # type: ignore[no-untyped-def]
    steps = np.asarray(th["steps"], dtype=float)
    x = np.maximum(steps, 0.5)
    for w, e in per.items():
        m, se = e[key]
        ax.plot(x, m, color=colors[w], lw=1.5, label=f"width {w}")
        ax.fill_between(x, m - 2 * se, m + 2 * se, color=colors[w], alpha=0.25, lw=0)
    ax.plot(x, pred, "k--", lw=1.5, label="NTK theory")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step (step 0 drawn at 0.5)")
    ax.set_ylabel(key.replace("_", " "))


def _outputs_panel(ax, th, per, colors) -> None:  # type: ignore[no-untyped-def]
    angle = th["task"].test_angle.numpy()
    mu = th["pred"].test[-1, :, 0]
    sd = np.sqrt(np.clip(th["pred"].test_var[-1], 0, None))
    ax.plot(angle, th["task"].y_test.numpy()[:, 0], color="0.6", lw=1, label="target")
    ax.fill_between(angle, mu - 2 * sd, mu + 2 * sd, color="0.85", label="theory ±2σ (ensemble)")
    ax.plot(angle, mu, "k--", lw=1.5, label="theory mean")
    ws = sorted(per)
    for w in {ws[0], ws[-1]}:
        m, se = per[w]["outputs"]
        ax.errorbar(
            angle,
            m,
            yerr=2 * se,
            fmt="o",
            ms=2.5,
            color=colors[w],
            elinewidth=0.8,
            label=f"measured E[f], width {w}",
        )
    ax.set_xlabel("test input angle (rad)")
    ax.set_ylabel("output after training")


def _scaling_panel(ax, per) -> None:  # type: ignore[no-untyped-def]
    ws = np.array(sorted(per), dtype=float)
    v = np.array([per[w]["seed_err"][0] for w in sorted(per)])
    se = np.array([per[w]["seed_err"][1] for w in sorted(per)])
    ax.errorbar(ws, v, yerr=2 * se, fmt="o", color="C0", ms=4)
    fit = fit_power_law(ws, v, se)
    ax.plot(
        ws,
        fit(ws),
        color="C0",
        lw=1,
        label="per-net deviation from linearization: "
        f"slope {fit.exponent:.2f} ± {fit.exponent_se:.2f}",
    )
    wp = [w for w in sorted(per) if "predicted_err" in per[w]]
    if wp:
        ax.plot(
            wp,
            [per[w]["predicted_err"][0] for w in wp],
            "x--",
            color="C0",
            ms=6,
            lw=1,
            label="predicted from each net's init NTK (before training)",
        )
    v = np.array([per[w]["mean_err"][0] for w in sorted(per)])
    se = np.array([per[w]["mean_err"][1] for w in sorted(per)])
    pos = v > 0  # the debiased estimate is 0 where the bias is below the seed noise
    ax.errorbar(
        ws[pos],
        v[pos],
        yerr=2 * se[pos],
        fmt="D",
        color="C1",
        ms=4,
        label="ensemble-mean output bias (seed noise subtracted)",
    )
    for key, label, c in (
        ("ntk_init_error", "NTK at init vs analytic", "C2"),
        ("kernel_change", "kernel change ‖K_T−K_0‖/‖K_0‖", "C3"),
    ):
        wk = [w for w in sorted(per) if key in per[w]]
        if len(wk) < 2:
            continue
        v = np.array([per[w][key][0] for w in wk])
        se = np.array([per[w][key][1] for w in wk])
        ax.errorbar(wk, v, yerr=2 * se, fmt="s", color=c, ms=4)
        fit = fit_power_law(np.array(wk, float), v, se)
        ax.plot(
            wk,
            fit(np.array(wk, float)),
            color=c,
            lw=1,
            label=f"{label}: slope {fit.exponent:.2f} ± {fit.exponent_se:.2f}",
        )
    first = per[sorted(per)[0]]["seed_err"][0]
    ax.plot(ws, first * (ws / ws[0]) ** -0.5, "k:", lw=1, label="∝ width^−1/2")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel("relative error")


def wide_nets_figures(cfg, th, per, outdir: Path) -> list[Figure]:  # type: ignore[no-untyped-def]
    outdir.mkdir(parents=True, exist_ok=True)
    colors = _width_colors(sorted(per))
    figs = []

    fig, axes = subplots(1, 2, figsize=(10, 4))
    _loss_panel(axes[0], th, per, "train_loss", th["pred"].expected_train_loss, colors)
    _loss_panel(axes[1], th, per, "test_loss", th["pred"].expected_test_loss, colors)
    axes[0].legend(fontsize=7)
    fig.suptitle("Loss curves: ensemble mean ± 2 SE vs analytic-NTK prediction")
    p = save_png(fig, outdir / "loss_curves.png")
    figs.append(
        Figure(
            p,
            "Expected train and test loss (±2 SE bands) for every width, "
            "estimated with each seed's own linearization as a control variate; "
            "dashed: expected loss of the infinite-width linearized network, "
            "computed before training.",
        )
    )

    fig, ax = subplots(figsize=(7, 4))
    _outputs_panel(ax, th, per, colors)
    ax.legend(fontsize=7)
    ax.set_title(f"Test outputs after {cfg.steps} steps")
    p = save_png(fig, outdir / "outputs.png")
    figs.append(
        Figure(
            p,
            "Ensemble-mean outputs E[f_T] on test inputs along a great circle "
            "(±2 SE, control-variate estimate: each seed's deviation from its own "
            "linearization, added to the prediction) against the predicted mean "
            "and its ±2σ spread over initialisations.",
        )
    )

    fig, ax = subplots(figsize=(7, 4.5))
    _scaling_panel(ax, per)
    ax.legend(fontsize=7)
    ax.set_title("Distance from the infinite-width limit vs width")
    p = save_png(fig, outdir / "width_scaling.png")
    figs.append(
        Figure(
            p,
            "Errors vs width on log–log axes with fitted exponents (±1 SE); "
            "error bars ±2 SE over seeds.",
        )
    )

    fig, axes = subplots(1, 3, figsize=(15, 4.2))
    _outputs_panel(axes[0], th, per, colors)
    axes[0].legend(fontsize=6)
    axes[0].set_title("test outputs: measured vs predicted")
    _loss_panel(axes[1], th, per, "test_loss", th["pred"].expected_test_loss, colors)
    axes[1].legend(fontsize=6)
    axes[1].set_title("test loss curves")
    _scaling_panel(axes[2], per)
    axes[2].legend(fontsize=6)
    axes[2].set_title("convergence to the limit")
    arch = "CNNs" if getattr(cfg, "arch", "mlp") == "cnn" else "MLPs"
    fig.suptitle(f"learnmech wide-nets: finite {arch} vs their infinite-width NTK prediction")
    p = save_png(fig, outdir / "summary.png")
    figs.insert(0, Figure(p, "Summary."))
    return figs


def deep_linear_figures(cfg: Any, rows: list[dict[str, Any]], outdir: Path) -> list[Figure]:
    """Mode strengths vs theory per depth; staircase losses vs init scale."""
    plt = _plt()
    s = np.array(cfg.singular_values)
    depths = sorted({r["depth"] for r in rows})
    figs: list[Figure] = []
    # 1. mode trajectories, aligned (smallest u0) and random (smallest scale), seed 0
    fig, axes = plt.subplots(2, len(depths), figsize=(4.2 * len(depths), 6.4), squeeze=False)
    colors = plt.get_cmap("tab10")
    for j, d in enumerate(depths):
        for i, init in enumerate(("aligned", "random")):
            ax = axes[i, j]
            cand = [r for r in rows if r["depth"] == d and r["init"] == init]
            if not cand:
                ax.set_visible(False)
                continue
            scale = min(r["scale"] for r in cand)
            r = min((r for r in cand if r["scale"] == scale), key=lambda r: r["seed"])
            for k in range(s.size):
                ax.plot(
                    r["steps"],
                    r["S"][:, k],
                    color=colors(k),
                    lw=2,
                    alpha=0.7,
                    label=f"s={s[k]:g} measured",
                )
                if "u_theory" in r:
                    ax.plot(r["steps"], r["u_theory"][:, k], "k--", lw=1)
                if np.isfinite(r.get("t_theory", np.full(s.size, np.nan))[k]):
                    ax.axvline(r["t_theory"][k], color=colors(k), ls=":", lw=1)
            ax.set_title(f"depth {d}, {init} init ({'u₀' if init == 'aligned' else 'σ'}={scale:g})")
            ax.set_xlabel("step")
            ax.set_ylabel("mode strength uᵀW⋯Wv")
        axes[0, 0].legend(fontsize=7, title="dashed: exact theory", title_fontsize=7)
    p = save_png(fig, outdir / "deep_linear_modes.png")
    figs.append(
        Figure(
            p,
            "Each singular mode's strength during training (colour) against the "
            "exact discrete-GD solution (dashed, aligned init); dotted lines: "
            "predicted learning times (random init: depth 2, from u₀,eff).",
        )
    )
    # 2. staircase sharpening: loss vs step for each init scale (aligned)
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.4), squeeze=False)
    for j, d in enumerate(depths):
        ax = axes[0, j]
        cand = [r for r in rows if r["depth"] == d and r["init"] == "aligned" and r["seed"] == 0]
        cmap = plt.get_cmap("viridis")
        scales = sorted({r["scale"] for r in cand}, reverse=True)
        for i, sc in enumerate(scales):
            r = next(r for r in cand if r["scale"] == sc)
            t1 = r["t_meas"][0]
            ax.plot(
                r["steps"] / t1,
                r["loss"] / r["loss"][0],
                color=cmap(0.15 + 0.7 * i / max(len(scales) - 1, 1)),
                label=f"u₀={sc:g}",
            )
        ax.set_xlabel("step / learning time of the first mode")
        ax.set_ylabel("loss / initial loss")
        ax.set_title(f"depth {d}")
        ax.legend(fontsize=8)
    p = save_png(fig, outdir / "deep_linear_staircase.png")
    figs.append(
        Figure(
            p,
            "Staircase losses: smaller initialisation (and more depth) separates "
            "the modes' learning times relative to each transition's width.",
        )
    )
    return figs


def lazy_rich_figures(  # type: ignore[no-untyped-def]
    cfg: Any, tab: dict[float, dict[str, Any]], trials, teacher: np.ndarray, outdir: Path
) -> list[Figure]:
    """Neuron directions before/after (rich vs lazy), and the observables against α."""
    plt = _plt()
    figs: list[Figure] = []
    al = sorted(tab)
    ends = [al[0], al[-1]]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.2))
    for ax, a in zip(axes, ends, strict=True):
        t = next(
            (
                t
                for t in sorted(trials, key=lambda t: t.seed)
                if t.status == "ok" and t.point["alpha"] == a and t.curve("neuron_x_init")
            ),
            None,
        )
        if t is None:
            continue
        x0, y0 = t.curve("neuron_x_init").values, t.curve("neuron_y_init").values
        x1, y1 = t.curve("neuron_x_final").values, t.curve("neuron_y_final").values
        r = max(np.abs(np.concatenate([x0, y0, x1, y1])).max(), 1e-12) * 1.05
        for u in teacher:
            ax.plot([0, r * u[0]], [0, r * u[1]], color="tab:red", lw=1.5, alpha=0.6)
        sign = t.curve("neuron_sign").values if t.curve("neuron_sign") else np.ones_like(x1)
        ax.scatter(x0, y0, s=6, color="0.6", label="init")
        pos = sign > 0
        ax.scatter(x1[pos], y1[pos], s=8, color="tab:blue", label="trained, a_j > 0")
        ax.scatter(x1[~pos], y1[~pos], s=8, color="tab:orange", label="trained, a_j < 0")
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
        ax.set_aspect("equal")
        regime = "rich" if a == ends[0] else "lazy"
        ax.set_title(f"α = {a:g} ({regime})")
        ax.set_xlabel("|a_j| w_j,1")
        ax.set_ylabel("|a_j| w_j,2")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("student neurons |a_j|·w_j; red: teacher directions")
    p = save_png(fig, outdir / "lazy_rich_neurons.png")
    figs.append(
        Figure(
            p,
            "Neuron directions before (grey) and after (blue) training: in the "
            "rich regime they rotate and concentrate on the teacher directions "
            "(red); in the lazy regime they barely move (cf. Chizat et al. 2019 "
            "Fig. 2).",
        )
    )
    fig, axes = plt.subplots(1, 3, figsize=(12.6, 3.6))
    x = np.array(al)

    def band(ax, key, label, color):  # type: ignore[no-untyped-def]
        m = np.array([tab[a][key][0] for a in al])
        se = np.array([tab[a][key][1] for a in al])
        ax.errorbar(x, m, 2 * se, marker="o", capsize=3, label=label, color=color)

    band(axes[0], "weight_change", "relative weight change", "tab:blue")
    band(axes[0], "kernel_change", "relative kernel change", "tab:orange")
    band(axes[0], "lin_error", "linearized-prediction error", "tab:green")
    wc = tab[al[-1]]["weight_change"][0]
    axes[0].plot(x, wc * al[-1] / x, "k--", lw=1, label="∝ 1/α (theory, lazy)")
    axes[0].set(xscale="log", yscale="log", xlabel="α")
    axes[0].legend(fontsize=7)
    band(axes[1], "alignment", "trained", "tab:blue")
    band(axes[1], "alignment_init", "init", "0.5")
    axes[1].set(xscale="log", xlabel="α", ylabel="mass within 10° of a teacher direction")
    axes[1].legend(fontsize=8)
    band(axes[2], "test_loss", "network", "tab:blue")
    band(axes[2], "lin_test_loss", "linearized (NTK) prediction", "k")
    axes[2].set(xscale="log", yscale="log", xlabel="α", ylabel="test loss")
    axes[2].legend(fontsize=8)
    p = save_png(fig, outdir / "lazy_rich_vs_alpha.png")
    figs.append(
        Figure(
            p,
            "Against α (±2 SE over seeds): weight and kernel change and the "
            "linearized prediction's error fall as α grows; alignment with the "
            "teacher is gained only at small α.",
        )
    )
    return figs


def scaling_fit_figure(fit: Any, score: dict[str, Any] | None, path: Path) -> Path:
    """Data and fitted law; with ``score``, the fit on smaller runs and the held-out runs."""
    plt = _plt()
    data = fit.data
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    ax = axes[0]
    if fit.law.inputs == ("N", "D"):
        N, D = data.inputs["N"], data.inputs["D"]
        sizes = np.unique(N)
        cmap = plt.get_cmap("viridis")
        lognorm = (np.log(N) - np.log(sizes[0])) / max(np.log(sizes[-1] / sizes[0]), 1e-12)
        ax.scatter(D, data.loss, c=cmap(lognorm), s=10)
        show = sizes[np.linspace(0, sizes.size - 1, min(6, sizes.size)).astype(int)]
        for n in show:
            grid = np.geomspace(D.min(), D.max(), 100)
            c = cmap((np.log(n) - np.log(sizes[0])) / max(np.log(sizes[-1] / sizes[0]), 1e-12))
            ax.plot(
                grid,
                fit.predict(N=np.full_like(grid, n), D=grid),
                color=c,
                lw=1.2,
                label=f"N = {n:.2g}",
            )
        ax.set_xlabel("tokens D")
        ax.legend(fontsize=7, title="fit at", title_fontsize=7)
    else:
        x = data.inputs["x"]
        ax.scatter(x, data.loss, s=12, color="tab:blue", label="data")
        lo, hi = x.min(), x.max()
        if score is not None:
            hi = max(hi, float(np.max(score["test_inputs"]["x"])))
        grid = np.geomspace(lo, hi, 200)
        ax.plot(grid, fit.predict(x=grid), "k-", lw=1.2, label="fit (all data)")
        if score is not None:
            ax.plot(
                grid,
                score["fit"].predict(x=grid),
                "--",
                color="tab:red",
                lw=1.2,
                label="fit without held-out",
            )
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
    ax.set(xscale="log", yscale="log", ylabel="loss", title=f"{fit.law.name}: {fit.law.doc}")
    ax = axes[1]
    pred = fit.predict(**data.inputs)
    ax.scatter(data.loss, pred, s=10, color="0.5", label="fit on all data")
    if score is not None:
        ax.scatter(
            score["observed"],
            score["predicted"],
            s=24,
            color="tab:red",
            marker="x",
            label=f"held out (mean |err| {100 * score['mean_abs_rel_error']:.1f}%)",
        )
    lims = [min(data.loss.min(), pred.min()), max(data.loss.max(), pred.max())]
    ax.plot(lims, lims, "k--", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="observed loss",
        ylabel="predicted loss",
        title="prediction vs observation",
    )
    ax.legend(fontsize=8)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for a in (axes[0].yaxis, axes[1].xaxis, axes[1].yaxis):
        a.set_major_formatter(ScalarFormatter())
        a.set_minor_formatter(NullFormatter())
    return save_png(fig, path)
