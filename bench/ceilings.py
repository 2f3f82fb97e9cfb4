"""Same-run ceilings of this box, to put the partner API's throughput in proportion.

(a) ``bare_endpoint_ceiling``: a minimal Litestar app under uvicorn (separate process, same
    worker count and uvicorn settings as ``coalition serve``) with one POST endpoint that reads
    the body, verifies the same RFC 9421 Ed25519 signature with ``partners.signing``
    (parse, coverage, window, base, verify, Content-Digest) against a fixed in-memory key,
    decodes the same earn JSON strictly with msgspec into ``partners.schemas.EarnRequest`` and
    returns a tiny JSON. No database, no Redis, no access log. Driven by the same load
    generator as ``bench.api_load``.
(b) ``raw_ledger_ceiling``: raw asyncpg, ``clients`` connections each looping the minimal ledger
    write in one transaction: SELECT the member row FOR UPDATE, UPDATE its balance, INSERT the
    entry, INSERT 2 postings (one statement), INSERT a lot movement; over random members of a
    scratch database (dropped afterwards), and on one hot member row.
    ``schema="coalition"`` (default) migrates the scratch database with the real migrations, so
    the rows land in tables with the real indexes, CHECKs and append-only triggers;
    ``schema="minimal"`` uses primary keys only.
    On SQLite (``--db sqlite``, ``raw_sqlite_ledger_ceiling``): the same transaction with
    aiosqlite in ``BEGIN IMMEDIATE`` on a scratch file, one connection per client (``random``)
    and one shared connection (``one_writer``); no hot mode (see ``SQLITE_NOTE``).
(c) ``ed25519_us``: one Ed25519 verify (and sign, and the whole verification path) in us.

Run (from the repository root)::

    .venv/bin/python -m bench.ceilings --clients 16 --clients 64 --duration 15
    .venv/bin/python -m bench.ceilings --only bare --clients 64 --duration 10 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from bench.common import (
    DEFAULT_PG_ADMIN_DSN,
    HOST,
    PYTHON,
    REPO,
    Scenario,
    ServerProcess,
    Stats,
    bar,
    check_local,
    create_database,
    drive,
    drop_database,
    free_port,
    log,
    private_key_from_hex,
    table,
    temp_dir,
    unique_name,
)
from partners import signing
from partners.schemas import EarnRequest

BARE_KEYID = "bench-bare-key"
BARE_PRIVATE_HEX = "4c" * 32  # a fixed, public test key: never use it for anything real
MEMBER_PREFIX = "mem_raw_"

# --- (a) the bare endpoint ----------------------------------------------------------------------


def bare_app() -> Litestar:
    """uvicorn factory: ``bench.ceilings:bare_app``; ``@authority`` from BENCH_BARE_AUTHORITY."""
    authority = os.environ.get("BENCH_BARE_AUTHORITY", "127.0.0.1:8000")
    public_key = private_key_from_hex(BARE_PRIVATE_HEX).public_key()
    encoder = msgspec.json.Encoder()

    @post("/bare", status_code=200)
    async def bare(request: Request[Any, Any, Any]) -> Response[bytes]:
        headers = request.headers
        parsed = signing.parse_signature(headers.get("signature-input"), headers.get("signature"))
        signing.check_coverage(parsed, "POST")
        signing.check_window(parsed, int(time.time()))
        if parsed.keyid != BARE_KEYID:
            raise signing.SignatureError(signing.KEY_UNKNOWN, "unknown keyid")
        covered = {
            name: ", ".join(headers.getall(name))
            for name in parsed.components
            if not name.startswith("@") and name in headers
        }
        base = signing.signature_base(
            parsed,
            method="POST",
            authority=authority,
            raw_path=request.scope["raw_path"].decode("latin-1"),
            raw_query=request.scope["query_string"].decode("latin-1"),
            headers=covered,
        )
        signing.verify_signature(parsed, base, public_key)
        body = await request.body()
        signing.check_content_digest(headers.get("content-digest"), body)
        data = msgspec.json.decode(body, type=EarnRequest, strict=True)
        return Response(
            encoder.encode({"ok": True, "member_id": data.member_id}),
            media_type="application/json",
        )

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    def refused(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
        status = 401 if isinstance(error, signing.SignatureError) else 400
        return Response(
            encoder.encode({"error": type(error).__name__, "detail": str(error)[:200]}),
            status_code=status,
            media_type="application/json",
        )

    return Litestar(
        route_handlers=[bare, health],
        exception_handlers={
            signing.SignatureError: refused,
            msgspec.ValidationError: refused,
            msgspec.DecodeError: refused,
        },
        openapi_config=None,
        debug=False,
    )


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's own HTTP protocol, plus TCP_NODELAY on every accepted connection.

    uvicorn <= 0.54 binds the listening socket itself when ``workers > 1`` with ``proto`` 0;
    accepted sockets inherit it and asyncio only sets TCP_NODELAY when ``proto ==
    IPPROTO_TCP``, so Nagle stays on and each keep-alive response waits ~40 ms for the
    client's delayed ACK (Kludex/uvicorn#3149). This restores what ``workers=1`` gets.
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def serve(app: str, port: int, workers: int, nodelay: bool) -> int:
    """The same ``uvicorn.run`` arguments as ``coalition serve`` (partners/commands.py:
    cmd_serve), optionally with :class:`NoDelayHTTPProtocol`."""
    import uvicorn

    # Without ``nodelay``: the loop and HTTP parser ``coalition serve`` uses (uvloop sets
    # TCP_NODELAY itself). ``nodelay``: asyncio + uvicorn's auto protocol, with the flag set.
    extra: dict[str, Any] = (
        {"http": "bench.ceilings:NoDelayHTTPProtocol"}
        if nodelay
        else {"loop": "uvloop", "http": "httptools"}
    )
    uvicorn.run(
        app,
        factory=True,
        host=HOST,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        **extra,
    )
    return 0


def serve_argv(app: str, port: int, workers: int, nodelay: bool) -> list[str]:
    argv = [
        PYTHON,
        "-m",
        "bench.ceilings",
        "serve",
        "--app",
        app,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return argv + (["--nodelay"] if nodelay else [])


async def bare_endpoint_ceiling(
    clients: int,
    duration_seconds: float,
    *,
    warmup_seconds: float = 3.0,
    client_processes: int = 1,
    workers: int = 2,
    nodelay: bool = True,
    signer: str = "ours",
    progress: bool = True,
    quiet_seconds: float = 0.0,
) -> dict[str, Any]:
    """Signed POSTs/s of a Litestar endpoint that only verifies and decodes (no DB, no Redis).
    ``nodelay=False`` serves exactly as ``coalition serve --workers 2`` does today, i.e. with
    Nagle on (see :class:`NoDelayHTTPProtocol`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    env["BENCH_BARE_AUTHORITY"] = f"{HOST}:{port}"
    with temp_dir("bench_bare_") as tmp:
        server = ServerProcess(
            serve_argv("bench.ceilings:bare_app", port, workers, nodelay),
            env,
            port,
            tmp / "server.log",
        )
        server.start()
        try:
            await server.wait_ready()
            result = await drive(
                scenario_config={
                    "scenario": "bare",
                    "port": port,
                    "authority": f"{HOST}:{port}",
                    "keyid": BARE_KEYID,
                    "private_hex": BARE_PRIVATE_HEX,
                    "signer": signer,
                },
                clients=clients,
                duration_seconds=duration_seconds,
                warmup_seconds=warmup_seconds,
                processes=client_processes,
                server=server,
                label="bare endpoint",
                progress=progress,
                quiet_seconds=quiet_seconds,
            )
        finally:
            server.stop()
    result["workers"] = workers
    result["nodelay"] = nodelay
    result["signer"] = signer
    return result


# --- (b) the raw ledger write ---------------------------------------------------------------------

MINIMAL_SCHEMA = [
    "CREATE TABLE members (id varchar(40) PRIMARY KEY, status varchar(16) NOT NULL DEFAULT"
    " 'active', available_points bigint NOT NULL DEFAULT 0, held_points bigint NOT NULL"
    " DEFAULT 0, debt_points bigint NOT NULL DEFAULT 0, created_at_us bigint NOT NULL DEFAULT 0,"
    " card_number varchar(19))",
    "CREATE TABLE entries (id varchar(40) PRIMARY KEY, kind varchar(24) NOT NULL, partner_id"
    " varchar(64), member_id varchar(40), points bigint NOT NULL, amount_minor bigint, currency"
    " varchar(3), order_ref varchar(128), key_id varchar(128), idempotency_key varchar(255),"
    " posted_at_us bigint NOT NULL, posting_count integer NOT NULL)",
    "CREATE TABLE postings (id bigserial PRIMARY KEY, entry_id varchar(40) NOT NULL, account"
    " varchar(120) NOT NULL, points bigint NOT NULL, posted_at_us bigint NOT NULL)",
    "CREATE TABLE lot_movements (id bigserial PRIMARY KEY, entry_id varchar(40) NOT NULL, lot_id"
    " bigint NOT NULL, issuer_id varchar(64) NOT NULL, member_id varchar(40) NOT NULL, payee_id"
    " varchar(64), kind varchar(24) NOT NULL, lot_points bigint NOT NULL, liability_points"
    " bigint NOT NULL, cleared_points bigint NOT NULL, posted_at_us bigint NOT NULL)",
]

SQL_LOCK = (
    "SELECT id, status, available_points, held_points, debt_points FROM members"
    " WHERE id = $1 FOR UPDATE"
)
SQL_BALANCE = "UPDATE members SET available_points = available_points + $2 WHERE id = $1"
SQL_ENTRY = (
    "INSERT INTO entries (id, kind, partner_id, member_id, points, amount_minor, currency,"
    " order_ref, key_id, idempotency_key, posted_at_us, posting_count)"
    " VALUES ($1, 'earn', $2, $3, $4, $5, 'EUR', $6, $7, $8, $9, 2)"
)
SQL_POSTINGS = (
    "INSERT INTO postings (entry_id, account, points, posted_at_us)"
    " VALUES ($1, $2, $3, $4), ($1, $5, $6, $4)"
)
SQL_MOVEMENT = (
    "INSERT INTO lot_movements (entry_id, lot_id, issuer_id, member_id, payee_id, kind,"
    " lot_points, liability_points, cleared_points, posted_at_us)"
    " VALUES ($1, $2, $3, $4, NULL, 'earn', $5, $5, 0, $6)"
)


def ledger_writes(
    scenario: Scenario, member: str, partner: str, points: int, entry_id: str, now: int
) -> list[tuple[str, tuple[Any, ...]]]:
    """The minimal ledger transaction after the lock: balance, entry, postings, movement."""
    order_ref = f"ord-{scenario.tag}-{scenario.counter}"
    return [
        (SQL_BALANCE, (member, points)),
        (
            SQL_ENTRY,
            (
                entry_id,
                partner,
                member,
                points,
                points * 100,
                order_ref,
                "key_raw",
                scenario.next_key(),
                now,
            ),
        ),
        (SQL_POSTINGS, (entry_id, f"issued:{partner}", -points, now, f"member:{member}", points)),
        (SQL_MOVEMENT, (entry_id, 1, partner, member, points, now)),
    ]


class RawLedgerScenario(Scenario):
    """One virtual client = one asyncpg connection looping the minimal ledger transaction."""

    async def connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.config["dsn"])

    async def disconnect(self, conn: Any) -> None:
        await conn.close()

    async def step(self, conn: Any, stats: Stats, state: dict[str, Any]) -> None:
        cfg, rng = self.config, self.rng
        member = (
            cfg["hot_member"]
            if cfg.get("hot_member")
            else f"{MEMBER_PREFIX}{rng.randrange(cfg['members']):012d}"
        )
        partner = f"bench-p{rng.randrange(100):03d}"
        points = rng.randrange(1, 200)
        entry_id = f"txn_{secrets.token_hex(10)}"
        now = time.time_ns() // 1000
        started = time.perf_counter()
        status, body = 200, b""
        try:
            async with conn.transaction():
                row = await conn.fetchrow(SQL_LOCK, member)
                if row is None:
                    raise LookupError(member)
                for sql, args in ledger_writes(self, member, partner, points, entry_id, now):
                    await conn.execute(sql, *args)
        except Exception as exc:  # recorded as an error, never swallowed silently
            status, body = 500, f"{type(exc).__name__}: {exc}".encode()
        stats.record("ledger_tx", status, started, time.perf_counter(), body)


