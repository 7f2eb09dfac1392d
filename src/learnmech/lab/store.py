"""The run store: one DuckDB file with tidy tables.

Tables (DESIGN.md):

* ``runs``     — id, study, config, scale, seeds, status, verdict, provenance, git sha,
                 device, started/finished times, wall time.
* ``trials``   — key (hash of study, config point and seed), study, config, seed, status,
                 error, duration, device, finished time. A trial belongs to every run whose
                 sweep contains its key (``run_trials``), so a re-run skips finished work.
* ``records``  — run (theory rows) or trial key (experiment rows), source, observable,
                 series, coordinate name, coordinate, value.
* ``metrics``  — run, name, value, stderr, tolerance, comparator, passed, description,
                 kind, bound (the confidence bound the verdict used), level, expected.

Only the driver process writes. Each trial and its records are committed in one
transaction, so a killed sweep loses no finished trial and leaves no half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from learnmech.errors import UserError
from learnmech.lab.records import Curve, Metric, TrialResult

__all__ = ["DEFAULT_STORE", "Store", "StoreError"]

DEFAULT_STORE = Path("runs") / "learnmech.duckdb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY, study VARCHAR, config JSON, scale VARCHAR, seeds INTEGER,
    status VARCHAR, verdict VARCHAR, provenance JSON, git_sha VARCHAR, device VARCHAR,
    started_at TIMESTAMP, finished_at TIMESTAMP, wall_time DOUBLE, report VARCHAR
);
CREATE TABLE IF NOT EXISTS trials (
    key VARCHAR PRIMARY KEY, study VARCHAR, config JSON, seed INTEGER, status VARCHAR,
    error VARCHAR, duration DOUBLE, device VARCHAR, run_id VARCHAR, finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS run_trials (run_id VARCHAR, key VARCHAR, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS records (
    run_id VARCHAR, trial_key VARCHAR, source VARCHAR, observable VARCHAR, series VARCHAR,
    coord_name VARCHAR, coord DOUBLE, value DOUBLE
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR, name VARCHAR, value DOUBLE, stderr DOUBLE, tolerance DOUBLE,
    comparator VARCHAR, passed BOOLEAN, description VARCHAR
);
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS bound DOUBLE;
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS level DOUBLE;
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS expected DOUBLE;
ALTER TABLE trials ADD COLUMN IF NOT EXISTS threads INTEGER;
"""

#: the columns each learnmech table must have (a database whose same-named tables lack
#: them belongs to someone else and is left untouched)
_REQUIRED = {
    "runs": {"id", "study", "config", "scale", "seeds", "status", "verdict", "provenance"},
    "trials": {"key", "study", "config", "seed", "status", "error", "duration", "run_id"},
    "run_trials": {"run_id", "key"},
    "records": {"run_id", "trial_key", "source", "observable", "series", "coord", "value"},
    "metrics": {"run_id", "name", "value", "stderr", "tolerance", "comparator", "passed"},
}

_METRIC_COLS = (
    "name",
    "value",
    "stderr",
    "tolerance",
    "comparator",
    "passed",
    "description",
    "kind",
    "bound",
    "level",
    "expected",
)


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def safe_run_id(run_id: str) -> str:
    """A run id that may name a folder: letters, digits, ``_``, ``.``, ``-``, not starting
    with a dot and without ``..``. Ids come from the store, which a user may hand over,
    so every path built from one goes through here (``../../x`` would write elsewhere)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise StoreError(f"run id {run_id!r} is not a valid id (letters, digits, _ . -)")
    return run_id


def _check_magic(path: Path) -> None:
    """An existing file must be a DuckDB database (bytes 8–11 read ``DUCK``); DuckDB's own
    message for a CSV or text file given as the store is about in-memory databases."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except (FileNotFoundError, IsADirectoryError):
        return
    except OSError as err:
        raise StoreError(f"cannot open store {path}: {err.strerror or err}") from None
    if len(head) >= 12 and head[8:12] != b"DUCK":
        raise StoreError(
            f"cannot open store {path}: not a DuckDB database (a learnmech store is the "
            ".duckdb file a run writes)"
        )


