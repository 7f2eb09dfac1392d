"""Figure helpers: log-axis tick labels are plain text (no mathtext to parse)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learnmech.report.plots import _unicode_tick, save_png, subplots


@pytest.mark.parametrize(
    ("mathtext", "plain"),
    [
        (r"$\mathdefault{10^{-2}}$", "10⁻²"),
        (r"$\mathdefault{2\times10^{-3}}$", "2×10⁻³"),
        (r"$\mathdefault{10^{0}}$", "10⁰"),
        (r"$\mathdefault{10^{12}}$", "10¹²"),
        (r"$\mathdefault{-10^{2}}$", "−10²"),
        (r"$\mathdefault{0}$", "0"),
        ("", ""),
        ("0.5", "0.5"),
        (r"$\mathdefault{\alpha}$", r"$\mathdefault{\alpha}$"),  # not ours: unchanged
    ],
)
def test_log_tick_labels_become_unicode(mathtext: str, plain: str) -> None:
    assert _unicode_tick(mathtext) == plain


def test_saved_log_axes_carry_no_mathtext(tmp_path: Path) -> None:
    fig, (a, b) = subplots(1, 2)
    x = np.logspace(-3, 1, 20)
    a.plot(x, 1 / x)
    a.set(xscale="log", yscale="log")
    b.plot([1, 2], [0.02, 0.05])
    b.set(yscale="log")  # less than a decade: labelled minor ticks (2×10⁻², …)
    out = save_png(fig, tmp_path / "f.png")
    assert out.stat().st_size > 0
    labels = [
        t.get_text()
        for ax in (a, b)
        for axis in (ax.xaxis, ax.yaxis)
        for t in axis.get_majorticklabels() + axis.get_minorticklabels()
    ]
    assert any("⁻" in s for s in labels)
    assert not any("$" in s for s in labels), labels
    assert any("×10⁻²" in s for s in labels)
