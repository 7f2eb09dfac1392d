"""Property tests of the scaling-law CSV reader (issue #19: bad input gives one clear
error, never a crash): whatever the file holds, ``read_scaling_csv`` returns positive
finite arrays parsed from ASCII numbers, or raises UserError."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from learnmech.errors import UserError
from learnmech.laws import get_law
from learnmech.laws.io import read_scaling_csv

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", " ", "nan", "inf", "-0", "1e400", "１２", "1_000", "0x10", "1,5", "٣"]),
    st.text(max_size=8),
)
HEADERS = st.sampled_from(
    [["N", "D", "loss"], ["params", "tokens", "Loss"], ["N", "C", "loss"], ["N", "loss"], ["a"]]
)


def _write(tmp, header: list[str], rows: list[list[str]], bom: bool) -> object:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path = tmp / "data.csv"
    path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
    return path


@settings(max_examples=300)
@given(
    header=HEADERS,
    cells=st.lists(st.lists(NUMBERS, min_size=3, max_size=3), min_size=0, max_size=12),
    bom=st.booleans(),
)
def test_any_csv_reads_as_numbers_or_fails_with_one_user_error(tmp_path, header, cells, bom):
    rows = [c[: len(header)] for c in cells]
    path = _write(tmp_path, header, rows, bom)
    try:
        out = read_scaling_csv(path, get_law("chinchilla"))
    except UserError as err:
        assert "\n" not in str(err) and "\ufeff" not in str(err)
        return
    for key in ("N", "D", "loss"):
        v = out[key]
        assert v.dtype == np.float64 and v.size == len(rows)
        assert np.all(np.isfinite(v)) and np.all(v > 0)
    # every accepted cell was an ASCII number (fullwidth or Arabic-Indic digits are typos)
    for r in rows:
        for cell in r:
            assert cell.strip().isascii()
            assert math.isfinite(float(cell))


@settings(max_examples=100)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_fail_with_a_user_error_or_read(tmp_path, data):
    path = tmp_path / "bytes.csv"
    path.write_bytes(data)
    try:
        read_scaling_csv(path, get_law("chinchilla"))
    except UserError as err:
        assert "\n" not in str(err)