class StoreError(UserError):
    """The store file is missing, corrupt, locked or lacks the requested run."""


#: seconds a process waits for another one's write to the store to finish
LOCK_WAIT = 60.0


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _insert_rows(con: Any, target: str, rows: Sequence[Sequence[Any]], chunk: int = 256) -> None:
    """``INSERT INTO target VALUES (…), (…), …`` in statements of ``chunk`` rows: DuckDB's
    ``executemany`` runs one statement per row, ~2 ms each."""
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        one = "(" + ", ".join("?" * len(part[0])) + ")"
        con.execute(
            f"INSERT INTO {target} VALUES " + ", ".join([one] * len(part)),
            [v for row in part for v in row],
        )


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def _curves_table(
    curves: Iterable[Curve], run_id: str | None, trial_key: str | None, source: str
) -> pa.Table:
    cols: dict[str, list[Any]] = {
        k: [] for k in ("observable", "series", "coord_name", "coord", "value")
    }
    sizes = []
    for c in curves:
        n = c.coords.size
        sizes.append(n)
        cols["observable"].append(np.full(n, c.observable, dtype=object))
        cols["series"].append(np.full(n, c.series, dtype=object))
        cols["coord_name"].append(np.full(n, c.coord_name, dtype=object))
        cols["coord"].append(c.coords)
        cols["value"].append(c.values)
    total = int(sum(sizes))
    if total == 0:
        arrays = {k: np.array([], dtype=object) for k in cols}
        arrays["coord"] = np.array([], dtype=np.float64)
        arrays["value"] = np.array([], dtype=np.float64)
    else:
        arrays = {k: np.concatenate(v) for k, v in cols.items()}
    return pa.table(
        {
            "run_id": pa.array([run_id] * total, type=pa.string()),
            "trial_key": pa.array([trial_key] * total, type=pa.string()),
            "source": pa.array([source] * total, type=pa.string()),
            "observable": pa.array(arrays["observable"], type=pa.string()),
            "series": pa.array(arrays["series"], type=pa.string()),
            "coord_name": pa.array(arrays["coord_name"], type=pa.string()),
            "coord": pa.array(arrays["coord"], type=pa.float64()),
            "value": pa.array(arrays["value"], type=pa.float64()),
        }
    )


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pa.Table:
    rel = con.sql(sql, params=params)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


