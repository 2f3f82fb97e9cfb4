"""The database engine (Piccolo) and the few helpers the ledger needs around it.

Piccolo resolves its engine from ``coalition.piccolo_conf``, which builds it from
``COALITION_DATABASE_URL``; entry points call :func:`configure` before touching any table.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

Row = dict[str, Any]

# SQLite waits this long for the write lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 60


def engine_from_url(url: str) -> Engine[Any]:
    """``sqlite:///relative/or//absolute/path`` or ``postgresql://user@host:port/db``."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ValueError("sqlite URL needs a path: sqlite:///path/to/file.sqlite3")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteEngine(path=path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
    if scheme in ("postgres", "postgresql"):
        return PostgresEngine(config={"dsn": url})
    raise ValueError(
        f"unsupported database URL scheme {scheme!r} (use sqlite:/// or postgresql://)"
    )


def configure(database_url: str) -> None:
    """Point Piccolo (tables, migrations) at ``database_url`` for this process."""
    os.environ["COALITION_DATABASE_URL"] = database_url
    os.environ["PICCOLO_CONF"] = "coalition.piccolo_conf"
    engine.cache_clear()


@functools.cache
def engine() -> Engine[Any]:
    """Piccolo's engine, found once: ``engine_finder`` imports the configuration module on
    every call, which cost 4% of a server worker's CPU when every query asked for it."""
    from piccolo.engine.finder import engine_finder

    found = engine_finder()
    if found is None:
        raise RuntimeError("no database configured: call coalition.db.configure() first")
    return found


def is_postgres() -> bool:
    return engine().engine_type == "postgres"


# A write must commit within this many seconds of starting. Entries carry the time they were
# posted; settlement waits a grace period (minutes) after a period ends, so an entry that
# committed later than this could miss its period's run. Slower writes roll back instead.
WRITE_DEADLINE_SECONDS = 30.0


class WriteDeadlineExceeded(Exception):
    """A write transaction took too long and was rolled back; retrying is safe."""


@asynccontextmanager
async def write_transaction() -> AsyncIterator[None]:
    """One write transaction per use case, never nested, committed within the write deadline.

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock up front, so two writers never both read
    and then fail to upgrade (the cause of "database is locked" under load).
    PostgreSQL: READ COMMITTED; services lock the rows they change (member first) in a fixed order.
    """
    db = engine()
    started = time.monotonic()
    if isinstance(db, SQLiteEngine):
        async with db.transaction(transaction_type=TransactionType.immediate, allow_nested=False):
            yield
            _check_deadline(started)
    else:
        async with db.transaction(allow_nested=False):
            yield
            _check_deadline(started)


@asynccontextmanager
async def read_snapshot() -> AsyncIterator[None]:
    """Reads that are compared with each other see one consistent snapshot of the database,
    however many writers commit meanwhile (PostgreSQL: REPEATABLE READ; SQLite: one read
    transaction, which in WAL mode sees the database as of its first read)."""
    db = engine()
    if isinstance(db, SQLiteEngine):
        async with db.transaction(transaction_type=TransactionType.deferred, allow_nested=False):
            yield
    else:
        async with db.transaction(allow_nested=False):
            await db.run_ddl("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield


def _check_deadline(started: float) -> None:
    elapsed = time.monotonic() - started
    if elapsed > WRITE_DEADLINE_SECONDS:
        raise WriteDeadlineExceeded(f"write took {elapsed:.1f} s; rolled back")


async def fetch(sql: str, *args: Any) -> list[Row]:
    """Run hand-written SQL through Piccolo's engine; ``{}`` are placeholders for ``args``."""
    db = engine()
    rows: Sequence[Any]
    if isinstance(db, PostgresEngine):
        rows = await _postgres_fetch(db, numbered(sql), args)
    else:
        rows = await db.run_querystring(QueryString(sql, *args))
    return [dict(row) for row in rows]


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """``sql`` as Piccolo compiles it for PostgreSQL (``{}`` -> ``$1, $2, ...``), once per text:
    compiling on every call cost 15-55 µs a statement on the hot path."""
    query, _ = QueryString(sql, *[None] * sql.count("{}")).compile_string(engine_type="postgres")
    return query


async def _postgres_fetch(db: PostgresEngine, query: str, args: Sequence[Any]) -> Sequence[Any]:
    """What ``run_querystring`` does with a compiled query: the current transaction's
    connection, else one of its own."""
    transaction = db.current_transaction.get()
    if transaction is not None:
        return await transaction.connection.fetch(query, *args)  # type: ignore[no-any-return]
    async with _connection(db) as connection:
        return await connection.fetch(query, *args)  # type: ignore[no-any-return]


@asynccontextmanager
async def _connection(db: PostgresEngine) -> AsyncIterator[Any]:
    """A connection from Piccolo's pool, or a new one when no pool was started."""
    if db.pool is not None:
        async with db.pool.acquire() as connection:
            yield connection
        return
    connection = await db.get_new_connection()
    try:
        yield connection
    finally:
        await connection.close()


async def fetch_one(sql: str, *args: Any) -> Row | None:
    rows = await fetch(sql, *args)
    return rows[0] if rows else None


async def execute(sql: str, *args: Any) -> None:
    await fetch(sql, *args)


async def copy_csv(sql: str, args: Sequence[Any], sink: Callable[[bytes], Awaitable[None]]) -> None:
    """PostgreSQL only: stream the rows of ``sql`` (``$n`` placeholders) as CSV into ``sink``,
    formatted by the server (``COPY ... TO STDOUT``): no row passes through Python objects."""
    db = engine()
    assert isinstance(db, PostgresEngine), "COPY is PostgreSQL's"
    async with _connection(db) as connection:
        await connection.copy_from_query(sql, *args, output=sink, format="csv")


def for_update() -> str:
    """Row lock clause: PostgreSQL only (SQLite's IMMEDIATE transaction already serialises)."""
    return " FOR UPDATE" if is_postgres() else ""


# The partner API's connections plan each prepared statement once (a generic plan) and reuse
# the plan on every call: its statements are short and keyed, and one plan serves them all.
# PostgreSQL's default (auto) plans the first five calls of each statement afresh, and every
# call of one whose plan for the actual values looks cheaper (as for arrays of known length).
# The write statements' text varies with what a batch holds, so most of their calls were among
# their first five. With one plan each, PostgreSQL spends a sixth less CPU per request
# (docs/performance.md).
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


async def start(pool_max_size: int = 20, server_settings: dict[str, str] | None = None) -> None:
    """Start the connection pool; ``server_settings`` are its connections' PostgreSQL settings."""
    db = engine()
    if isinstance(db, PostgresEngine):
        await db.start_connection_pool(
            min_size=1,
            max_size=pool_max_size,
            reset=_keep_session_state,
            server_settings=server_settings or {},
        )


async def _keep_session_state(connection: Any) -> None:
    """Run instead of asyncpg's reset query (advisory unlocks, ``CLOSE ALL``, ``UNLISTEN *``,
    ``RESET ALL``) when a connection goes back to the pool. That query is a round trip on every
    release (one per pool checkout: docs/architecture.md), and it undoes session state this
    code never makes: its settings are transaction-scoped (``SET TRANSACTION``, ``SET LOCAL``)
    and it takes no session locks or listeners. asyncpg still rolls back an open transaction
    before this runs."""


async def stop() -> None:
    db = engine()
    if isinstance(db, PostgresEngine):
        await db.close_connection_pool()
