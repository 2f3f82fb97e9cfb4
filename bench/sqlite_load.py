"""The benchmarks' SQLite plumbing: a scratch database file migrated exactly as the app migrates
one (``python -m coalition.cli migrate``: WAL mode, then Piccolo's migrations), and bulk loading
with ``sqlite3`` ``executemany`` in large transactions instead of PostgreSQL's COPY.

During a bulk load only, the loading connection runs with ``synchronous=OFF`` (no fsync per
commit), a large page cache and in-memory temp storage; the journal stays WAL, as the app
leaves it. These are per-connection settings: the server, the settlement child and the auditor
open their own connections with SQLite's (and Piccolo's) defaults, as in production. At the end
the WAL is checkpointed into the main file, so the measured processes start from a clean file.

``load_settlement`` loads ``bench.settlement_scale.Generator`` chunks; ``SqliteCopyConnection``
is the handful of asyncpg calls ``bench.api_load.seed`` makes (``copy_records_to_table``,
``transaction``, ``execute``, ``close``), done with sqlite3, so both benchmarks seed the very same
rows on either database.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.settlement_scale import Generator

REPO = Path(__file__).resolve().parent.parent
# The loading connection only (see the module docstring).
LOAD_PRAGMAS = (
    ("synchronous", "OFF"),
    ("cache_size", "-262144"),  # KiB: 256 MiB of page cache
    ("temp_store", "MEMORY"),
)
Rows = dict[str, list[tuple[Any, ...]]]


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_url(path: Path) -> str:
    """``coalition.db.engine_from_url`` form of an absolute path: ``sqlite:////abs/path``."""
    return "sqlite:///" + str(path.resolve())


def url_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def remove_database(path: Path) -> None:
    """The database file and its WAL / shared-memory / rollback-journal companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def migrate(url: str, timeout: float = 300) -> float:
    """``python -m coalition.cli migrate`` against ``url``, as the app's operators run it
    (other ``COALITION_*`` variables of this environment are left out); returns seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    env["COALITION_DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "coalition.cli", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - started


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        name: conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "cache_size", "temp_store", "page_size")
    }


@contextlib.contextmanager
def bulk_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection tuned for loading (``LOAD_PRAGMAS``), in autocommit mode (transactions are
    explicit). Afterwards its settings are restored, the WAL is checkpointed and truncated."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        before = {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name, _ in LOAD_PRAGMAS}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if journal != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        for name, value in LOAD_PRAGMAS:
            conn.execute(f"PRAGMA {name}={value}")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for name, value in before.items():
                conn.execute(f"PRAGMA {name}={value}")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if journal != "wal":
                conn.execute(f"PRAGMA journal_mode={journal}")
    finally:
        conn.close()


def insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'


def defer_indexes(conn: sqlite3.Connection, tables: Sequence[str]) -> list[str]:
    """Drop the explicitly created indexes of ``tables`` (not the automatic ones behind PRIMARY
    KEY / UNIQUE columns) and return their definitions, to re-create after the load."""
    marks = ", ".join("?" * len(tables))
    rows = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({marks})",
        list(tables),
    ).fetchall()
    for name, _ in rows:
        conn.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in rows]


def table_sizes_mb(conn: sqlite3.Connection, tables: Sequence[str]) -> dict[str, float] | None:
    """Bytes per table including its indexes (``dbstat``; None if SQLite was built without it)."""
    try:
        rows = conn.execute(
            "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s"
            " JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
        ).fetchall()
    except sqlite3.OperationalError:
        return None
    return {t: round(b / 2**20, 1) for t, b in sorted(rows) if t in tables}


