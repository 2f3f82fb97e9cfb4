"""Nightly settlement at scale: bulk-load one big, ledger-consistent business day and time
``Settler.prepare`` (aggregation + reconciliation + unsigned statements), the signing of every
statement (JSON + the per-transaction CSV) and ``publish_if_complete``.

What it does, per size:

1. creates a throw-away PostgreSQL database (dropped at the end, also on failure), migrates it
   with ``python -m coalition.cli migrate`` and generates a statement key in a temp dir;
2. bulk-loads partners, members, entries, postings, lots and lot movements with asyncpg
   ``copy_records_to_table`` (COPY, not the API). The generator simulates each member's day
   in time order (earns create lots; redemptions at any partner consume the member's lots
   earliest-expiring first), so every invariant the auditor and settlement reconciliation
   check holds by construction: member balance == sum(lot remaining) - debt == journal
   balance of ``member:<id>``; lot remaining == sum of its movements; posting_count; causes;
   issuer liability == lots. Members are generated in chunks (bounded memory), the next chunk
   is generated in a thread while the previous one is being COPYed;
3. runs the settlement in a *child process* (so the loader's memory does not count), timing
   prepare / signing / publish, with every SQL call the settler makes timed by label, and
   reads the child's own peak RSS (``ru_maxrss``); optionally under ``py-spy record``;
4. EXPLAIN (ANALYZE, BUFFERS) of every aggregation / reconciliation query settlement runs, and
   "what-if" timings of the obvious fixes (an index, set-based rewrites), on the same data.

Nothing outside ``bench/`` is changed; the what-if indexes only ever exist in the throw-away DB.

``--db sqlite``: steps 1-3 on a SQLite file in the work dir instead, migrated the same way and
loaded with ``sqlite3`` ``executemany`` by ``bench.sqlite_load`` (same rows, one transaction per
chunk, indexes re-created afterwards, then ANALYZE); step 4 is PostgreSQL-only and skipped.

Run (from the repository root)::

    .venv/bin/python -m bench.settlement_scale --postings 1000000 --postings 10000000
    .venv/bin/python -m bench.settlement_scale --postings 200000 --members 100000 \
        --partners 1000 --pdf 1000           # 1,000 statements (+ their PDFs)
    .venv/bin/python -m bench.settlement_scale --postings 1000000 --history-postings 9000000
    .venv/bin/python -m bench.settlement_scale --db sqlite --postings 200000 --members 100000

Uses ``tqdm`` (progress bars) and ``psutil`` (RSS samples) from the dev extras; ``py-spy``
(optional) for --py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tqdm import tqdm

from bench.columns import (
    PARTNER_COLUMNS,
    TABLE_COLUMNS,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATE = date(2026, 3, 10)
DAY_US = 86_400 * 1_000_000
LOT_VALIDITY_MONTHS = 24  # Settings.lot_validity_months default


def _bar(total: int, desc: str, enabled: bool, unit: str = "it") -> Any:
    if enabled:
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr)

    class _Null:
        def update(self, n: int = 1) -> None: ...
        def close(self) -> None: ...
        def set_postfix_str(self, s: str) -> None: ...

    return _Null()


def _maxrss_mb() -> float:
    """This process's peak RSS. Linux: VmHWM of this address space (``ru_maxrss`` can carry
    the parent's high-water mark over fork + exec); elsewhere ``ru_maxrss``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1024 if sys.platform != "darwin" else 2**20  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1_000_000


