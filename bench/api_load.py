"""Signed earn/redeem calls per second on one box, next to the box's ceilings from the same run.

``run()``:

1. creates a uniquely named PostgreSQL database (dropped at the end, also on failure) and
   migrates it with ``python -m coalition.cli migrate``;
2. bulk-loads (asyncpg COPY) ``partners`` partners (roles earn,redeem, EUR, earn rate 1, a large
   bonus cap), one Ed25519 key each, ``members`` members, and gives every member
   ``seed_points`` points as one ledger-consistent ``bonus_earn`` from a partner: an entry
   (2 postings: ``issued:<partner>`` -N, ``member:<id>`` +N), a lot (remaining N) and its
   ``earn`` lot movement, and the member's ``available_points`` = N. These are exactly the rows
   ``Ledger.earn`` writes for a bonus without an Idempotency-Key, so the auditor's invariants
   hold (it is run at the end and must say AUDIT-OK);
3. starts the API as its own process (2 uvicorn workers) and waits for ``/health``. Two server
   variants: ``shipped`` = ``python -m coalition.cli serve --workers 2`` exactly as deployed;
   ``nodelay`` = the same ``uvicorn.run`` arguments plus TCP_NODELAY on accepted connections
   (``bench.ceilings.NoDelayHTTPProtocol``: uvicorn's ``workers > 1`` path leaves Nagle on,
   which costs ~40 ms per keep-alive request);
4. preflight: an earn and a balance read signed with the independent ``http_message_signatures``
   library must succeed (the server verifies third-party signatures), then the load;
5. per concurrency level, load-generator process(es) (``bench.common``) run the mix -- 60 %
   earn, 25 % redeem (a third as hold + capture, counted as 2 requests), 10 % balance reads,
   5 % reversals of the connection's own earlier earns -- every request signed with
   ``partners.signing.sign_request`` (RFC 9421 Ed25519, fresh Idempotency-Key, nonce on GETs),
   for ``warmup_seconds`` unmeasured and then ``duration_seconds`` measured; CPU of the server,
   client, PostgreSQL, Redis and the rest of the machine over the measured window;
6. optionally profiles the server workers with py-spy during an extra (unmeasured) phase;
7. cross-checks the entries in the database against the 2xx answers the clients got, runs
   ``python -m coalition.cli audit``, stops the server, drops the database.

``--db sqlite``: the same on a SQLite file in a temp dir (deleted at the end), migrated the same
way and seeded with the same rows through ``sqlite3`` (``bench.sqlite_load``) instead of COPY;
the server runs 1 uvicorn worker by default, as ``coalition up`` does (``--workers`` to change),
so only the ``shipped`` variant runs. Ceiling (b) is then the same minimal ledger write with
aiosqlite on a scratch SQLite file (``bench.ceilings.raw_sqlite_ledger_ceiling``).

Run (from the repository root; ceilings are measured in the same run unless --no-ceilings)::

    .venv/bin/python -m bench.api_load --clients 16 --clients 64 --duration 15 --profile 10
    .venv/bin/python -m bench.api_load --server shipped --no-ceilings --duration 5 --members 20000
    .venv/bin/python -m bench.api_load --db sqlite --members 100000 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.columns import (
    ENTRY_COLUMNS,
    LOT_COLUMNS,
    MEMBER_COLUMNS,
    MOVEMENT_COLUMNS,
    PARTNER_COLUMNS,
    POSTING_COLUMNS,
)
from bench.common import (
    DEFAULT_PG_ADMIN_DSN,
    DEFAULT_REDIS_URL,
    HOST,
    PYTHON,
    REPO,
    Connection,
    ServerProcess,
    Signer,
    bar,
    check_local,
    create_database,
    drive,
    drop_database,
    free_port,
    log,
    private_key_hex,
    py_spy_record,
    table,
    temp_dir,
    unique_name,
)
from bench.sqlite_load import (
    API_ENTRIES_SQL,
    SqliteCopyConnection,
    is_sqlite_url,
    remove_database,
    sqlite_url,
)
from bench.sqlite_load import entry_counts as sqlite_entry_counts

MEMBER_PREFIX = "mem_bench_"  # + 12 digits: member ids are derived, not shipped to the clients
SEED_BATCH = 20_000
FAR_FUTURE_US = 253402300799 * 1_000_000  # partners.keys.FAR_FUTURE_US
# the entry kinds each client operation creates (for the cross-check)
ENTRY_OF_OP = {
    "earn": "earn",
    "redeem": "redeem",
    "hold": "hold",
    "capture": "capture",
    "reversal": "earn_reversal",
}
SERVER_VARIANTS = ("shipped", "nodelay")
# The hot phase: every client redeems 1 point at a time from member 0, who has this many.
HOT_MEMBER_POINTS = 10_000_000
# What a seeded earn's idempotency record answers (never replayed: load keys are fresh).
SEED_RESULT = '{"seeded":true}'
HOT_MIX = {"earn": 0.0, "redeem": 1.0, "balance": 0.0, "hold_share": 0.0, "points": 1}


# --- seeding ----------------------------------------------------------------------------------


def member_id(i: int) -> str:
    return f"{MEMBER_PREFIX}{i:012d}"


async def seed(
    dsn: str, partners: int, members: int, seed_points: int, progress: bool
) -> list[dict[str, str]]:
    """Partners, keys, members and their seed points; returns the partners' signing keys.
    Member 0 is the hot member of the hot phase and gets ``HOT_MEMBER_POINTS``."""
    import asyncpg
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from coalition.ledger import add_months_us, issued_account, member_account
    from partners.keys import b64url, raw_public

    now = time.time_ns() // 1000
    posted = now - 3600 * 1_000_000  # an hour ago
    expires = add_months_us(posted, 24)  # Settings.lot_validity_months default
    keys: list[dict[str, str]] = []
    partner_rows, key_rows = [], []
    for p in range(partners):
        pid = f"bench-p{p:03d}"
        key = Ed25519PrivateKey.generate()
        keyid = f"key_bench_{p:03d}"
        keys.append({"partner_id": pid, "keyid": keyid, "private_hex": private_key_hex(key)})
        partner_rows.append(
            (pid, f"Bench partner {p}", "earn,redeem", "active", "EUR", "1", 1_000_000_000, now)
        )
        key_rows.append(
            (
                keyid,
                pid,
                b64url(raw_public(key.public_key())),
                now - 3600 * 10**6,
                FAR_FUTURE_US,
                None,
                now,
            )
        )
    conn: Any = SqliteCopyConnection(dsn) if is_sqlite_url(dsn) else await asyncpg.connect(dsn)
    pbar = bar(members, "seeding members", progress, unit="member")
    try:
        await conn.copy_records_to_table(
            "partners",
            records=partner_rows,
            columns=list(PARTNER_COLUMNS),
        )
        await conn.copy_records_to_table(
            "partner_keys",
            records=key_rows,
            columns=[
                "keyid",
                "partner_id",
                "public_key",
                "not_before_us",
                "not_after_us",
                "revoked_at_us",
                "created_at_us",
            ],
        )
        for start in range(0, members, SEED_BATCH):
            ids = range(start, min(start + SEED_BATCH, members))
            m_rows, e_rows, p_rows, l_rows, mv_rows, r_rows = [], [], [], [], [], []
            for i in ids:
                points = HOT_MEMBER_POINTS if i == 0 else seed_points
                mid, pid, eid, lot_id = (
                    member_id(i),
                    f"bench-p{i % partners:03d}",
                    f"txn_seed_{i:012d}",
                    i + 1,
                )
                m_rows.append((mid, None, "active", points, 0, 0, posted))
                e_rows.append(
                    (
                        eid,
                        "bonus_earn",
                        pid,
                        mid,
                        points,
                        None,
                        None,
                        f"seed-{i}",
                        "bench seed points",
                        f"key_bench_{i % partners:03d}",
                        f"seed-{i}",
                        posted,
                        2,
                    )
                )
                # Each seeded earn was a keyed request: its record is there, as in a ledger with
                # a history. Without records the planner, which sees an empty table, plans the
                # hot path's record lookups as scans and keeps those plans as the table grows.
                r_rows.append((pid, f"seed-{i}", "0" * 64, "ok", SEED_RESULT, eid, posted))
                p_rows.append((eid, issued_account(pid), -points, posted))
                p_rows.append((eid, member_account(mid), points, posted))
                l_rows.append((lot_id, mid, pid, eid, points, points, posted, expires))
                mv_rows.append((eid, lot_id, pid, mid, None, "earn", points, points, 0, posted))
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "members",
                    records=m_rows,
                    columns=list(MEMBER_COLUMNS),
                )
                await conn.copy_records_to_table(
                    "entries",
                    records=e_rows,
                    # id .. reason, the key, then the times (no reversal, hold or job columns)
                    columns=[
                        *ENTRY_COLUMNS[:9],
                        "key_id",
                        "idempotency_key",
                        "posted_at_us",
                        "posting_count",
                    ],
                )
                await conn.copy_records_to_table(
                    "idempotency_records",
                    records=r_rows,
                    columns=[
                        "partner_id",
                        "idempotency_key",
                        "fingerprint",
                        "outcome",
                        "result",
                        "entry_id",
                        "created_at_us",
                    ],
                )
                await conn.copy_records_to_table(
                    "postings",
                    records=p_rows,
                    columns=list(POSTING_COLUMNS[1:]),  # ids come from their sequences
                )
                await conn.copy_records_to_table(
                    "lots",
                    records=l_rows,
                    columns=list(LOT_COLUMNS),
                )
                await conn.copy_records_to_table(
                    "lot_movements",
                    records=mv_rows,
                    columns=list(MOVEMENT_COLUMNS[1:]),
                )
            pbar.update(len(ids))
        # lots got explicit ids: move the sequence past them (SQLite: max(rowid) + 1 anyway)
        if not is_sqlite_url(dsn):
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('lots', 'id'), GREATEST($1::bigint, 1))",
                members,
            )
        await conn.execute("ANALYZE")
    finally:
        pbar.close()
        await conn.close()
    return keys


# --- the API server ---------------------------------------------------------------------------


# ``--server-setting NAME=VALUE``: settings of the API server under test (COALITION_NAME).
SERVER_SETTINGS: dict[str, str] = {}


def server_env(dsn: str, redis_url: str, prefix: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    env.update({f"COALITION_{name.upper()}": value for name, value in SERVER_SETTINGS.items()})
    env.update(
        COALITION_DATABASE_URL=dsn,
        COALITION_REDIS_URL=redis_url,
        COALITION_REDIS_KEY_PREFIX=prefix,
        COALITION_PUBLIC_AUTHORITY=f"{HOST}:{port}",
        COALITION_RATE_LIMIT_PER_SECOND="100000000",
    )
    return env


def server_argv(variant: str, port: int, workers: int) -> list[str]:
    if variant == "shipped":
        return [
            PYTHON,
            "-m",
            "coalition.cli",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    if variant == "nodelay":
        from bench.ceilings import serve_argv

        return serve_argv("partners.server:app", port, workers, nodelay=True)
    raise ValueError(f"server variant must be one of {SERVER_VARIANTS}: {variant!r}")


async def preflight(port: int, keys: list[dict[str, str]], members: int) -> dict[str, Any]:
    """An earn and a balance read signed by the independent library; and by ours."""
    from bench.common import private_key_from_hex

    out: dict[str, Any] = {}
    conn = Connection(HOST, port)
    try:
        for kind in ("independent", "ours"):
            k = keys[0]
            signer = Signer(
                k["keyid"], private_key_from_hex(k["private_hex"]), f"{HOST}:{port}", kind
            )
            body = json.dumps(
                {
                    "member_id": member_id(members - 1),
                    "order_ref": f"preflight-{kind}",
                    "amount": {"amount_minor": 1000, "currency": "EUR"},
                }
            ).encode()
            key = f"preflight-{kind}-{os.getpid()}-{time.time_ns()}"
            status, answer = await conn.send(
                conn.build("POST", "/v1/earn", signer.post_headers("/v1/earn", body, key), body)
            )
            path = f"/v1/members/{member_id(members - 1)}"
            g_status, g_answer = await conn.send(conn.build("GET", path, signer.get_headers(path)))
            out[kind] = {"earn": status, "balance": g_status}
            if status != 201 or g_status != 200:
                raise RuntimeError(
                    f"preflight with the {kind} signer failed: earn {status} {answer[:300]!r},"
                    f" balance {g_status} {g_answer[:300]!r}"
                )
    finally:
        conn.close()
    return out


def run_cli(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, timeout=timeout)
    return (
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )


async def entry_counts(dsn: str) -> dict[str, int]:
    if is_sqlite_url(dsn):
        return await sqlite_entry_counts(dsn)
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(API_ENTRIES_SQL)
    finally:
        await conn.close()
    return {r["kind"]: r["n"] for r in rows}


async def clear_redis(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await redis.delete(*batch)
                batch = []
            if deleted > 10_000_000:
                break
        if batch:
            deleted += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return deleted


# --- the benchmark ------------------------------------------------------------------------------


async def run(
    pg_admin_dsn: str = DEFAULT_PG_ADMIN_DSN,
    redis_url: str = DEFAULT_REDIS_URL,
    clients_list: tuple[int, ...] = (16, 64),
    duration_seconds: float = 20,
    partners: int = 100,
    members: int = 100_000,
    progress: bool = True,
    *,
    servers: tuple[str, ...] = SERVER_VARIANTS,
    warmup_seconds: float = 3.0,
    client_processes: int = 1,
    workers: int = 2,
    seed_points: int = 10_000,
    signer: str = "ours",
    profile_seconds: int = 0,
    profile_dir: str | None = None,
    profile_flags: tuple[str, ...] = ("--gil",),
    keep_database: bool = False,
    quiet_seconds: float = 0.0,
    hot_clients: int = 200,
    db: str = "postgres",
) -> dict[str, Any]:
    """Load the partner API per server variant and concurrency level, then ``hot_clients``
    clients redeeming from one member (0: skip); return plain dicts.
    ``db="sqlite"``: the server on a SQLite file in a temp dir (``pg_admin_dsn`` unused)."""
    if db not in ("postgres", "sqlite"):
        raise ValueError(f"db must be postgres or sqlite, not {db!r}")
    check_local(pg_admin_dsn)
    check_local(redis_url)
    name = unique_name("bench_api")
    prefix = f"bench:{name}:"
    started = time.time()
    sqlite_file = (
        Path(tempfile.mkdtemp(prefix="bench_api_sqlite_")) / f"{name}.sqlite3"
        if db == "sqlite"
        else None
    )
    results: dict[str, Any] = {
        "db": db,
        "database": str(sqlite_file) if sqlite_file else name,
        "partners": partners,
        "members": members,
        "seed_points": seed_points,
        "workers": workers,
        "client_processes": client_processes,
        "signer": signer
        + (
            " (partners.signing.sign_request)" if signer == "ours" else " (http_message_signatures)"
        ),
        "warmup_seconds": warmup_seconds,
        "phases": {},
    }
    dsn = sqlite_url(sqlite_file) if sqlite_file else await create_database(pg_admin_dsn, name)
    env: dict[str, str] = {}
    try:
        env = server_env(dsn, redis_url, prefix, 0)
        t = time.monotonic()
        code, out, err = await asyncio.to_thread(
            run_cli, [PYTHON, "-m", "coalition.cli", "migrate"], env, 300
        )
        if code != 0:
            raise RuntimeError(f"migrate failed: {err[-2000:]}")
        results["migrate_s"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        keys = await seed(dsn, partners, members, seed_points, progress)
        results["seed_s"] = round(time.monotonic() - t, 2)
        log(f"seeded {partners} partners, {members} members in {results['seed_s']} s", progress)
        totals: dict[str, int] = {}

        async def measure(
            server: ServerProcess, config: dict[str, Any], clients: int, label: str, **more: Any
        ) -> dict[str, Any]:
            """One driven phase against ``server``, counted in the totals."""
            phase = await drive(
                scenario_config=config,
                clients=clients,
                warmup_seconds=warmup_seconds,
                processes=client_processes,
                server=server,
                label=label,
                progress=progress,
                database=name,
                **{"duration_seconds": duration_seconds, **more},
            )
            _add_totals(totals, phase)
            return phase

        with temp_dir("bench_api_") as tmp:
            for variant in servers:
                port = free_port()
                env = server_env(dsn, redis_url, prefix, port)
                server = ServerProcess(
                    server_argv(variant, port, workers), env, port, tmp / f"server-{variant}.log"
                )
                server.start()
                try:
                    await server.wait_ready()
                    results.setdefault("preflight", {})[variant] = await preflight(
                        port, keys, members
                    )
                    totals["earn"] = totals.get("earn", 0) + 2  # the preflight's earns
                    scenario = {
                        "scenario": "mix",
                        "port": port,
                        "authority": f"{HOST}:{port}",
                        "partners": keys,
                        "member_prefix": MEMBER_PREFIX,
                        "members": members,
                        "signer": signer,
                    }
                    phases = results["phases"].setdefault(variant, {})

                    for clients in clients_list:
                        label = f"API {variant}"
                        phase = await measure(
                            server, scenario, clients, label, quiet_seconds=quiet_seconds
                        )
                        phases[clients] = phase
                        log(_one_line(label, phase), progress)
                    if hot_clients:
                        # One member, every client redeeming 1 point: the row-lock queue.
                        hot = {**scenario, "members": 1, "mix": HOT_MIX}
                        label = f"API {variant} hot member"
                        phase = await measure(
                            server, hot, hot_clients, label, quiet_seconds=quiet_seconds
                        )
                        results.setdefault("hot_member", {})[variant] = phase
                        log(_one_line(label, phase), progress)
                    if profile_seconds and variant == servers[-1]:
                        out_dir = Path(profile_dir) if profile_dir else tmp
                        out_dir.mkdir(parents=True, exist_ok=True)
                        raw = out_dir / f"api-{variant}-profile.txt"
                        clients = max(clients_list)
                        phase = await measure(
                            server,
                            scenario,
                            clients,
                            f"API {variant} (py-spy)",
                            duration_seconds=profile_seconds + 3,
                            during=functools.partial(
                                py_spy_record, server.pid, profile_seconds, raw, profile_flags
                            ),
                        )
                        profile = phase.pop("during")
                        profile["collapsed_stacks"] = str(raw) if profile_dir else None
                        profile["under_profiling"] = {
                            "clients": clients,
                            "requests_per_s": phase["requests_per_s"],
                            "cpu_cores": phase.get("cpu_cores"),
                        }
                        results["profile"] = profile
                finally:
                    exit_code = server.stop()
                    results.setdefault("server_exit", {})[variant] = exit_code
                    results.setdefault("server_log_tail", {})[variant] = server.tail(600)
        # cross-check: every 2xx the clients saw is one entry in the database, and no more
        in_db = await entry_counts(dsn)
        expected = {ENTRY_OF_OP[op]: n for op, n in totals.items() if op in ENTRY_OF_OP}
        results["cross_check"] = {
            "entries_in_db": in_db,
            "client_2xx": expected,
            "ok": {k: v for k, v in in_db.items() if v} == {k: v for k, v in expected.items() if v},
        }
        t = time.monotonic()
        code, out, err = await asyncio.to_thread(
            run_cli, [PYTHON, "-m", "coalition.cli", "audit"], env, 1800
        )
        results["audit"] = {
            "ok": code == 0,
            "verdict": (out.strip().splitlines() or ["(no output)"])[-1],
            "violations": [line for line in err.splitlines() if line.startswith("VIOLATION")][:50],
            "seconds": round(time.monotonic() - t, 1),
        }
        log(f"auditor: {results['audit']['verdict']}", progress)
    finally:
        if keep_database:
            pass
        elif sqlite_file is not None:
            remove_database(sqlite_file)
            shutil.rmtree(sqlite_file.parent, ignore_errors=True)
        else:
            await drop_database(pg_admin_dsn, name)
        results["redis_keys_deleted"] = await clear_redis(redis_url, prefix)
    results["wall_s"] = round(time.time() - started, 1)
    return results


def _add_totals(totals: dict[str, int], phase: dict[str, Any]) -> None:
    for op, n in phase["all_ok"].items():
        totals[op] = totals.get(op, 0) + n


def _one_line(label: str, p: dict[str, Any]) -> str:
    cpu = p.get("cpu_cores", {})
    return (
        f"{label} c={p['clients']}: {p['requests_per_s']} req/s, p50 {p['latency'].get('p50_ms')}"
        f" ms, p99 {p['latency'].get('p99_ms')} ms, errors {p['errors']},"
        f" insufficient {p['insufficient_points']}, cpu {cpu}"
    )


# --- side by side with the ceilings -------------------------------------------------------------


async def compare(
    pg_admin_dsn: str = DEFAULT_PG_ADMIN_DSN,
    redis_url: str = DEFAULT_REDIS_URL,
    clients_list: tuple[int, ...] = (16, 64),
    duration_seconds: float = 15,
    partners: int = 100,
    members: int = 100_000,
    progress: bool = True,
    *,
    ceilings: bool = True,
    bare_variants: tuple[bool, ...] = (False,),
    ledger_schemas: tuple[str, ...] = ("coalition",),
    **kwargs: Any,
) -> dict[str, Any]:
    """``run()`` plus, in the same run and on the same box, the ceilings of ``bench.ceilings``
    at the same concurrency levels, and our throughput as ratios of them."""
    from bench import ceilings as c

    out: dict[str, Any] = {
        "api": await run(
            pg_admin_dsn,
            redis_url,
            clients_list,
            duration_seconds,
            partners,
            members,
            progress,
            **kwargs,
        )
    }
    if not ceilings:
        return out
    cp = kwargs.get("client_processes", 1)
    quiet = kwargs.get("quiet_seconds", 0.0)
    workers = kwargs.get("workers", 2)  # the bare endpoint runs as many workers as the API
    sqlite = kwargs.get("db") == "sqlite"
    out["ed25519"] = c.ed25519_us()
    out["bare"] = {}
    out["raw_ledger"] = {}
    for clients in clients_list:
        for nodelay in bare_variants:
            out["bare"].setdefault("nodelay" if nodelay else "shipped", {})[
                clients
            ] = await c.bare_endpoint_ceiling(
                clients,
                duration_seconds,
                nodelay=nodelay,
                client_processes=cp,
                workers=workers,
                progress=progress,
                quiet_seconds=quiet,
            )
        for schema in ledger_schemas:
            if sqlite:
                raw = await c.raw_sqlite_ledger_ceiling(
                    clients,
                    duration_seconds,
                    members=members,
                    schema=schema,
                    client_processes=cp,
                    progress=progress,
                    quiet_seconds=quiet,
                )
            else:
                raw = await c.raw_ledger_ceiling(
                    pg_admin_dsn,
                    clients,
                    duration_seconds,
                    members=members,
                    schema=schema,
                    progress=progress,
                    quiet_seconds=quiet,
                )
            out["raw_ledger"].setdefault(schema, {})[clients] = raw
    out["ratios"] = ratios(out)
    return out


def _writes_per_s(phase: dict[str, Any]) -> float:
    total: float = sum(v["per_s"] for op, v in phase["by_op"].items() if op != "balance")
    return round(total, 1)


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Our requests/s over the bare endpoint's (same server variant, same clients) and our
    ledger writes/s over the raw ledger transactions/s (random members; asyncpg, or aiosqlite
    with one connection per client on SQLite)."""
    r: dict[str, Any] = {}
    for variant, phases in out["api"]["phases"].items():
        for clients, p in phases.items():
            bare = out.get("bare", {}).get(variant, {}).get(clients)
            bare_best = max(
                (
                    b[clients]["requests_per_s"]
                    for b in out.get("bare", {}).values()
                    if clients in b
                ),
                default=None,
            )
            row: dict[str, Any] = {
                "api_requests_per_s": p["requests_per_s"],
                "api_ledger_writes_per_s": _writes_per_s(p),
            }
            if bare:
                row["vs_bare_same_server"] = round(p["requests_per_s"] / bare["requests_per_s"], 3)
            if bare_best:
                row["vs_bare_best"] = round(p["requests_per_s"] / bare_best, 3)
            for schema, by_clients in out.get("raw_ledger", {}).items():
                raw = by_clients.get(clients)
                if raw:
                    row[f"writes_vs_raw_ledger_{schema}"] = round(
                        row["api_ledger_writes_per_s"] / raw["random"]["tx_per_s"], 3
                    )
            r[f"{variant}/c{clients}"] = row
    return r


