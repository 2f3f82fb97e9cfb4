"""How the databases store and find what the ledger and settlement write (the migrations'
physical choices)."""

from __future__ import annotations

import pytest

from coalition import db
from tests.databases import BACKEND


@pytest.mark.skipif(BACKEND != "postgres", reason="TOAST compression is PostgreSQL's")
async def test_signed_statements_are_compressed_with_lz4() -> None:
    """pglz took most of the time to store a big day's CSVs (docs/performance.md)."""
    available = await db.fetch(
        "SELECT 1 AS ok FROM pg_settings"
        " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    )
    rows = await db.fetch(
        "SELECT attname, attcompression::text AS attcompression FROM pg_attribute"
        " WHERE attrelid = 'statements'::regclass AND attname IN ('signed_json', 'signed_csv')"
        " ORDER BY attname"
    )
    compression = {r["attname"]: r["attcompression"] for r in rows}
    if available:
        assert compression == {"signed_csv": "l", "signed_json": "l"}
    else:  # the migration leaves the server's default
        assert set(compression) == {"signed_csv", "signed_json"}
        assert "l" not in compression.values()


@pytest.mark.skipif(BACKEND != "postgres", reason="the covering index is PostgreSQL's")
async def test_statement_lines_are_an_index_only_scan() -> None:
    """Every column the CSV query reads is in the partner-and-time index, so it never visits
    the table (the table's pages were the cost: docs/performance.md). The test database is
    small, so the planner is told to leave the table alone, as it does on a big day."""
    from settlement.repository import TRANSACTIONS_CSV_SQL

    await db.execute("VACUUM (ANALYZE) entries")  # an index-only scan needs the visibility map
    sql = TRANSACTIONS_CSV_SQL.replace("$1", "'p'").replace("$2", "0").replace("$3", "1")
    async with db.write_transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL enable_bitmapscan = off")
        plan = await db.fetch("EXPLAIN (FORMAT JSON) " + sql)
    text = str(plan[0]["QUERY PLAN"])
    assert "Index Only Scan" in text and "entries_partner_statement" in text, text
    assert "Sort" not in text, text  # the index gives the statement's order


async def test_a_reversal_finds_the_earns_lot_by_index() -> None:
    """Reversing an earn reads its lot by entry id; without ``lots_entry`` that was a scan of
    every lot on every reversal (docs/performance.md). The planner is told to avoid scans, as
    it does on a big ledger, so only a missing index makes it scan."""
    from coalition.journal import LOT_OF_ENTRY

    sql = LOT_OF_ENTRY.replace("{}", "'txn_x'")
    if BACKEND == "postgres":
        async with db.write_transaction():
            await db.execute("SET LOCAL enable_seqscan = off")
            plan = str(await db.fetch("EXPLAIN " + sql))
    else:
        plan = str(await db.fetch("EXPLAIN QUERY PLAN " + sql))
    assert "lots_entry" in plan, plan