async def _prepare_ledger_db(
    admin_dsn: str, name: str, schema: str, members: int, progress: bool
) -> str:
    import asyncpg

    dsn = await create_database(admin_dsn, name)
    if schema == "coalition":
        env = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
        env["COALITION_DATABASE_URL"] = dsn
        done = await asyncio.to_thread(
            subprocess.run,
            [PYTHON, "-m", "coalition.cli", "migrate"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"migrate failed: {done.stderr.decode()[-2000:]}")
    elif schema != "minimal":
        raise ValueError(f"schema must be coalition or minimal, not {schema!r}")
    conn = await asyncpg.connect(dsn)
    try:
        if schema == "minimal":
            for ddl in MINIMAL_SCHEMA:
                await conn.execute(ddl)
        pbar = bar(members, "raw-ledger members", progress, unit="row")
        now = time.time_ns() // 1000
        chunk = 50_000
        for start in range(0, members, chunk):
            rows = [
                (f"{MEMBER_PREFIX}{i:012d}", "active", 0, 0, 0, now)
                for i in range(start, min(start + chunk, members))
            ]
            await conn.copy_records_to_table(
                "members",
                records=rows,
                columns=[
                    "id",
                    "status",
                    "available_points",
                    "held_points",
                    "debt_points",
                    "created_at_us",
                ],
            )
            pbar.update(len(rows))
        pbar.close()
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return dsn


async def raw_ledger_ceiling(
    pg_dsn: str,
    clients: int,
    duration_seconds: float,
    *,
    members: int = 100_000,
    schema: str = "coalition",
    hot: bool = True,
    warmup_seconds: float = 2.0,
    client_processes: int = 1,
    progress: bool = True,
    quiet_seconds: float = 0.0,
) -> dict[str, Any]:
    """Minimal ledger write transactions/s with raw asyncpg: ``random`` members, and ``hot``
    (every connection on one member row). ``pg_dsn``: an admin DSN (a scratch database is
    created next to it and dropped afterwards)."""
    check_local(pg_dsn)
    name = unique_name("bench_rawledger")
    result: dict[str, Any] = {"schema": schema, "members": members, "clients": clients}
    try:
        dsn = await _prepare_ledger_db(pg_dsn, name, schema, members, progress)
        modes = [("random", None)] + ([("hot", f"{MEMBER_PREFIX}{0:012d}")] if hot else [])
        for mode, hot_member in modes:
            phase = await drive(
                scenario_config={
                    "scenario": "bench.ceilings:RawLedgerScenario",
                    "dsn": dsn,
                    "members": members,
                    "hot_member": hot_member,
                },
                clients=clients,
                duration_seconds=duration_seconds,
                warmup_seconds=warmup_seconds,
                processes=client_processes,
                server=None,
                label=f"raw ledger {mode} ({schema})",
                progress=progress,
                database=name,
                quiet_seconds=quiet_seconds,
            )
            phase["tx_per_s"] = phase["ok_per_s"]
            result[mode] = phase
    finally:
        await drop_database(pg_dsn, name)
    return result


# --- (b) on SQLite ------------------------------------------------------------------------------

SQLITE_BUSY_TIMEOUT_SECONDS = 60  # coalition.db.SQLITE_BUSY_TIMEOUT_SECONDS
SQLITE_MODES = ("random", "one_writer")
SQLITE_NOTE = (
    "SQLite serialises writers (one lock for the whole database), so a hot member row adds"
    " nothing over random members: no hot mode. random = one aiosqlite connection per client,"
    " each transaction BEGIN IMMEDIATE with a 60 s busy timeout, the app's write_transaction"
    " on SQLite (waiting writers poll SQLite's lock); one_writer = the clients of a load"
    " generator share one connection and queue in-process (no lock polling): the single-writer"
    " ceiling. Both with the app's pragmas (WAL, default synchronous)."
)
_SHARED: dict[str, Any] = {}  # one_writer: the load-generator process's one connection


def _sqlite_sql(sql: str) -> str:
    """The asyncpg statements of (b) for SQLite: ``$n`` -> ``?n``; no row locks (the
    transaction holds the database's write lock)."""
    return re.sub(r"\$(\d+)", r"?\1", sql).replace(" FOR UPDATE", "")


class RawSqliteLedgerScenario(Scenario):
    """(b) on SQLite with aiosqlite (the driver Piccolo uses): the same minimal ledger
    transaction as :class:`RawLedgerScenario`, in ``BEGIN IMMEDIATE`` (see ``SQLITE_NOTE``)."""

    async def _open(self) -> Any:
        import aiosqlite

        conn = await aiosqlite.connect(
            self.config["path"], timeout=SQLITE_BUSY_TIMEOUT_SECONDS, isolation_level=None
        )
        await conn.execute("PRAGMA foreign_keys = 1")  # as Piccolo's SQLiteEngine does
        return conn

    async def connect(self) -> Any:
        if not self.config.get("one_writer"):
            return await self._open()
        lock = _SHARED.setdefault("open_lock", asyncio.Lock())
        async with lock:
            if "conn" not in _SHARED:
                _SHARED["conn"] = await self._open()
                _SHARED["tx_lock"] = asyncio.Lock()
                _SHARED["users"] = 0
            _SHARED["users"] += 1
        return _SHARED["conn"]

    async def disconnect(self, conn: Any) -> None:
        if self.config.get("one_writer"):
            _SHARED["users"] -= 1
            if _SHARED["users"]:
                return
            _SHARED.pop("conn", None)
        await conn.close()

    async def step(self, conn: Any, stats: Stats, state: dict[str, Any]) -> None:
        cfg, rng = self.config, self.rng
        member = f"{MEMBER_PREFIX}{rng.randrange(cfg['members']):012d}"
        partner = f"bench-p{rng.randrange(100):03d}"
        points = rng.randrange(1, 200)
        entry_id = f"txn_{secrets.token_hex(10)}"
        now = time.time_ns() // 1000
        started = time.perf_counter()
        status, body = 200, b""
        lock = _SHARED["tx_lock"] if cfg.get("one_writer") else contextlib.nullcontext()
        try:
            async with lock:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    async with conn.execute(_sqlite_sql(SQL_LOCK), (member,)) as cur:
                        if await cur.fetchone() is None:
                            raise LookupError(member)
                    for sql, args in ledger_writes(self, member, partner, points, entry_id, now):
                        await conn.execute(_sqlite_sql(sql), args)
                    await conn.execute("COMMIT")
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
        except Exception as exc:  # recorded as an error, never swallowed silently
            status, body = 500, f"{type(exc).__name__}: {exc}".encode()
        stats.record("ledger_tx", status, started, time.perf_counter(), body)


def _prepare_sqlite_ledger_db(path: Path, schema: str, members: int, progress: bool) -> None:
    from bench import sqlite_load

    if schema == "coalition":
        sqlite_load.migrate(sqlite_load.sqlite_url(path))
    elif schema == "minimal":
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # as coalition.migrate leaves the file
            for ddl in MINIMAL_SCHEMA:
                conn.execute(ddl.replace("bigserial PRIMARY KEY", "INTEGER PRIMARY KEY"))
            conn.commit()
        finally:
            conn.close()
    else:
        raise ValueError(f"schema must be coalition or minimal, not {schema!r}")
    now = time.time_ns() // 1000
    columns = ("id", "status", "available_points", "held_points", "debt_points", "created_at_us")
    pbar = bar(members, "raw-ledger members", progress, unit="row")
    with sqlite_load.bulk_connection(path) as conn:
        chunk = 50_000
        for start in range(0, members, chunk):
            rows = [
                (f"{MEMBER_PREFIX}{i:012d}", "active", 0, 0, 0, now)
                for i in range(start, min(start + chunk, members))
            ]
            conn.execute("BEGIN")
            conn.executemany(sqlite_load.insert_sql("members", columns), rows)
            conn.execute("COMMIT")
            pbar.update(len(rows))
        conn.execute("ANALYZE")
    pbar.close()


async def raw_sqlite_ledger_ceiling(
    clients: int,
    duration_seconds: float,
    *,
    members: int = 100_000,
    schema: str = "coalition",
    warmup_seconds: float = 2.0,
    client_processes: int = 1,
    progress: bool = True,
    quiet_seconds: float = 0.0,
) -> dict[str, Any]:
    """(b) on a scratch SQLite file (deleted afterwards): minimal ledger write transactions/s
    with aiosqlite, ``random`` members over one connection per client, and ``one_writer``."""
    result: dict[str, Any] = {
        "db": "sqlite",
        "driver": "aiosqlite",
        "schema": schema,
        "members": members,
        "clients": clients,
        "note": SQLITE_NOTE,
    }
    with temp_dir("bench_rawledger_sqlite_") as tmp:
        path = tmp / "ledger.sqlite3"
        await asyncio.to_thread(_prepare_sqlite_ledger_db, path, schema, members, progress)
        check = sqlite3.connect(path)
        try:
            result["pragmas"] = {
                n: check.execute(f"PRAGMA {n}").fetchone()[0]
                for n in ("journal_mode", "synchronous")
            }
        finally:
            check.close()
        for mode in SQLITE_MODES:
            phase = await drive(
                scenario_config={
                    "scenario": "bench.ceilings:RawSqliteLedgerScenario",
                    "path": str(path),
                    "members": members,
                    "one_writer": mode == "one_writer",
                },
                clients=clients,
                duration_seconds=duration_seconds,
                warmup_seconds=warmup_seconds,
                processes=client_processes,
                server=None,
                label=f"raw ledger {mode} (sqlite, {schema})",
                progress=progress,
                quiet_seconds=quiet_seconds,
            )
            phase["tx_per_s"] = phase["ok_per_s"]
            result[mode] = phase
    return result


# --- (c) Ed25519 ----------------------------------------------------------------------------------


def ed25519_us(number: int = 3000, repeat: int = 5) -> dict[str, float]:
    """Best-of-``repeat`` microseconds per call: Ed25519 verify and sign over a realistic
    signature base, and the whole server-side check of a signed POST (parse, coverage, window,
    base, verify, Content-Digest) with ``partners.signing``."""
    key = private_key_from_hex(BARE_PRIVATE_HEX)
    public = key.public_key()
    body = (
        b'{"member_id":"mem_0123456789abcdef0123","order_ref":"o-1",'
        b'"amount":{"amount_minor":1234,"currency":"EUR"}}'
    )
    headers = {
        "content-type": "application/json",
        "content-digest": signing.content_digest(body),
        "idempotency-key": "key-0123456789abcdef",
    }
    now = int(time.time())
    sig = signing.sign_request(
        key,
        keyid="k1",
        method="POST",
        authority="127.0.0.1:8000",
        raw_path="/v1/earn",
        raw_query="",
        headers=headers,
        created=now,
    )
    parsed = signing.parse_signature(sig["Signature-Input"], sig["Signature"])
    base = signing.signature_base(
        parsed,
        method="POST",
        authority="127.0.0.1:8000",
        raw_path="/v1/earn",
        raw_query="",
        headers=headers,
    )

    def full_check() -> None:
        p = signing.parse_signature(sig["Signature-Input"], sig["Signature"])
        signing.check_coverage(p, "POST")
        signing.check_window(p, now)
        b = signing.signature_base(
            p,
            method="POST",
            authority="127.0.0.1:8000",
            raw_path="/v1/earn",
            raw_query="",
            headers=headers,
        )
        signing.verify_signature(p, b, public)
        signing.check_content_digest(headers["content-digest"], body)

    def sign_request() -> None:
        signing.sign_request(
            key,
            keyid="k1",
            method="POST",
            authority="127.0.0.1:8000",
            raw_path="/v1/earn",
            raw_query="",
            headers=headers,
            created=now,
        )

    def best(fn: Any) -> float:
        return round(min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6, 1)

    return {
        "verify_us": best(lambda: public.verify(parsed.signature, base)),
        "sign_us": best(lambda: key.sign(base)),
        "server_check_us": best(full_check),
        "client_sign_request_us": best(sign_request),
        "base_bytes": len(base),
    }


# --- all ceilings -------------------------------------------------------------------------------


async def run(
    pg_admin_dsn: str = DEFAULT_PG_ADMIN_DSN,
    clients_list: tuple[int, ...] = (16, 64),
    duration_seconds: float = 15,
    *,
    only: tuple[str, ...] = ("bare", "ledger"),
    schemas: tuple[str, ...] = ("coalition",),
    members: int = 100_000,
    client_processes: int = 1,
    progress: bool = True,
    quiet_seconds: float = 0.0,
    db: str = "postgres",
) -> dict[str, Any]:
    results: dict[str, Any] = {"ed25519": ed25519_us(), "bare": {}, "raw_ledger": {}}
    for clients in clients_list:
        if "bare" in only:
            for nodelay in (False, True):
                results["bare"].setdefault("nodelay" if nodelay else "shipped", {})[
                    clients
                ] = await bare_endpoint_ceiling(
                    clients,
                    duration_seconds,
                    nodelay=nodelay,
                    client_processes=client_processes,
                    progress=progress,
                    quiet_seconds=quiet_seconds,
                )
        if "ledger" in only:
            for schema in schemas:
                if db == "sqlite":
                    raw = await raw_sqlite_ledger_ceiling(
                        clients,
                        duration_seconds,
                        members=members,
                        schema=schema,
                        client_processes=client_processes,
                        progress=progress,
                        quiet_seconds=quiet_seconds,
                    )
                else:
                    raw = await raw_ledger_ceiling(
                        pg_admin_dsn,
                        clients,
                        duration_seconds,
                        members=members,
                        schema=schema,
                        progress=progress,
                        quiet_seconds=quiet_seconds,
                    )
                results["raw_ledger"].setdefault(schema, {})[clients] = raw
    return results


def rows_for(results: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for variant, by_clients in results.get("bare", {}).items():
        for clients, r in by_clients.items():
            rows.append(_row(f"bare Litestar + verify, {variant}", clients, r, "requests_per_s"))
    for schema, by_clients in results.get("raw_ledger", {}).items():
        for clients, r in by_clients.items():
            for mode in ("random", "hot", "one_writer"):
                if mode in r:
                    rows.append(
                        _row(
                            f"raw {r.get('driver', 'asyncpg')} ledger tx, {mode} ({schema})",
                            clients,
                            r[mode],
                            "tx_per_s",
                        )
                    )
    return rows


def noisy_phases(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for variant, by_clients in results.get("bare", {}).items():
        for clients, r in by_clients.items():
            if r.get("noisy"):
                found.append((f"bare {variant} c={clients}", r))
    for schema, by_clients in results.get("raw_ledger", {}).items():
        for clients, r in by_clients.items():
            for mode in ("random", "hot", "one_writer"):
                if r.get(mode, {}).get("noisy"):
                    found.append((f"raw ledger {mode} ({schema}) c={clients}", r[mode]))
    return found


HEADER = [
    "what",
    "clients",
    "per s",
    "p50 ms",
    "p99 ms",
    "errors",
    "client",
    "server (sys)",
    "pg",
    "pg bg",
    "redis",
    "irq",
    "other",
    "busy",
    "steal",
]


CPU_NOTE = (
    f"CPU columns: cores used during the measured window (this box has {os.cpu_count()}):"
    " client = load generator; server = uvicorn master + workers (kernel part); pg = backends"
    " of the benchmark's database; pg bg = PostgreSQL background processes; irq = interrupt"
    " time (mostly loopback TCP delivery, in no process's account); other = the rest of the"
    " machine (noise: other users' processes); busy = whole machine, steal = taken by the"
    " hypervisor. [NOISY]: other processes used more than 0.1 core during the phase."
)


def _row(what: str, clients: Any, r: dict[str, Any], rate: str) -> list[Any]:
    cpu = r.get("cpu_cores", {})
    server = f"{cpu['server']} ({cpu['server_sys']})" if "server" in cpu else "-"
    return [
        what + (" [NOISY]" if r.get("noisy") else ""),
        clients,
        r[rate],
        r["latency"].get("p50_ms"),
        r["latency"].get("p99_ms"),
        r["errors"],
        cpu.get("client"),
        server,
        cpu.get("postgres", "-"),
        cpu.get("pg_bg"),
        cpu.get("redis"),
        cpu.get("machine_irq"),
        cpu.get("other"),
        cpu.get("machine_busy"),
        cpu.get("machine_steal"),
    ]


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        p = argparse.ArgumentParser(prog="bench.ceilings serve")
        p.add_argument("--app", default="bench.ceilings:bare_app", help="an app factory")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY (see above)")
        a = p.parse_args(argv[1:])
        return serve(a.app, a.port, a.workers, a.nodelay)
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceilings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pg-admin-dsn", default=DEFAULT_PG_ADMIN_DSN)
    parser.add_argument(
        "--db", choices=["postgres", "sqlite"], default="postgres", help="for ceiling (b)"
    )
    parser.add_argument("--clients", type=int, action="append", help="repeatable; default 16 64")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--only", choices=["bare", "ledger"], action="append")
    parser.add_argument("--schema", choices=["coalition", "minimal"], action="append")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each phase, wait up to this long for the rest of the machine to be idle",
    )
    parser.add_argument("--json", help="write the full results here")
    args = parser.parse_args(argv)
    results = asyncio.run(
        run(
            args.pg_admin_dsn,
            tuple(args.clients or (16, 64)),
            args.duration,
            only=tuple(args.only or ("bare", "ledger")),
            schemas=tuple(args.schema or ("coalition",)),
            members=args.members,
            client_processes=args.client_processes,
            progress=not args.no_progress,
            quiet_seconds=args.wait_quiet,
            db=args.db,
        )
    )
    print(f"Ed25519 on this box: {results['ed25519']}")
    print(table(rows_for(results), HEADER))
    print(CPU_NOTE)
    for what, r in noisy_phases(results):
        print(f"  {what}: other = {r['cpu_cores'].get('other')} cores, from {r.get('noise_from')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