def _with_db(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


# ------------------------------------------------------------------------------------------------
# The synthetic ledger
# ------------------------------------------------------------------------------------------------


def partner_ids(n: int) -> list[str]:
    return [f"p{i:04d}" for i in range(n)]


def partner_rows(n: int, created_at_us: int) -> list[tuple[Any, ...]]:
    return [
        (p, f"Partner {i}", "earn,redeem", "active", "EUR", str(1 + i % 3), 1000, created_at_us)
        for i, p in enumerate(partner_ids(n))
    ]


def member_id(i: int) -> str:
    return f"mem_{i:020x}"


@dataclass
class LoadStats:
    entries: int = 0
    postings: int = 0
    lots: int = 0
    movements: int = 0
    members: int = 0
    active_members: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    day_entries: int = 0
    day_postings: int = 0
    history_entries: int = 0
    holds: int = 0
    after_period_entries: int = 0


class Generator:
    """Simulates members' activity, chunk by chunk, with exact ledger bookkeeping.

    Per member, events are sorted by time; an event is a redemption (with probability
    ``redeem_share``, if the member has points) or an earn (5% of them bonus earns). A
    redemption at partner Q takes ``x`` points from the member's lots earliest-expiring first
    (every lot has the same validity, so in earn order): one ``redeem`` movement per lot
    touched. Lots' ``remaining`` and the members' balances are final values computed before
    the rows are written, so nothing is ever UPDATEd.
    """

    def __init__(
        self,
        *,
        day: date,
        postings: int,
        partners: int,
        members: int,
        history_postings: int,
        history_days: int,
        redeem_share: float,
        hold_share: float,
        member_skew: float,
        partner_zipf: float,
        chunk_members: int,
        seed: int,
    ) -> None:
        from coalition.ledger import add_months_us

        self.add_months_us = add_months_us
        self.day_start = _us(day)
        # every entry here has exactly 2 postings; a hold that is captured is 2 entries from
        # one event, so draw fewer events to land near the requested number of postings
        events_per_entry = 1 / (1 + redeem_share * hold_share)
        self.day_entries = round(postings // 2 * events_per_entry)
        self.history_entries = round(history_postings // 2 * events_per_entry)
        self.history_days = history_days
        self.partners = partner_ids(partners)
        self.rates = [1 + i % 3 for i in range(partners)]
        self.members = members
        self.redeem_share = redeem_share
        self.hold_share = hold_share
        self.hold_ttl_us = 900 * 1_000_000  # Settings.hold_ttl_default_seconds
        self.member_skew = member_skew
        self.chunk_members = chunk_members
        self.seed = seed
        weights = [1 / (i + 1) ** partner_zipf for i in range(partners)]
        self.cum_weights: list[float] | None = None
        if partner_zipf > 0:
            acc, cum = 0.0, []
            for w in weights:
                acc += w
                cum.append(acc)
            self.cum_weights = cum
        self.next_lot = 1
        self.next_movement = 1
        self.next_posting = 1
        self.next_entry = 1
        self.stats = LoadStats(members=members)
        self._expiry_offset: dict[int, int] = {}
        self.member_created_us = self.day_start - (history_days + 30) * DAY_US

    @property
    def chunks(self) -> int:
        return (self.members + self.chunk_members - 1) // self.chunk_members

    def _share(self, total: int, c: int) -> int:
        """Entries of chunk ``c``: the exact integer split of ``total`` by members."""
        a = c * self.chunk_members
        b = min(self.members, a + self.chunk_members)
        return total * b // self.members - total * a // self.members

    def _expires(self, t: int) -> int:
        day0 = t - t % DAY_US
        off = self._expiry_offset.get(day0)
        if off is None:
            off = self.add_months_us(day0, LOT_VALIDITY_MONTHS) - day0
            self._expiry_offset[day0] = off
        return t + off

    def chunk(self, c: int) -> dict[str, list[tuple[Any, ...]]]:
        rnd = random.Random(self.seed * 1_000_003 + c)
        r = rnd.random
        a = c * self.chunk_members
        size = min(self.members, a + self.chunk_members) - a
        n_day, n_hist = self._share(self.day_entries, c), self._share(self.history_entries, c)
        skew = self.member_skew
        events: dict[int, list[int]] = defaultdict(list)
        day_start = self.day_start
        for _ in range(n_day):
            events[int(size * r() ** skew)].append(day_start + int(r() * DAY_US))
        hist_start = day_start - self.history_days * DAY_US
        hist_len = self.history_days * DAY_US
        for _ in range(n_hist):
            events[int(size * r() ** skew)].append(hist_start + int(r() * hist_len))

        partners, rates, cum = self.partners, self.rates, self.cum_weights
        n_partners = len(partners)
        entries: list[tuple[Any, ...]] = []
        postings: list[tuple[Any, ...]] = []
        lots: list[tuple[Any, ...]] = []
        movements: list[tuple[Any, ...]] = []
        member_rows: list[tuple[Any, ...]] = []
        holds: list[tuple[Any, ...]] = []
        hold_share, hold_ttl, day_end = self.hold_share, self.hold_ttl_us, day_start + DAY_US
        by_kind = self.stats.by_kind
        redeem_share = self.redeem_share
        expires = self._expires
        created = self.member_created_us
        indexes = range(n_partners)

        def pick() -> int:
            """A partner index: uniform, or Zipf-weighted (a few big partners)."""
            if cum:
                return rnd.choices(indexes, cum_weights=cum)[0]
            return int(r() * n_partners)

        for k in range(size):
            mid = member_id(a + k)
            times = events.get(k)
            if not times:
                member_rows.append((mid, None, "active", 0, 0, 0, created))
                continue
            times.sort()
            # this member's lots, in consumption order (earliest-expiring first):
            # [lot_id, issuer, remaining, entry_id, earned_at, expires_at, points]
            open_lots: list[list[Any]] = []
            member_lots: list[list[Any]] = []
            available = 0
            held = 0
            maccount = "member:" + mid
            for t in times:
                eid = f"txn_{self.next_entry:020x}"
                self.next_entry += 1
                occurred = t - int(r() * 60_000_000)
                pid = self.next_posting
                self.next_posting += 2
                if available > 0 and r() < redeem_share:
                    qi = pick()
                    q = partners[qi]
                    x = 1 + int(r() * min(available, 5000))
                    hold = r() < hold_share
                    kind = "hold" if hold else "redeem"
                    entries.append(
                        (
                            eid,
                            kind,
                            q,
                            mid,
                            x,
                            None,
                            None,
                            f"ord-{eid[-10:]}",
                            None,
                            None,
                            None,
                            f"{q}-key",
                            None,
                            None,
                            None,
                            occurred,
                            t,
                            2,
                        )
                    )
                    postings.append((pid, eid, maccount, -x, t))
                    postings.append(
                        (pid + 1, eid, ("held:" + mid) if hold else "redeemed:" + q, x, t)
                    )
                    need = x
                    takes = []
                    while need:
                        lot = open_lots[0]
                        n = min(need, lot[2])
                        lot[2] -= n
                        need -= n
                        takes.append((lot[0], lot[1], n))
                        if hold:  # a hold moves no liability until it is captured
                            movements.append(
                                (
                                    self.next_movement,
                                    eid,
                                    lot[0],
                                    lot[1],
                                    mid,
                                    q,
                                    "hold",
                                    -n,
                                    0,
                                    0,
                                    t,
                                )
                            )
                        else:
                            movements.append(
                                (
                                    self.next_movement,
                                    eid,
                                    lot[0],
                                    lot[1],
                                    mid,
                                    q,
                                    "redeem",
                                    -n,
                                    -n,
                                    n,
                                    t,
                                )
                            )
                        self.next_movement += 1
                        if lot[2] == 0:
                            open_lots.pop(0)
                    available -= x
                    by_kind[kind] += 1
                    if hold:
                        expires_at = t + hold_ttl
                        if expires_at > day_end and r() < 0.5:
                            # still authorised when the period closes: an open hold
                            holds.append((eid, mid, q, x, 0, "held", expires_at, None))
                            held += x
                        else:  # captured in full a little later (possibly after the period)
                            ct = t + int(r() * hold_ttl)
                            cid = f"txn_{self.next_entry:020x}"
                            self.next_entry += 1
                            cp = self.next_posting
                            self.next_posting += 2
                            entries.append(
                                (
                                    cid,
                                    "capture",
                                    q,
                                    mid,
                                    x,
                                    None,
                                    None,
                                    None,
                                    None,
                                    eid,
                                    eid,
                                    f"{q}-key",
                                    None,
                                    None,
                                    None,
                                    None,
                                    ct,
                                    2,
                                )
                            )
                            postings.append((cp, cid, "held:" + mid, -x, ct))
                            postings.append((cp + 1, cid, "redeemed:" + q, x, ct))
                            for lot_id, issuer, n in takes:
                                movements.append(
                                    (
                                        self.next_movement,
                                        cid,
                                        lot_id,
                                        issuer,
                                        mid,
                                        q,
                                        "capture",
                                        0,
                                        -n,
                                        n,
                                        ct,
                                    )
                                )
                                self.next_movement += 1
                            holds.append((eid, mid, q, x, x, "captured", expires_at, cid))
                            by_kind["capture"] += 1
                else:
                    pi = pick()
                    p = partners[pi]
                    if r() < 0.05:
                        kind, pts, amount, currency, reason = (
                            "bonus_earn",
                            10 + int(r() * 490),
                            None,
                            None,
                            "review",
                        )
                    else:
                        amount = 100 + int(r() * 20_000)
                        kind, pts, currency, reason = "earn", amount * rates[pi] // 100, "EUR", None
                    entries.append(
                        (
                            eid,
                            kind,
                            p,
                            mid,
                            pts,
                            amount,
                            currency,
                            f"ord-{eid[-10:]}",
                            reason,
                            None,
                            None,
                            f"{p}-key",
                            None,
                            None,
                            None,
                            occurred,
                            t,
                            2,
                        )
                    )
                    postings.append((pid, eid, "issued:" + p, -pts, t))
                    postings.append((pid + 1, eid, maccount, pts, t))
                    lot = [self.next_lot, p, pts, eid, t, expires(t), pts]
                    self.next_lot += 1
                    open_lots.append(lot)
                    member_lots.append(lot)
                    movements.append(
                        (self.next_movement, eid, lot[0], p, mid, None, "earn", pts, pts, 0, t)
                    )
                    self.next_movement += 1
                    available += pts
                    by_kind[kind] += 1
            for lot_id, issuer, remaining, eid, t, exp, points in member_lots:
                lots.append((lot_id, mid, issuer, eid, points, remaining, t, exp))
            member_rows.append((mid, None, "active", available, held, 0, created))
            self.stats.active_members += 1
        s = self.stats
        s.entries += len(entries)
        s.postings += len(postings)
        s.lots += len(lots)
        s.movements += len(movements)
        s.holds += len(holds)
        for e in entries:
            if e[16] < day_start:
                s.history_entries += 1
            elif e[16] < day_end:
                s.day_entries += 1
            else:
                s.after_period_entries += 1
        s.day_postings = 2 * s.day_entries
        return {
            "members": member_rows,
            "entries": entries,
            "postings": postings,
            "lots": lots,
            "lot_movements": movements,
            "holds": holds,
        }


async def _defer_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the secondary indexes of the bulk tables (not those backing constraints: PKs,
    UNIQUE constraints) and return their exact definitions, to re-create after the load."""
    rows = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
        " FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relname = ANY($1::text[])"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        list(TABLE_COLUMNS),
    )
    for r in rows:
        await conn.execute(f"DROP INDEX {r['name']}")
    return [r["def"] for r in rows]


CLUSTER_KEYS = {
    "entries": "posted_at_us, id",
    "postings": "posted_at_us, id",
    "lot_movements": "posted_at_us, id",
    "lots": "earned_at_us, id",
}


async def load(
    dsn: str, gen: Generator, *, progress: bool, defer_indexes: bool, vacuum: bool, cluster: bool
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    result: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        await conn.copy_records_to_table(
            "partners",
            records=partner_rows(len(gen.partners), gen.member_created_us),
            columns=PARTNER_COLUMNS,
        )
        index_defs = await _defer_indexes(conn) if defer_indexes else []
        total = gen.day_entries * 2 + gen.history_entries * 2
        bar = _bar(total, "load postings", progress, "post")
        loop = asyncio.get_running_loop()
        copy_seconds = 0.0
        gen_seconds = 0.0

        async def generate(c: int) -> tuple[dict[str, list[tuple[Any, ...]]], float]:
            def work() -> tuple[dict[str, list[tuple[Any, ...]]], float]:
                s = time.perf_counter()
                rows = gen.chunk(c)
                return rows, time.perf_counter() - s

            return await loop.run_in_executor(None, work)

        pending: asyncio.Future[tuple[dict[str, list[tuple[Any, ...]]], float]] | None
        pending = asyncio.ensure_future(generate(0))
        for c in range(gen.chunks):
            assert pending is not None
            rows, g = await pending
            gen_seconds += g
            # generate the next chunk (thread) while this one is COPYed (server process)
            pending = asyncio.ensure_future(generate(c + 1)) if c + 1 < gen.chunks else None
            s = time.perf_counter()
            for table, columns in TABLE_COLUMNS.items():
                if rows[table]:
                    await conn.copy_records_to_table(table, records=rows[table], columns=columns)
            copy_seconds += time.perf_counter() - s
            bar.update(len(rows["postings"]))
            del rows
            if pending is None:
                break
        bar.close()
        t_rows = time.perf_counter()
        for table in ("lots", "lot_movements", "postings"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
        t_cluster = time.perf_counter()
        if cluster:
            # The API appends rows in commit order, so a real ledger's heap is ordered by time;
            # the loader wrote member by member. Reorder, so that index probes by member or
            # account hit scattered pages as they would in production.
            for table, key in CLUSTER_KEYS.items():
                await conn.execute(f"CREATE INDEX bench_cluster_{table} ON {table} ({key})")
                await conn.execute(f"CLUSTER {table} USING bench_cluster_{table}")
                await conn.execute(f"DROP INDEX bench_cluster_{table}")
        t_rows_done = time.perf_counter()
        for definition in index_defs:
            await conn.execute(definition)
        t_index = time.perf_counter()
        if vacuum:
            # the state autovacuum would leave a long-lived database in: statistics for the
            # planner and a visibility map (index-only scans)
            await conn.execute("VACUUM (ANALYZE)")
        t_vacuum = time.perf_counter()
        st = gen.stats
        rows_total = (
            st.entries
            + st.postings
            + st.lots
            + st.movements
            + st.members
            + st.holds
            + len(gen.partners)
        )
        sizes = {
            r["t"]: r["bytes"]
            for r in await conn.fetch(
                "SELECT relname AS t, pg_total_relation_size(oid) AS bytes FROM pg_class"
                " WHERE relname = ANY($1::text[])",
                list(TABLE_COLUMNS),
            )
        }
        result = {
            "rows": {
                "entries": st.entries,
                "postings": st.postings,
                "lots": st.lots,
                "lot_movements": st.movements,
                "holds": st.holds,
                "members": st.members,
                "active_members": st.active_members,
                "partners": len(gen.partners),
                "total": rows_total,
            },
            "day_entries": st.day_entries,
            "day_postings": st.day_postings,
            "history_entries": st.history_entries,
            "entries_after_period": st.after_period_entries,
            "entries_by_kind": dict(st.by_kind),
            "rows_seconds": round(t_rows - t0, 2),
            "generate_seconds_thread": round(gen_seconds, 2),
            "copy_seconds": round(copy_seconds, 2),
            "cluster_by_time_seconds": round(t_rows_done - t_cluster, 2) if cluster else None,
            "index_seconds": round(t_index - t_rows_done, 2),
            "vacuum_analyze_seconds": round(t_vacuum - t_index, 2),
            "seconds": round(t_vacuum - t0, 2),
            "rows_per_second": round(rows_total / (t_rows - t0)),
            "postings_per_second": round(st.postings / (t_rows - t0)),
            "indexes_rebuilt": len(index_defs),
            "table_mb": {k: round(v / 2**20) for k, v in sorted(sizes.items())},
            "loader_peak_rss_mb": round(_maxrss_mb()),
        }
    finally:
        await conn.close()
    return result


# ------------------------------------------------------------------------------------------------
# The settlement, in a child process
# ------------------------------------------------------------------------------------------------


def _label_sql(sql: str, known: dict[str, str]) -> str:
    name = known.get(sql)
    if name:
        return name
    return " ".join(sql.split())[:70]


async def _settle_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child: the settler exactly as ``coalition settle`` runs it (prepare, sign
    each pending statement in turn, publish), with every db call timed by label."""
    rss_start = _maxrss_mb()
    from coalition import db
    from coalition.audit import CHECKS
    from coalition.settings import Settings
    from settlement import repository
    from settlement.service import Settler, run_status

    rss_imports = _maxrss_mb()
    known = {sql: f"check:{name}" for name, sql in CHECKS.items()}
    timings: dict[str, dict[str, dict[str, float]]] = defaultdict(
        lambda: defaultdict(lambda: {"calls": 0, "seconds": 0.0, "rows": 0})
    )
    phase = ["setup"]
    original_fetch, original_execute = db.fetch, db.execute

    async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
        s = time.perf_counter()
        rows = await original_fetch(sql, *args)
        t = timings[phase[0]][_label_sql(sql, known)]
        t["calls"] += 1
        t["seconds"] += time.perf_counter() - s
        t["rows"] += len(rows)
        return rows

    async def execute(sql: str, *args: Any) -> None:
        s = time.perf_counter()
        await original_execute(sql, *args)
        t = timings[phase[0]][_label_sql(sql, known)]
        t["calls"] += 1
        t["seconds"] += time.perf_counter() - s

    db.fetch, db.execute = fetch, execute  # module attributes: every caller goes through them

    # label the repository's functions
    def labelled(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any) -> Any:
            s = time.perf_counter()
            try:
                return await fn(*args)
            finally:
                t = timings[phase[0]]["repo:" + name]
                t["calls"] += 1
                t["seconds"] += time.perf_counter() - s

        return wrapper

    for name in (
        "partner_ids",
        "cleared_points",
        "liability_by_kind",
        "liability_before",
        "liability_from",
        "outstanding_now",
        "entry_totals",
    ):
        setattr(repository, name, labelled(name, getattr(repository, name)))

    day = date.fromisoformat(cfg["date"])
    db.configure(cfg["url"])
    await db.start()
    out: dict[str, Any] = {"rss_mb": {"start": round(rss_start), "imports": round(rss_imports)}}
    samples: list[float] = []
    sampler_stop = asyncio.Event()

    async def sample_rss() -> None:
        with contextlib.suppress(ImportError):
            import psutil  # type: ignore[import-untyped,unused-ignore]

            proc = psutil.Process()
            while not sampler_stop.is_set():
                samples.append(proc.memory_info().rss / 2**20)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sampler_stop.wait(), 0.05)

    sampler = asyncio.create_task(sample_rss())
    try:
        settings = Settings(
            database_url=cfg["url"],
            statement_key_path=cfg["key"],
            settlement_start_date=cfg["date"],
        )
        following = day + timedelta(days=1)
        at = datetime(following.year, following.month, following.day, 1, 0, tzinfo=UTC)
        settler = Settler(settings, lambda: at)

        phase[0] = "prepare"
        c0, t0 = time.process_time(), time.perf_counter()
        outcome, pending = await settler.prepare(day)
        t1, c1 = time.perf_counter(), time.process_time()
        out["rss_mb"]["after_prepare"] = round(_maxrss_mb())
        out["prepare_status"] = outcome.status
        out["breaks"] = outcome.breaks[:20]

        phase[0] = "sign"
        bar = _bar(len(pending), "sign statements", cfg["progress"], "stmt")
        per_statement: list[tuple[float, str]] = []
        concurrency = max(1, int(cfg.get("sign_concurrency", 1)))
        if concurrency == 1:
            for p in pending:
                s = time.perf_counter()
                await settler.sign_statement(day, p)
                per_statement.append((time.perf_counter() - s, p))
                bar.update()
        else:
            sem = asyncio.Semaphore(concurrency)

            async def one(p: str) -> None:
                async with sem:
                    s = time.perf_counter()
                    await settler.sign_statement(day, p)
                    per_statement.append((time.perf_counter() - s, p))
                    bar.update()

            await asyncio.gather(*(one(p) for p in pending))
        bar.close()
        t2, c2 = time.perf_counter(), time.process_time()
        out["rss_mb"]["after_sign"] = round(_maxrss_mb())

        phase[0] = "publish"
        published = await settler.publish_if_complete(day) if outcome.status == "running" else False
        t3 = time.perf_counter()
        status = await run_status(day)

        phase[0] = "pdf"
        pdf_seconds = None
        if cfg.get("pdf", 0) and status.status == "published":
            from settlement import store

            partners = (await store.statement_partners(day))[: cfg["pdf"]]
            bar = _bar(len(partners), "render pdf", cfg["progress"], "pdf")
            s = time.perf_counter()
            pdf_bytes = 0
            for p in partners:
                pdf_bytes += len(await store.statement_bytes(day, p, "pdf"))
                bar.update()
            bar.close()
            pdf_seconds = time.perf_counter() - s
            out["pdf"] = {
                "count": len(partners),
                "seconds": round(pdf_seconds, 2),
                "per_second": round(len(partners) / pdf_seconds, 1),
                "mb": round(pdf_bytes / 2**20, 1),
            }
        sizes = await original_fetch(
            "SELECT COUNT(*) AS n, COALESCE(SUM(length(signed_csv)), 0) AS csv,"
            " COALESCE(MAX(length(signed_csv)), 0) AS max_csv,"
            " COALESCE(SUM(length(signed_json)), 0) AS json FROM statements"
        )
        per_statement.sort(reverse=True)
        out.update(
            {
                "status": status.status,
                "published": published,
                "prepare_seconds": round(t1 - t0, 2),
                "prepare_cpu_seconds": round(c1 - c0, 2),
                "statements_pending": len(pending),
                "sign_seconds": round(t2 - t1, 2),
                "sign_cpu_seconds": round(c2 - c1, 2),
                "statements_per_second": round(len(pending) / (t2 - t1), 1) if t2 > t1 else None,
                "slowest_statements": [
                    {"partner": p, "seconds": round(s, 3)} for s, p in per_statement[:3]
                ],
                "publish_seconds": round(t3 - t2, 3),
                "settle_seconds": round(t3 - t0, 2),
                "statements": {
                    "count": int(sizes[0]["n"]),
                    "csv_mb": round(int(sizes[0]["csv"]) / 2**20, 1),
                    "largest_csv_mb": round(int(sizes[0]["max_csv"]) / 2**20, 1),
                    "json_mb": round(int(sizes[0]["json"]) / 2**20, 2),
                },
            }
        )
    finally:
        sampler_stop.set()
        await sampler
        await db.stop()
    out["rss_mb"]["peak"] = round(_maxrss_mb())
    if samples:
        out["rss_mb"]["sampled_max"] = round(max(samples))
    out["sql"] = {
        ph: {
            k: {"calls": int(v["calls"]), "seconds": round(v["seconds"], 3), "rows": int(v["rows"])}
            for k, v in sorted(labels.items(), key=lambda kv: -kv[1]["seconds"])
        }
        for ph, labels in timings.items()
    }
    return out


def _child_main(cfg_path: str) -> int:
    cfg = json.loads(Path(cfg_path).read_text())
    result = asyncio.run(_settle_child(cfg))
    Path(cfg["out"]).write_text(json.dumps(result, indent=1))
    return 0


def _run_settle_child(cfg: dict[str, Any], work: Path, py_spy: bool) -> dict[str, Any]:
    cfg_path, out_path = work / "settle-cfg.json", work / "settle-out.json"
    cfg = {**cfg, "out": str(out_path)}
    cfg_path.write_text(json.dumps(cfg))
    cmd = [sys.executable, "-m", "bench.settlement_scale", "--_settle-child", str(cfg_path)]
    profile = None
    if py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if Path(spy).exists():
            profile = work / "settle.pyspy.txt"
            cmd = [spy, "record", "--format", "raw", "--rate", "50", "-o", str(profile), "--", *cmd]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"settlement child failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out_path.read_text())
    result["child_wall_seconds"] = round(wall, 2)
    if profile is not None and profile.exists():
        result["py_spy"] = _summarise_profile(profile)
    return result


def _summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks -> the functions with the most inclusive / self samples
    (idle, i.e. waiting on PostgreSQL in the event loop, is not sampled)."""
    inclusive: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n

    def pct(d: dict[str, int]) -> list[str]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [f"{100 * v / total:5.1f}% {k}" for k, v in ranked]

    return {"samples": total, "file": str(path), "inclusive": pct(inclusive), "self": pct(own)}


# ------------------------------------------------------------------------------------------------
# EXPLAIN ANALYZE and what-if experiments
# ------------------------------------------------------------------------------------------------


def _dollar(sql: str) -> str:
    """Piccolo's ``{}`` placeholders -> asyncpg's ``$n``."""
    parts = sql.split("{}")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def _plan_summary(node: dict[str, Any], depth: int = 0) -> Iterator[str]:
    rel = f" on {node['Relation Name']}" if "Relation Name" in node else ""
    idx = f" using {node['Index Name']}" if "Index Name" in node else ""
    loops = node.get("Actual Loops", 1)
    yield (
        f"{'  ' * depth}{node['Node Type']}{rel}{idx} rows={node.get('Actual Rows')}"
        f" loops={loops} time={node.get('Actual Total Time')}ms"
    )
    for child in node.get("Plans", []):
        yield from _plan_summary(child, depth + 1)


async def explain_queries(
    dsn: str, day: date, partners: list[str], work: Path, whatif: bool
) -> dict[str, Any]:
    from coalition import fingerprints
    from coalition.audit import CHECKS
    from settlement.reconciliation import LEDGER_CHECKS

    start, end = _us(day), _us(day + timedelta(days=1))
    # the SQL exactly as settlement/repository.py builds it (checked against the module below)
    queries: dict[str, tuple[str, tuple[Any, ...]]] = {
        "cleared_points": (
            "SELECT issuer_id, payee_id, SUM(cleared_points) AS points FROM lot_movements"
            " WHERE posted_at_us >= {} AND posted_at_us < {} AND cleared_points <> 0"
            " GROUP BY issuer_id, payee_id",
            (start, end),
        ),
        "liability_by_kind": (
            "SELECT issuer_id, kind, SUM(liability_points) AS points FROM lot_movements"
            " WHERE posted_at_us >= {} AND posted_at_us < {} GROUP BY issuer_id, kind",
            (start, end),
        ),
        "liability_before(start)": (
            "SELECT issuer_id, SUM(liability_points) AS points FROM lot_movements"
            " WHERE posted_at_us < {} GROUP BY issuer_id",
            (start,),
        ),
        "liability_from(end)": (
            "SELECT issuer_id, SUM(liability_points) AS points FROM lot_movements"
            " WHERE posted_at_us >= {} GROUP BY issuer_id",
            (end,),
        ),
        "outstanding_now:lots": (
            "SELECT issuer_id, SUM(remaining) AS points FROM lots GROUP BY issuer_id",
            (),
        ),
        "outstanding_now:holds": (
            "SELECT m.issuer_id, -SUM(m.lot_points) AS points FROM lot_movements m"
            " JOIN holds h ON h.id = m.entry_id WHERE h.status = 'held' GROUP BY m.issuer_id",
            (),
        ),
        "entry_totals": (
            "SELECT partner_id, kind, COUNT(*) AS n, SUM(points) AS points FROM entries"
            " WHERE posted_at_us >= {} AND posted_at_us < {} AND partner_id IS NOT NULL"
            " GROUP BY partner_id, kind",
            (start, end),
        ),
    }
    from settlement.repository import TRANSACTIONS_CSV_SQL

    # the COPY query of statement signing, run as a plain SELECT (its $n placeholders as they are)
    queries["partner_transactions_csv"] = (TRANSACTIONS_CSV_SQL, (partners[0], start, end))
    for name in LEDGER_CHECKS:
        queries[f"check:{name}"] = (CHECKS[name], ())
    # what settlement runs instead of the fingerprinted checks (PostgreSQL)
    for table, sql in fingerprints.queries(fingerprints.new_seed()).items():
        queries[f"fingerprint:{table}"] = (sql, ())
    _check_sql_is_current(queries)

    conn = await asyncpg.connect(dsn)
    plans_text: list[str] = []
    result: dict[str, Any] = {}
    try:
        await conn.execute("SET max_parallel_workers_per_gather = DEFAULT")

        async def explain(name: str, sql: str, args: tuple[Any, ...]) -> dict[str, Any]:
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _dollar(sql), *args
            )
            doc = rows[0][0]
            doc = json.loads(doc) if isinstance(doc, str) else doc
            plan = doc[0]
            text = list(_plan_summary(plan["Plan"]))
            plans_text.append(f"== {name}\n{sql}\n" + "\n".join(text) + "\n")
            top = plan["Plan"]
            shared = {k: top.get(k, 0) for k in ("Shared Hit Blocks", "Shared Read Blocks")}
            return {
                "ms": round(plan["Execution Time"], 1),
                "rows": top.get("Actual Rows"),
                "buffers_mb": round(
                    (shared["Shared Hit Blocks"] + shared["Shared Read Blocks"]) * 8 / 1024
                ),
                "plan": text[:6],
            }

        for name, (sql, args) in queries.items():
            result[name] = await explain(name, sql, args)

        if whatif:
            result["whatif"] = await _whatif(explain, start, end)
    finally:
        await conn.close()
    (work / "plans.txt").write_text("\n".join(plans_text))
    result["plans_file"] = str(work / "plans.txt")
    return result


def _check_sql_is_current(queries: dict[str, tuple[str, tuple[Any, ...]]]) -> None:
    """Fail loudly if settlement/repository.py no longer runs the SQL we EXPLAIN."""
    import inspect

    from settlement import repository

    source = " ".join(inspect.getsource(repository).split())
    for name in ("cleared_points", "liability_by_kind", "entry_totals", "outstanding_now:lots"):
        fragment = queries[name][0].split(" FROM ")[0]
        if fragment.split(",")[0] not in source:
            print(f"warning: repository SQL for {name} changed", file=sys.stderr)


async def _whatif(explain: Callable[..., Any], start: int, end: int) -> dict[str, Any]:
    """Candidate fixes not yet taken, timed on the same data: the whole-ledger checks scoped to
    what the period touched (the journal is append-only; the full audit would stay its own
    job), what a long history needs once the fingerprints' full scans grow. Fixes already taken
    (GROUP BY checks, fingerprints, the closing without a scan, the partner index, COPY) are
    gone from here."""
    rewrites = {
        "member-balance-vs-journal (only members touched in the period)": f"""
            SELECT m.id AS member_id FROM members m
            WHERE m.id IN (SELECT DISTINCT member_id FROM entries
                           WHERE posted_at_us >= {start} AND posted_at_us < {end})
              AND m.available_points <> COALESCE(
                (SELECT SUM(points) FROM postings WHERE account = 'member:' || m.id), 0)""",
        "entry-balances (only the period's entries)": f"""
            SELECT e.id FROM entries e LEFT JOIN postings p ON p.entry_id = e.id
            WHERE e.posted_at_us >= {start} AND e.posted_at_us < {end}
            GROUP BY e.id, e.posting_count
            HAVING COALESCE(SUM(p.points), 0) <> 0 OR COUNT(p.id) <> e.posting_count""",
    }
    return {name: await explain("whatif:" + name, sql, ()) for name, sql in rewrites.items()}


# ------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------


async def run(
    pg_admin_dsn: str,
    postings: int = 1_000_000,
    partners: int = 100,
    members: int = 1_000_000,
    progress: bool = True,
    *,
    business_date: date = DEFAULT_DATE,
    history_postings: int = 0,
    history_days: int = 60,
    redeem_share: float = 0.4,
    hold_share: float = 0.1,
    member_skew: float = 2.0,
    partner_zipf: float = 0.0,
    chunk_members: int = 20_000,
    seed: int = 1,
    defer_indexes: bool = True,
    vacuum: bool = True,
    cluster: bool = True,
    explain: bool = True,
    whatif: bool = True,
    py_spy: bool = False,
    pdf: int = 0,
    sign_concurrency: int | None = None,
    keep_db: bool = False,
    work_dir: str | None = None,
    db: str = "postgres",
) -> dict[str, Any]:
    """Load one synthetic business day of ``postings`` postings (``members`` members,
    ``partners`` partners; optionally ``history_postings`` more on the ``history_days`` before
    it), settle it in a child process, and return the timings (seconds), throughput and the
    settling process's peak RSS. The database is created fresh and dropped afterwards.

    ``db="sqlite"``: a SQLite file in the work dir instead (``pg_admin_dsn`` unused), loaded by
    ``bench.sqlite_load``; the EXPLAIN / what-if analysis is PostgreSQL-only and skipped."""
    if not 1 <= history_days <= 300:
        raise ValueError("history_days must be 1..300 (lots must not expire within the window)")
    if db not in ("postgres", "sqlite"):
        raise ValueError(f"db must be postgres or sqlite, not {db!r}")
    sqlite = db == "sqlite"
    if sign_concurrency is None:  # as `coalition settle` signs
        from settlement.service import SIGN_CONCURRENCY

        sign_concurrency = 1 if sqlite else SIGN_CONCURRENCY
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="settlement-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if sqlite:
        from bench import sqlite_load

        db_path = (work / "bench.sqlite3").resolve()
        dbname, url = str(db_path), sqlite_load.sqlite_url(db_path)
    else:
        dbname = f"bench_settle_{os.getpid()}_{secrets.token_hex(4)}"
        url = _with_db(pg_admin_dsn, dbname)
    result: dict[str, Any] = {
        "db": db,
        "params": {
            "postings": postings,
            "partners": partners,
            "members": members,
            "history_postings": history_postings,
            "business_date": business_date.isoformat(),
            "redeem_share": redeem_share,
            "hold_share": hold_share,
            "member_skew": member_skew,
            "partner_zipf": partner_zipf,
            "sign_concurrency": sign_concurrency,
            "cluster_by_time": cluster and not sqlite,
        },
        "database": dbname,
        "work_dir": str(work),
    }
    admin = None if sqlite else await asyncpg.connect(pg_admin_dsn)
    try:
        if admin is not None:
            await admin.execute(f'CREATE DATABASE "{dbname}"')
        started = time.perf_counter()
        try:
            s = time.perf_counter()
            env = {**os.environ, "COALITION_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "coalition.cli", "migrate"],
                cwd=REPO,
                env=env,
                check=True,
            )
            result["migrate_seconds"] = round(time.perf_counter() - s, 2)

            from settlement import statement_key

            key_path = work / "keys" / "statement.private.pem"
            statement_key.generate(key_path)

            gen = Generator(
                day=business_date,
                postings=postings,
                partners=partners,
                members=members,
                history_postings=history_postings,
                history_days=history_days,
                redeem_share=redeem_share,
                hold_share=hold_share,
                member_skew=member_skew,
                partner_zipf=partner_zipf,
                chunk_members=chunk_members,
                seed=seed,
            )
            if sqlite:
                result["load"] = await asyncio.to_thread(
                    sqlite_load.load_settlement,
                    db_path,
                    gen,
                    partner_rows=partner_rows(len(gen.partners), gen.member_created_us),
                    partner_columns=PARTNER_COLUMNS,
                    table_columns=TABLE_COLUMNS,
                    progress_bar=_bar(
                        gen.day_entries * 2 + gen.history_entries * 2,
                        "load postings",
                        progress,
                        "post",
                    ),
                    defer=defer_indexes,
                    analyze=vacuum,
                    maxrss_mb=_maxrss_mb,
                )
            else:
                result["load"] = await load(
                    url,
                    gen,
                    progress=progress,
                    defer_indexes=defer_indexes,
                    vacuum=vacuum,
                    cluster=cluster,
                )
            if not sqlite:
                result["reference"] = await _postings_scan(url)
            settle_cfg = {
                "url": url,
                "key": str(key_path),
                "date": business_date.isoformat(),
                "progress": progress,
                "pdf": pdf,
                "sign_concurrency": sign_concurrency,
            }
            result["settle"] = await asyncio.to_thread(_run_settle_child, settle_cfg, work, py_spy)
            if result["settle"]["status"] != "published":
                raise RuntimeError(
                    f"settlement did not publish: {result['settle']['status']}"
                    f" breaks={result['settle'].get('breaks')}"
                )
            if explain and sqlite:
                note = "EXPLAIN (ANALYZE, BUFFERS) and the what-ifs are PostgreSQL-only"
                print(f"skipped on SQLite: {note}", file=sys.stderr)
                result["explain"] = {"skipped": note}
            elif explain:
                result["explain"] = await explain_queries(
                    url, business_date, gen.partners, work, whatif
                )
        finally:
            result["total_seconds"] = round(time.perf_counter() - started, 2)
            shutil.rmtree(work / "keys", ignore_errors=True)  # a throw-away signing key
            if keep_db:
                pass
            elif admin is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
                result["database_dropped"] = True
            else:
                sqlite_load.remove_database(db_path)
                result["database_dropped"] = True
    finally:
        if admin is not None:
            await admin.close()
    settle = result["settle"]
    result["summary"] = {
        "db": db,
        "postings": postings,
        "history_postings": history_postings,
        "partners": partners,
        "load_seconds": result["load"]["seconds"],
        "load_rows_per_second": result["load"]["rows_per_second"],
        "prepare_seconds": settle["prepare_seconds"],
        "sign_seconds": settle["sign_seconds"],
        "publish_seconds": settle["publish_seconds"],
        "settle_seconds": settle["settle_seconds"],
        "statements_per_second": settle["statements_per_second"],
        "peak_rss_mb_settling_process": settle["rss_mb"]["peak"],
        "postings_scan_seconds": result.get("reference", {}).get("seconds"),
        "status": settle["status"],
        "total_seconds": result["total_seconds"],
    }
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


async def _postings_scan(url: str) -> dict[str, float]:
    """This box's speed today, next to the run: one aggregate over every posting (the least
    any check of the whole journal costs). The second of two runs, so the cache is warm as it
    is for the settlement that follows."""
    conn = await asyncpg.connect(url)
    try:
        for _ in range(2):
            s = time.perf_counter()
            rows = await conn.fetchval("SELECT COUNT(*) FROM postings WHERE points <> 0")
            seconds = time.perf_counter() - s
    finally:
        await conn.close()
    return {"seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def _table(results: list[dict[str, Any]]) -> str:
    cols = [
        ("db", "db"),
        ("postings", "postings"),
        ("history_postings", "history"),
        ("partners", "partners"),
        ("load_seconds", "load s"),
        ("load_rows_per_second", "load rows/s"),
        ("prepare_seconds", "prepare s"),
        ("sign_seconds", "sign s"),
        ("publish_seconds", "publish s"),
        ("settle_seconds", "settle s"),
        ("statements_per_second", "stmt/s"),
        ("peak_rss_mb_settling_process", "peak RSS MB"),
        ("status", "status"),
        ("total_seconds", "total s"),
    ]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        s = r["summary"]
        lines.append(
            "| "
            + " | ".join(f"{s[k]:,}" if isinstance(s[k], int) else str(s[k]) for k, _ in cols)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_settle-child"]:
        return _child_main(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="sqlite: a SQLite file in the work dir (no EXPLAIN / what-ifs)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG_ADMIN_DSN", DEFAULT_DSN),
        help="admin DSN (CREATE/DROP DATABASE); PostgreSQL only",
    )
    parser.add_argument(
        "--postings",
        type=int,
        action="append",
        help="postings on the business date; repeat for several runs",
    )
    parser.add_argument("--partners", type=int, default=100)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument(
        "--history-postings",
        type=int,
        default=0,
        help="extra postings on the days before (ledger history)",
    )
    parser.add_argument("--history-days", type=int, default=60)
    parser.add_argument("--date", type=date.fromisoformat, default=DEFAULT_DATE)
    parser.add_argument("--redeem-share", type=float, default=0.4)
    parser.add_argument(
        "--hold-share", type=float, default=0.1, help="share of redemptions made as hold + capture"
    )
    parser.add_argument(
        "--partner-zipf",
        type=float,
        default=0.0,
        help="skew of partner popularity (0 = uniform, 1 = Zipf)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pdf", type=int, default=0, help="also render N statements as PDF")
    parser.add_argument(
        "--sign-concurrency",
        type=int,
        help="statements signed at once (default: what `coalition settle` does, 1 on SQLite)",
    )
    parser.add_argument("--py-spy", action="store_true", help="profile the settling child")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--no-whatif", action="store_true")
    parser.add_argument(
        "--keep-indexes",
        action="store_true",
        help="load into the indexed tables instead of rebuilding indexes",
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="keep the loader's member order (default: reorder heaps by time)",
    )
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)
    results = []
    for n in args.postings or [1_000_000]:
        r = asyncio.run(
            run(
                args.dsn,
                postings=n,
                partners=args.partners,
                members=args.members,
                progress=not args.no_progress,
                business_date=args.date,
                history_postings=args.history_postings,
                history_days=args.history_days,
                redeem_share=args.redeem_share,
                hold_share=args.hold_share,
                partner_zipf=args.partner_zipf,
                seed=args.seed,
                defer_indexes=not args.keep_indexes,
                cluster=not args.no_cluster,
                explain=not args.no_explain,
                whatif=not args.no_whatif,
                py_spy=args.py_spy,
                pdf=args.pdf,
                sign_concurrency=args.sign_concurrency,
                keep_db=args.keep_db,
                db=args.db,
            )
        )
        results.append(r)
        print(json.dumps(r, indent=1, default=str))
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
