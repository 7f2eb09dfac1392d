"""Property test of ``plan verify --csv``'s reader: any file gives finite losses parsed
from ASCII numbers, or one UserError line (issue #19)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from learnmech.errors import UserError
from learnmech.plan.workflow import _read_losses

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "１.５", "٣", "0.5", " 2 ", "1e999"]),
    st.text(max_size=6),
)


@settings(max_examples=300)
@given(
    header=st.sampled_from(["loss", "seed,loss", "Loss", "", "\ufeffloss"]),
    cells=st.lists(CELLS, max_size=6),
)
def test_any_losses_csv_reads_or_fails_in_one_line(tmp_path, header, cells):
    path = tmp_path / "losses.csv"
    cols = header.count(",") + 1
    lines = [header] + [",".join(["0"] * (cols - 1) + [c.replace(",", ";")]) for c in cells]
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        v = _read_losses(path)
    except UserError as err:
        assert "\n" not in str(err)
        return
    assert v.size >= 1 and all(math.isfinite(x) for x in v)
    assert all(c.strip().isascii() for c in cells)
