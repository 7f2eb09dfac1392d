"""The DuckDB store: round trip, atomic trials, export, errors."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from learnmech.lab.records import Curve, Metric, TrialResult
from learnmech.lab.store import Store, StoreError


def _trial(key: str, seed: int, status: str = "ok") -> TrialResult:
    curves = [
        Curve("loss", "step", [0, 1, 2], [1.0, 0.5, 0.25 + seed]),
        Curve("out", "step", [0, 1], [3.0, 4.0], series="x0"),
        Curve("out", "step", [0, 1], [5.0, 6.0], series="x1"),
    ]
    return TrialResult(key, {"width": 8}, seed, status, None, 0.1, curves)


def test_relinking_a_run_drops_its_stale_trials(store_path):
    """A run resumed by a version that hashes its trials differently links the new keys
    only: the old trials are not counted twice, and stay stored."""
    with Store(store_path) as st:
        st.begin_run("r1", "toy", {"a": 1}, "quick", 2, {"device": "cpu"})
        st.link_trials("r1", ["k0", "k1"])
        st.add_trial("r1", "toy", _trial("k0", 0), "cpu")
        st.add_trial("r1", "toy", _trial("k1", 1), "cpu")
        st.link_trials("r1", ["k1", "k2"])
        st.add_trial("r1", "toy", _trial("k2", 0), "cpu")
        assert [t.key for t in st.trials("r1")] == ["k2", "k1"]
        assert st.done_keys(["k0"]) == {"k0"}


def test_round_trip(store_path):
    with Store(store_path) as st:
        st.begin_run("r1", "toy", {"a": 1}, "quick", 2, {"git_sha": "abc", "device": "cpu"})
        st.link_trials("r1", ["k0", "k1"])
        st.add_trial("r1", "toy", _trial("k0", 0), "cpu")
        st.add_trial("r1", "toy", _trial("k1", 1), "cpu")
        st.set_theory("r1", [Curve("loss", "step", [0, 1], [1.0, 0.4])])
        st.set_metrics("r1", [Metric("err", 0.05, 0.1), Metric("slope", -0.5, stderr=0.02)])
        st.finish_run("r1", "finished", "pass", 1.5, None)
    with Store(store_path, read_only=True) as st:
        info = st.run("r1")
        assert info["config"] == {"a": 1} and info["verdict"] == "pass"
        assert st.resolve("r") == "r1"
        trials = st.trials("r1")
        assert [t.seed for t in trials] == [0, 1]
        c = trials[1].curve("loss")
        np.testing.assert_array_equal(c.values, [1.0, 0.5, 1.25])
        np.testing.assert_array_equal(trials[0].curve("out", "x1").values, [5.0, 6.0])
        th = st.theory("r1")
        assert th[0].observable == "loss" and th[0].values.tolist() == [1.0, 0.4]
        ms = st.metrics("r1")
        assert ms[0].passed is True and ms[1].passed is None and ms[1].stderr == 0.02
        assert st.done_keys(["k0", "k1", "k2"]) == {"k0", "k1"}
        assert st.runs()[0]["trials"] == 2


def test_rewriting_a_trial_replaces_it(store_path):
    with Store(store_path) as st:
        st.begin_run("r", "toy", {}, "quick", 1, {})
        st.add_trial("r", "toy", TrialResult("k", {}, 0, "error", "boom", 0.0, []), "cpu")
        assert st.done_keys(["k"]) == set()  # errors are retried
        st.add_trial("r", "toy", _trial("k", 0), "cpu")
        st.add_trial("r", "toy", _trial("k", 0), "cpu")
        n = st.con.execute("SELECT count(*) FROM records WHERE trial_key='k'").fetchone()[0]
        assert n == 7
        assert st.done_keys(["k"]) == {"k"}


def test_export(store_path, tmp_path):
    with Store(store_path) as st:
        st.begin_run("r", "toy", {}, "quick", 1, {})
        st.link_trials("r", ["k"])
        st.add_trial("r", "toy", _trial("k", 0), "cpu")
        st.set_theory("r", [Curve("loss", "step", [0], [1.0])])
        st.set_metrics("r", [Metric("m", 1.0, 2.0)])
        pq_paths = st.export("r", "parquet", tmp_path / "pq")
        csv_paths = st.export("r", "csv", tmp_path / "csv")
    rec = pq.read_table(pq_paths[0])
    assert rec.num_rows == 8  # 7 experiment + 1 theory
    assert set(rec.column("source").to_pylist()) == {"theory", "experiment"}
    assert pcsv.read_csv(csv_paths[1]).num_rows == 1
    assert not list((tmp_path / "pq").glob("*.tmp"))


def test_errors(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        Store(tmp_path / "missing.duckdb", read_only=True)
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)
    bad = tmp_path / "corrupt.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(bad)
    assert bad.read_bytes() == b"this is not a database" * 100  # untouched
    st = Store(tmp_path / "ok.duckdb")
    with pytest.raises(StoreError, match="no run"):
        st.run("nope")
    with pytest.raises(ValueError, match="format"):
        st.export("x", "xlsx", tmp_path)
    st.close()


def test_curve_validation():
    with pytest.raises(ValueError, match="coordinates"):
        Curve("a", "step", [1, 2], [1.0])
    assert not Curve("a", "s", [0], [float("nan")]).finite


def test_crafted_run_ids_never_name_a_path(tmp_path):
    """Issue #19 (4): run ids read from a store decide file paths; ``../../x`` wrote
    outside the run folder."""
    from learnmech.lab.runner import render_report
    from learnmech.lab.store import safe_run_id

    store = tmp_path / "a" / "s.duckdb"
    with Store(store) as st:
        st.begin_run("../../evil", "tracked-run", {}, "tracked", 1, {"device": "cpu"})
        st.finish_run("../../evil", "done", None, 0.0, None)
    with Store(store, read_only=True) as st:
        with pytest.raises(StoreError, match="not a valid id"):
            render_report(st, "../../evil")
        with pytest.raises(StoreError, match="not a valid id"):
            st.export("../../evil", "csv", tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not list(tmp_path.glob("*.csv"))
    for ok in ("wide-nets-1a2b3c", "gpt2-mup-f6527f94", "r1"):
        assert safe_run_id(ok) == ok
    for bad in ("", ".hidden", "a/b", "a\\b", "x..y", "a" * 200, "é"):
        with pytest.raises(StoreError):
            safe_run_id(bad)


def test_trial_status_is_escaped_in_the_report(tmp_path):
    """Issue #19 (5): a crafted status was written into the HTML unescaped."""
    from learnmech.lab.runner import render_report

    store = tmp_path / "s.duckdb"
    evil = "<script>alert(1)</script>"
    with Store(store) as st:
        st.begin_run("run1", "tracked-run", {}, "tracked", 1, {"device": "cpu"})
        st.link_trials("run1", ["k0"])
        st.add_trial("run1", "tracked-run", _trial("k0", 0, status=evil), "cpu")
        st.finish_run("run1", "done", None, 0.0, None)
    with Store(store, read_only=True) as st:
        page = render_report(st, "run1").read_text()
    assert evil not in page and "&lt;script&gt;" in page