def load_settlement(
    path: Path,
    gen: Generator,
    *,
    partner_rows: list[tuple[Any, ...]],
    partner_columns: Sequence[str],
    table_columns: Mapping[str, Sequence[str]],
    progress_bar: Any,
    defer: bool = True,
    analyze: bool = True,
    maxrss_mb: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """``bench.settlement_scale.load`` for SQLite: the same generated rows, one transaction per
    generator chunk (the next chunk is generated in a thread meanwhile; sqlite3 releases the
    GIL while SQLite works). Secondary indexes are dropped first and re-created afterwards;
    ``analyze`` runs ANALYZE (planner statistics, like PostgreSQL's VACUUM ANALYZE)."""
    result: dict[str, Any] = {}
    with bulk_connection(path) as conn:
        result["load_pragmas"] = pragmas(conn)
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(insert_sql("partners", partner_columns), partner_rows)
        index_defs = defer_indexes(conn, list(table_columns)) if defer else []
        conn.execute("COMMIT")
        sql = {t: insert_sql(t, cols) for t, cols in table_columns.items()}
        insert_seconds = gen_seconds = 0.0

        def generate(c: int) -> tuple[Rows, float]:
            s = time.perf_counter()
            rows = gen.chunk(c)
            return rows, time.perf_counter() - s

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: Future[tuple[Rows, float]] | None = pool.submit(generate, 0)
            for c in range(gen.chunks):
                assert pending is not None
                rows, g = pending.result()
                gen_seconds += g
                pending = pool.submit(generate, c + 1) if c + 1 < gen.chunks else None
                s = time.perf_counter()
                conn.execute("BEGIN")
                for table in table_columns:
                    if rows[table]:
                        conn.executemany(sql[table], rows[table])
                conn.execute("COMMIT")
                insert_seconds += time.perf_counter() - s
                progress_bar.update(len(rows["postings"]))
                del rows
        progress_bar.close()
        t_rows = time.perf_counter()
        conn.execute("BEGIN")
        for definition in index_defs:
            conn.execute(definition)
        conn.execute("COMMIT")
        t_index = time.perf_counter()
        if analyze:
            conn.execute("ANALYZE")
        t_analyze = time.perf_counter()
        sizes = table_sizes_mb(conn, list(table_columns))
    t_done = time.perf_counter()  # incl. the WAL checkpoint
    st = gen.stats
    rows_total = sum(
        (st.entries, st.postings, st.lots, st.movements, st.members, st.holds, len(partner_rows))
    )
    result.update(
        {
            "rows": {
                "entries": st.entries,
                "postings": st.postings,
                "lots": st.lots,
                "lot_movements": st.movements,
                "holds": st.holds,
                "members": st.members,
                "active_members": st.active_members,
                "partners": len(partner_rows),
                "total": rows_total,
            },
            "day_entries": st.day_entries,
            "day_postings": st.day_postings,
            "history_entries": st.history_entries,
            "entries_after_period": st.after_period_entries,
            "entries_by_kind": dict(st.by_kind),
            "rows_seconds": round(t_rows - t0, 2),
            "generate_seconds_thread": round(gen_seconds, 2),
            "insert_seconds": round(insert_seconds, 2),
            "cluster_by_time_seconds": None,
            "cluster_note": "not on SQLite: rowid tables are stored in id order as loaded",
            "index_seconds": round(t_index - t_rows, 2),
            "analyze_seconds": round(t_analyze - t_index, 2),
            "checkpoint_seconds": round(t_done - t_analyze, 2),
            "seconds": round(t_done - t0, 2),
            "rows_per_second": round(rows_total / (t_rows - t0)),
            "postings_per_second": round(st.postings / (t_rows - t0)),
            "indexes_rebuilt": len(index_defs),
            "table_mb": sizes,
            "file_mb": round(path.stat().st_size / 2**20, 1),
        }
    )
    if maxrss_mb is not None:
        result["loader_peak_rss_mb"] = round(maxrss_mb())
    return result


class SqliteCopyConnection:
    """The asyncpg calls ``bench.api_load.seed`` makes, on a sqlite3 bulk connection:
    ``copy_records_to_table`` is one ``executemany`` INSERT (in the open transaction, or in a
    transaction of its own); ``execute`` runs SQL as is (SQLite syntax only)."""

    def __init__(self, url: str) -> None:
        self._cm = bulk_connection(url_path(url))
        self.conn = self._cm.__enter__()

    async def copy_records_to_table(
        self, table: str, *, records: Sequence[tuple[Any, ...]], columns: Sequence[str]
    ) -> None:
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN")
        self.conn.executemany(insert_sql(table, columns), records)
        if own:
            self.conn.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    async def execute(self, sql: str, *args: Any) -> None:
        self.conn.execute(sql, args)

    async def close(self) -> None:
        self._cm.__exit__(None, None, None)


# Entries made through the API, by kind: they carry an Idempotency-Key, and the seeded
# history's keys start with "seed-".
API_ENTRIES_SQL = (
    "SELECT kind, COUNT(*) AS n FROM entries WHERE idempotency_key IS NOT NULL"
    " AND idempotency_key NOT LIKE 'seed-%' GROUP BY kind ORDER BY kind"
)


async def entry_counts(url: str) -> dict[str, int]:
    """Entries made through the API, by kind (``API_ENTRIES_SQL``)."""
    conn = sqlite3.connect(url_path(url))
    try:
        rows = conn.execute(API_ENTRIES_SQL).fetchall()
    finally:
        conn.close()
    return {kind: n for kind, n in rows}