class Store:
    """A DuckDB-backed run store.

    Arguments:
        path: the database file (created with its folder when ``create=True``).
        read_only: open without write access (for ``runs list/show/export``).
        create: create the file if it does not exist (else a missing file is an error).
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_STORE,
        *,
        read_only: bool = False,
        create: bool = True,
        wait: float = LOCK_WAIT,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory, expected a .duckdb file")
        if not self.path.exists():
            if read_only or not create:
                raise StoreError(f"no store at {self.path} (run a study first, or pass --store)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # DuckDB lets one process at a time open a file for writing. A run holds the store
        # only while it writes (milliseconds per batch of trials), so a second process
        # waits for its turn, up to ``wait`` seconds, rather than failing at once.
        _check_magic(self.path)
        deadline = time.monotonic() + max(float(wait), 0.0)
        pause = 0.02
        while True:
            try:
                self.con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as err:
                msg = str(err).splitlines()[0]
                if "lock" not in msg.lower():
                    raise StoreError(f"cannot open store {self.path}: {msg}") from None
                if time.monotonic() >= deadline:
                    pid = re.search(r"PID (\d+)", msg)
                    who = f" (PID {pid.group(1)})" if pid else ""
                    raise StoreError(
                        f"store {self.path} is in use by another process{who}: it writes "
                        f"there now; waited {wait:g} s — try again when it is done"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
            except duckdb.Error as err:
                msg = str(err).splitlines()[0]
                raise StoreError(f"cannot open store {self.path}: {msg}") from None
        try:
            self._check_tables()
            if not read_only:
                self.con.execute(_SCHEMA)
            else:
                self.con.execute("SELECT count(*) FROM runs").fetchone()
        except duckdb.Error as err:
            self.con.close()
            msg = str(err).splitlines()[0]
            raise StoreError(f"cannot open store {self.path}: {msg}") from None

    def close(self) -> None:
        self.con.close()

    def _check_tables(self) -> None:
        """Refuse, before writing anything, a database whose tables named like
        learnmech's have other columns (someone else's ``runs`` table)."""
        have: dict[str, set[str]] = {}
        for table, column in self.con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main'"
        ).fetchall():
            have.setdefault(table, set()).add(column)
        for table, need in _REQUIRED.items():
            if table in have and not need <= have[table]:
                self.con.close()
                missing = ", ".join(sorted(need - have[table]))
                raise StoreError(
                    f"{self.path} has a table {table!r} that is not learnmech's (no column "
                    f"{missing}); nothing was written — pass another --store"
                )

    def _has_column(self, table: str, column: str) -> bool:
        """Whether ``table`` has ``column`` (a store written by an older learnmech and
        opened read-only has not been migrated)."""
        rows = self.con.execute(f"PRAGMA table_info('{table}')").fetchall()
        return any(r[1] == column for r in rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing (driver only) ----------------------------------------------------------
    def begin_run(
        self,
        run_id: str,
        study: str,
        config: dict[str, Any],
        scale: str,
        seeds: int,
        provenance: dict[str, Any],
    ) -> None:
        """Insert a run, or mark an existing one (same id = same study and config) running."""
        exists = self.con.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone()
        if exists:
            self.con.execute(
                "UPDATE runs SET status='running', provenance=?, git_sha=?, device=?, "
                "started_at=?, finished_at=NULL WHERE id=?",
                [
                    json.dumps(provenance),
                    provenance.get("git_sha"),
                    provenance.get("device"),
                    _now(),
                    run_id,
                ],
            )
        else:
            self.con.execute(
                "INSERT INTO runs VALUES "
                "(?, ?, ?, ?, ?, 'running', NULL, ?, ?, ?, ?, NULL, NULL, NULL)",
                [
                    run_id,
                    study,
                    json.dumps(config, sort_keys=True),
                    scale,
                    seeds,
                    json.dumps(provenance),
                    provenance.get("git_sha"),
                    provenance.get("device"),
                    _now(),
                ],
            )

    def link_trials(self, run_id: str, keys: Iterable[str]) -> None:
        """Make ``keys`` the run's trials, exactly: a resumed run whose grid or trial hashing
        changed since (a new version) keeps none of its stale links, so its trials are
        not counted twice. The stale trials stay in the store for runs that link them."""
        keys = list(keys)
        self.con.execute(
            "DELETE FROM run_trials WHERE run_id = ? AND key NOT IN (SELECT unnest(?::VARCHAR[]))",
            [run_id, keys],
        )
        if keys:  # one statement: executemany costs a statement per row (~2 ms each)
            self.con.execute(
                "INSERT OR IGNORE INTO run_trials SELECT ?, unnest(?::VARCHAR[])", [run_id, keys]
            )

    def done_keys(self, keys: Iterable[str]) -> set[str]:
        """Keys among ``keys`` whose trial finished (ok or diverged); errors are retried."""
        keys = list(keys)
        if not keys:
            return set()
        got = self.con.execute(
            "SELECT key FROM trials WHERE status IN ('ok', 'diverged') AND key IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [keys],
        ).fetchall()
        return {k for (k,) in got}

    def add_trial(self, run_id: str, study: str, result: TrialResult, device: str) -> None:
        """Commit one trial with all its records atomically (replacing an earlier error)."""
        self.add_trials(run_id, study, [result], device)

    def add_trials(
        self, run_id: str, study: str, results: Sequence[TrialResult], device: str
    ) -> None:
        """Commit a job's trials with all their records in one transaction (replacing
        earlier errors): a killed sweep loses no finished job and leaves no half-written
        one. One transaction per job, not per trial, keeps many-seed sweeps fast."""
        if not results:
            return
        keys = [r.key for r in results]
        tables = [_curves_table(r.curves, None, r.key, "experiment") for r in results]
        table = pa.concat_tables(tables)
        rows = [
            [
                r.key,
                study,
                json.dumps(r.point, sort_keys=True),
                r.seed,
                r.status,
                r.error,
                r.duration,
                r.device or device,
                run_id,
                _now(),
                r.threads,
            ]
            for r in results
        ]
        with self._transaction():
            self.con.execute(
                "DELETE FROM records WHERE trial_key IN (SELECT unnest(?::VARCHAR[]))", [keys]
            )
            self.con.execute(
                "DELETE FROM trials WHERE key IN (SELECT unnest(?::VARCHAR[]))", [keys]
            )
            _insert_rows(
                self.con,
                "trials (key, study, config, seed, status, error, duration, device, run_id, "
                "finished_at, threads)",
                rows,
            )
            if table.num_rows:
                self.con.register("_new_records", table)
                self.con.execute("INSERT INTO records SELECT * FROM _new_records")
                self.con.unregister("_new_records")

    def set_theory(self, run_id: str, curves: Iterable[Curve]) -> None:
        table = _curves_table(curves, run_id, None, "theory")
        with self._transaction():
            self.con.execute("DELETE FROM records WHERE run_id = ? AND source = 'theory'", [run_id])
            self.con.register("_new_records", table)
            self.con.execute("INSERT INTO records SELECT * FROM _new_records")
            self.con.unregister("_new_records")

    def set_metrics(self, run_id: str, metrics: Iterable[Metric]) -> None:
        rows = [(run_id, *(getattr(m, c) for c in _METRIC_COLS)) for m in metrics]
        cols = ", ".join(("run_id", *_METRIC_COLS))
        with self._transaction():
            self.con.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
            if rows:
                _insert_rows(self.con, f"metrics ({cols})", rows)

    def set_provenance(self, run_id: str, provenance: dict[str, Any]) -> None:
        self.con.execute(
            "UPDATE runs SET provenance=? WHERE id=?", [json.dumps(provenance), run_id]
        )

    def set_run_device(self, run_id: str, device: str) -> None:
        """Record the device the run's trials actually ran on."""
        self.con.execute("UPDATE runs SET device=? WHERE id=?", [device, run_id])

    def finish_run(
        self, run_id: str, status: str, verdict: str | None, wall_time: float, report: str | None
    ) -> None:
        self.con.execute(
            "UPDATE runs SET status=?, verdict=?, finished_at=?, wall_time=?, report=? WHERE id=?",
            [status, verdict, _now(), wall_time, report, run_id],
        )

    # -- reading ------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first; a ``running`` run whose driver is gone (killed) shows
        as ``interrupted`` (see :meth:`stale_runs`)."""
        cur = self.con.execute(
            "SELECT r.id, r.study, r.scale, r.seeds, r.status, r.verdict, r.started_at, "
            "r.wall_time, (SELECT count(*) FROM run_trials t WHERE t.run_id = r.id) AS trials "
            "FROM runs r ORDER BY r.started_at"
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        stale = set(self.stale_runs())
        for r in rows:
            if r["id"] in stale:
                r["status"] = "interrupted"
        return rows

    def stale_runs(self) -> list[str]:
        """Runs marked ``running`` whose driver process, on this host, no longer exists: a
        driver killed by SIGKILL (or a crashed machine) never writes its status. Runs
        started elsewhere, or without a recorded driver, are left as they are."""
        rows = self.con.execute(
            "SELECT id, provenance->>'driver_pid', provenance->>'host' FROM runs "
            "WHERE status = 'running'"
        ).fetchall()
        host = platform.node()
        out = []
        for run_id, pid, where in rows:
            if pid is None or where != host or not str(pid).isdigit():
                continue
            if not _process_alive(int(pid)):
                out.append(run_id)
        return out

    def reap_stale_runs(self) -> list[str]:
        """Mark :meth:`stale_runs` ``interrupted`` in the store; returns their ids."""
        stale = self.stale_runs()
        for run_id in stale:
            self.con.execute(
                "UPDATE runs SET status = 'interrupted' WHERE id = ? AND status = 'running'",
                [run_id],
            )
        return stale

    def control_runs(self, study: str) -> list[dict[str, Any]]:
        """The newest finished run of each negative control of ``study``: id, control,
        scale, verdict, and each claim's pass/fail."""
        rows = self.con.execute(
            "SELECT id, provenance->>'control' AS control, scale, verdict, finished_at "
            "FROM runs WHERE study = ? AND provenance->>'control' IS NOT NULL "
            "AND status LIKE 'finished%' ORDER BY finished_at",
            [study],
        ).fetchall()
        newest = {r[1]: r for r in rows}
        out = []
        for run_id, control, scale, verdict, finished in newest.values():
            claims = self.con.execute(
                "SELECT name, passed FROM metrics WHERE run_id = ? ORDER BY rowid", [run_id]
            ).fetchall()
            out.append(
                {
                    "id": run_id,
                    "control": control,
                    "scale": scale,
                    "verdict": verdict,
                    "finished_at": finished,
                    "claims": dict(claims),
                }
            )
        return out

    def resolve(self, run: str) -> str:
        """Full run id from an id or a unique prefix."""
        got = self.con.execute(
            # a prefix match, not LIKE: '%' and '_' in what the user typed are characters
            "SELECT id FROM runs WHERE starts_with(id, ?) ORDER BY id",
            [run],
        ).fetchall()
        if not got:
            raise StoreError(f"no run {run!r} in {self.path}")
        if len(got) > 1 and got[0][0] != run:
            raise StoreError(f"run prefix {run!r} is ambiguous: {', '.join(g[0] for g in got)}")
        return got[0][0]

    def run(self, run: str) -> dict[str, Any]:
        run_id = self.resolve(run)
        cur = self.con.execute("SELECT * FROM runs WHERE id = ?", [run_id])
        cols = [d[0] for d in cur.description]
        row = dict(zip(cols, cur.fetchone(), strict=True))
        for k in ("config", "provenance"):
            if row.get(k):
                row[k] = json.loads(row[k])
        return row

    def metrics(self, run: str) -> list[Metric]:
        run_id = self.resolve(run)
        have = {r[0] for r in self.con.execute("DESCRIBE metrics").fetchall()}
        cols = [c for c in _METRIC_COLS if c in have]  # a store written before v2 lacks some
        rows = self.con.execute(
            f"SELECT {', '.join(cols)} FROM metrics WHERE run_id = ? ORDER BY rowid", [run_id]
        ).fetchall()
        out = []
        for r in rows:
            kw = dict(zip(cols, r, strict=True))
            kw["kind"] = kw.get("kind") or "point"
            out.append(Metric(**kw))
        return out

    def theory(self, run: str) -> list[Curve]:
        run_id = self.resolve(run)
        return self._curves("run_id = ? AND source = 'theory'", [run_id])[None]

    def errors(self, run: str) -> list[tuple[dict[str, Any], int, str]]:
        """The run's failed trials as (point, seed, error text), without their curves."""
        run_id = self.resolve(run)
        rows = self.con.execute(
            "SELECT t.config, t.seed, t.error FROM trials t JOIN run_trials rt ON rt.key = "
            "t.key WHERE rt.run_id = ? AND t.status = 'error' ORDER BY t.config, t.seed",
            [run_id],
        ).fetchall()
        return [(json.loads(r[0]), int(r[1]), r[2] or "") for r in rows]

    def trials(self, run: str) -> list[TrialResult]:
        """Every trial of the run with its curves (ordered by config point and seed)."""
        run_id = self.resolve(run)
        rows = self.con.execute(
            "SELECT t.key, t.config, t.seed, t.status, t.error, t.duration, t.device, "
            f"{'t.threads' if self._has_column('trials', 'threads') else 'NULL'} FROM trials t "
            "JOIN run_trials rt ON rt.key = t.key WHERE rt.run_id = ? ORDER BY t.config, t.seed",
            [run_id],
        ).fetchall()
        curves = self._curves(
            "trial_key IN (SELECT key FROM run_trials WHERE run_id = ?)", [run_id]
        )
        return [
            TrialResult(
                key=r[0],
                point=json.loads(r[1]),
                seed=r[2],
                status=r[3],
                error=r[4],
                duration=r[5],
                curves=curves.get(r[0], []),
                device=r[6],
                threads=r[7],
            )
            for r in rows
        ]

    def _curves(self, where: str, params: list[Any]) -> dict[str | None, list[Curve]]:
        tbl = _arrow(
            self.con,
            f"SELECT trial_key, observable, series, coord_name, coord, value FROM records "
            f"WHERE {where} ORDER BY trial_key, observable, series, rowid",
            params,
        )
        out: dict[str | None, list[Curve]] = {None: []}
        n = tbl.num_rows
        if n == 0:
            return out
        keys = tbl.column("trial_key").to_pylist()
        obs = tbl.column("observable").to_pylist()
        series = tbl.column("series").to_pylist()
        cnames = tbl.column("coord_name").to_pylist()
        coords = tbl.column("coord").to_numpy()
        values = tbl.column("value").to_numpy()
        ident = list(zip(keys, obs, series, cnames, strict=True))
        start = 0
        for i in range(1, n + 1):
            if i == n or ident[i] != ident[start]:
                key, o, ser, cname = ident[start]
                out.setdefault(key, []).append(
                    Curve(o, cname, coords[start:i].copy(), values[start:i].copy(), ser or "")
                )
                start = i
        return out

    def export(self, run: str, fmt: str, out_dir: str | Path) -> list[Path]:
        """Write the run's records, metrics and trials as Parquet or CSV files."""
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"format must be 'parquet' or 'csv', got {fmt!r}")
        run_id = self.resolve(run)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        queries = {
            "records": (
                "SELECT coalesce(r.run_id, ?) AS run_id, r.trial_key, r.source, t.config, t.seed, "
                "r.observable, r.series, r.coord_name, r.coord, r.value FROM records r "
                "LEFT JOIN trials t ON t.key = r.trial_key WHERE r.run_id = ? OR r.trial_key IN "
                "(SELECT key FROM run_trials WHERE run_id = ?)",
                [run_id, run_id, run_id],
            ),
            "metrics": ("SELECT * FROM metrics WHERE run_id = ?", [run_id]),
            "trials": (
                "SELECT t.* FROM trials t JOIN run_trials rt ON rt.key = t.key WHERE rt.run_id = ?",
                [run_id],
            ),
        }
        paths = []
        for name, (sql, params) in queries.items():
            path = out / f"{safe_run_id(run_id)}_{name}.{fmt}"
            tmp = path.with_suffix(path.suffix + ".tmp")
            rel = _arrow(self.con, sql, params)
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(rel, tmp)
            else:
                import pyarrow.csv as pcsv

                pcsv.write_csv(rel, tmp)
            tmp.replace(path)  # atomic: no half-written export
            paths.append(path)
        return paths