def test_run_prefixes_are_text_not_like_patterns(store_path):
    """Issue #19 (11): '%' and '_' in a prefix matched any run."""
    with Store(store_path) as st:
        for rid in ("abc-1", "abd-2"):
            st.begin_run(rid, "toy", {}, "quick", 1, {"device": "cpu"})
        assert st.resolve("abc") == "abc-1"
        for pattern in ("%", "ab_", "a%"):
            with pytest.raises(StoreError, match="no run"):
                st.resolve(pattern)


def test_a_store_from_before_the_threads_column_reads_and_migrates(tmp_path):
    """Trials gained a ``threads`` column (issue #19, item 10): an older store opens
    read-only as it is (threads unknown) and is migrated when opened for writing."""
    import duckdb

    from learnmech.lab.store import _SCHEMA

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(_SCHEMA.replace("ALTER TABLE trials ADD COLUMN IF NOT EXISTS threads INTEGER;", ""))
    con.execute("INSERT INTO runs (id, study, status) VALUES ('r1', 'toy', 'finished')")
    con.execute(
        "INSERT INTO trials VALUES ('k', 'toy', '{}', 0, 'ok', NULL, 1.0, 'cpu', 'r1', NULL)"
    )
    con.execute("INSERT INTO run_trials VALUES ('r1', 'k')")
    con.close()
    with Store(path, read_only=True) as st:
        assert not st._has_column("trials", "threads")
        assert st.trials("r1")[0].threads is None
    with Store(path) as st:
        assert st._has_column("trials", "threads")
        assert st.trials("r1")[0].seed == 0


def test_a_database_with_someone_elses_runs_table_is_left_untouched(tmp_path, capsys):
    """Issue #19 (6): a DuckDB file whose ``runs`` table is not learnmech's was given new
    tables before the run failed; now it is refused first, one line, exit 2."""
    import duckdb

    from learnmech.cli import main
    from learnmech.lab.store import StoreError

    path = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (athlete VARCHAR, km DOUBLE)")
    con.execute("INSERT INTO runs VALUES ('ana', 42.2)")
    con.close()

    def tables() -> list[tuple]:
        c = duckdb.connect(str(path), read_only=True)
        try:
            return c.execute(
                "SELECT table_name, column_name FROM information_schema.columns ORDER BY 1, 2"
            ).fetchall()
        finally:
            c.close()

    before = tables()
    with pytest.raises(StoreError, match="not learnmech's"):
        Store(path)
    assert main(["run", "toy", "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not learnmech's" in err and len(err.strip().splitlines()) == 1
    assert main(["runs", "list", "--store", str(path)]) == 2
    assert tables() == before