def print_report(out: dict[str, Any]) -> None:
    from bench import ceilings as c

    api = out["api"]
    rows = []
    for variant, phases in api["phases"].items():
        for clients, p in phases.items():
            rows.append(c._row(f"API mix, server {variant}", clients, p, "requests_per_s"))
    for variant, by_clients in out.get("bare", {}).items():
        for clients, p in by_clients.items():
            rows.append(c._row(f"bare Litestar + verify, {variant}", clients, p, "requests_per_s"))
    rows += c.rows_for({"raw_ledger": out.get("raw_ledger", {})})
    print()
    print(
        f"{api['partners']} partners, {api['members']} members, {api['workers']} workers, "
        f"signer {api['signer']}, {api['client_processes']} client process(es), "
        f"{os.cpu_count()} cores"
    )
    if "ed25519" in out:
        print(f"Ed25519: {out['ed25519']}")
    print(table(rows, c.HEADER))
    print(c.CPU_NOTE)
    noisy = [r[0] for r in rows if "[NOISY]" in str(r[0])]
    if noisy:
        print(f"WARNING: {len(noisy)} phase(s) shared the box with other work; re-run them quiet")
        for variant, phases in api["phases"].items():
            for clients, p in phases.items():
                if p.get("noisy"):
                    print(
                        f"  API {variant} c={clients}: other = {p['cpu_cores'].get('other')}"
                        f" cores, from {p.get('noise_from')}"
                    )
        for what, r in c.noisy_phases(out):
            print(
                f"  {what}: other = {r['cpu_cores'].get('other')} cores, from {r.get('noise_from')}"
            )
    print()
    op_rows = []
    for variant, phases in api["phases"].items():
        for clients, p in phases.items():
            for op, v in p["by_op"].items():
                op_rows.append(
                    [
                        f"{variant} c={clients}",
                        op,
                        v["count"],
                        v["per_s"],
                        v.get("p50_ms"),
                        v.get("p99_ms"),
                    ]
                )
    print(table(op_rows, ["phase", "op", "count", "per s", "p50 ms", "p99 ms"]))
    print()
    for variant, phases in api["phases"].items():
        for clients, p in phases.items():
            print(
                f"{variant} c={clients}: status {p['status']}, insufficient-points "
                f"{p['insufficient_points']}, errors {p['errors']} {p['errors_by_kind']}, "
                f"client {p['client_cpu_us_per_request']} us CPU/request"
            )
    if out.get("ratios"):
        print()
        keys = sorted({k for v in out["ratios"].values() for k in v})
        print(
            table(
                [[name, *(v.get(k) for k in keys)] for name, v in out["ratios"].items()],
                ["phase", *keys],
            )
        )
    for variant, p in api.get("hot_member", {}).items():
        print(_one_line(f"hot member ({variant}, 1-point redemptions)", p))
    print()
    print(f"preflight (independent signer accepted): {api.get('preflight')}")
    print(f"cross-check entries vs client 2xx: {api.get('cross_check')}")
    print(
        f"auditor: {api.get('audit', {}).get('verdict')} "
        f"{api.get('audit', {}).get('violations') or ''}"
    )
    if "profile" in api:
        prof = api["profile"]
        print()
        print(
            f"py-spy on the API workers (samples by thread role: {prof.get('samples_by_role')};"
            f" event-loop thread busy {prof.get('loop_busy_share')}; % of busy loop samples;"
            f" under profiling: {prof.get('under_profiling')})"
        )
        for title, key in (
            ("self time by package", "self_by_package_pct"),
            ("self time by function", "self_by_function_pct"),
            ("inclusive time by function", "inclusive_by_function_pct"),
            ("log listener thread (busy)", "log_thread_busy_pct_of_loop_busy"),
        ):
            print(f"  {title}:")
            for name, pct in prof.get(key, [])[:25]:
                print(f"    {pct:5.1f} %  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="sqlite: the API on a SQLite file (default 1 worker, server shipped, as `coalition"
        " up` runs it), seeded with sqlite3; ceiling (b) with aiosqlite",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="uvicorn workers of the API and the bare endpoint (default: 2; SQLite 1)",
    )
    parser.add_argument("--pg-admin-dsn", default=DEFAULT_PG_ADMIN_DSN)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--clients", type=int, action="append", help="repeatable; default 16 64")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--partners", type=int, default=100)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seed-points", type=int, default=10_000)
    parser.add_argument(
        "--server",
        choices=SERVER_VARIANTS,
        action="append",
        help="repeatable; default shipped (nodelay: asyncio with TCP_NODELAY, for comparison)",
    )
    parser.add_argument(
        "--hot-clients", type=int, default=200, help="clients of the one-member phase (0: skip)"
    )
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--signer", choices=["ours", "independent"], default="ours")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="py-spy the API workers during an extra phase",
    )
    parser.add_argument("--profile-dir", help="keep the collapsed stacks here")
    parser.add_argument(
        "--profile-flags",
        default="--gil",
        help="py-spy record flags, e.g. '--gil' or '--idle --threads'",
    )
    parser.add_argument("--no-ceilings", action="store_true")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the API server, e.g. write_batches=0 (repeatable)",
    )
    parser.add_argument("--ledger-schema", choices=["coalition", "minimal"], action="append")
    parser.add_argument("--keep-database", action="store_true")
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
    SERVER_SETTINGS.update(setting.split("=", 1) for setting in args.server_setting)
    sqlite = args.db == "sqlite"
    # One worker on SQLite (`coalition up` serves so; writers serialise on the database lock
    # anyway). The shipped server runs on uvloop, which sets TCP_NODELAY itself: the nodelay
    # variant (asyncio with the flag set) only runs when asked for, as a comparison.
    workers = args.workers or (1 if sqlite else 2)
    default_servers = ("shipped",)
    out = asyncio.run(
        compare(
            args.pg_admin_dsn,
            args.redis_url,
            tuple(args.clients or (16, 64)),
            args.duration,
            args.partners,
            args.members,
            not args.no_progress,
            ceilings=not args.no_ceilings,
            bare_variants=(False, True) if "nodelay" in (args.server or ()) else (False,),
            ledger_schemas=tuple(args.ledger_schema or ("coalition",)),
            servers=tuple(args.server or default_servers),
            workers=workers,
            db=args.db,
            warmup_seconds=args.warmup,
            client_processes=args.client_processes,
            seed_points=args.seed_points,
            signer=args.signer,
            profile_seconds=args.profile,
            profile_dir=args.profile_dir,
            profile_flags=tuple(args.profile_flags.split()),
            keep_database=args.keep_database,
            quiet_seconds=args.wait_quiet,
            hot_clients=args.hot_clients,
        )
    )
    print_report(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
        log(f"wrote {args.json}")
    ok = out["api"].get("audit", {}).get("ok") and out["api"].get("cross_check", {}).get("ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
