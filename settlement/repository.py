"""Every query settlement runs. Aggregation happens in SQL; Python sees per-pair and per-issuer
sums, and transaction lines in fixed-size batches, so memory does not grow with postings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from coalition import db

BATCH_ROWS = 5000


async def partner_ids() -> list[str]:
    return [r["id"] for r in await db.fetch("SELECT id FROM partners ORDER BY id")]


async def cleared_points(start_us: int, end_us: int) -> dict[tuple[str, str], int]:
    rows = await db.fetch(
        "SELECT issuer_id, payee_id, SUM(cleared_points) AS points FROM lot_movements"
        " WHERE posted_at_us >= {} AND posted_at_us < {} AND cleared_points <> 0"
        " GROUP BY issuer_id, payee_id",
        start_us,
        end_us,
    )
    return {(r["issuer_id"], r["payee_id"]): int(r["points"]) for r in rows}


async def liability_by_kind(start_us: int, end_us: int) -> dict[str, dict[str, int]]:
    """issuer -> movement kind -> sum of liability changes in the period."""
    rows = await db.fetch(
        "SELECT issuer_id, kind, SUM(liability_points) AS points FROM lot_movements"
        " WHERE posted_at_us >= {} AND posted_at_us < {} GROUP BY issuer_id, kind",
        start_us,
        end_us,
    )
    result: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        result[r["issuer_id"]][r["kind"]] = int(r["points"])
    return result


async def liability_before(at_us: int) -> dict[str, int]:
    """Each issuer's liability from its lot movements posted before ``at_us``."""
    return await _liability("posted_at_us < {}", at_us)


async def liability_from(at_us: int) -> dict[str, int]:
    """Each issuer's liability change from movements posted at or after ``at_us``."""
    return await _liability("posted_at_us >= {}", at_us)


async def _liability(where: str, at_us: int) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT issuer_id, SUM(liability_points) AS points FROM lot_movements"
        f" WHERE {where} GROUP BY issuer_id",
        at_us,
    )
    return {r["issuer_id"]: int(r["points"]) for r in rows}


async def outstanding_now() -> dict[str, int]:
    """Each issuer's liability from the lots themselves: remaining plus open holds on them."""
    lots = await db.fetch("SELECT issuer_id, SUM(remaining) AS points FROM lots GROUP BY issuer_id")
    holds = await db.fetch(
        "SELECT m.issuer_id, -SUM(m.lot_points) AS points FROM lot_movements m"
        " JOIN holds h ON h.id = m.entry_id WHERE h.status = 'held' GROUP BY m.issuer_id"
    )
    total: dict[str, int] = defaultdict(int)
    for r in [*lots, *holds]:
        total[r["issuer_id"]] += int(r["points"])
    return dict(total)


async def entry_totals(start_us: int, end_us: int) -> dict[str, dict[str, tuple[int, int]]]:
    """partner -> entry kind -> (count, points) in the period."""
    rows = await db.fetch(
        "SELECT partner_id, kind, COUNT(*) AS n, SUM(points) AS points FROM entries"
        " WHERE posted_at_us >= {} AND posted_at_us < {} AND partner_id IS NOT NULL"
        " GROUP BY partner_id, kind",
        start_us,
        end_us,
    )
    result: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for r in rows:
        result[r["partner_id"]][r["kind"]] = (int(r["n"]), int(r["points"]))
    return result


async def partner_transactions(
    partner_id: str, start_us: int, end_us: int
) -> AsyncIterator[dict[str, Any]]:
    """The partner's entries in the period, oldest first, fetched in batches (keyset paging).

    SQLite's way; PostgreSQL streams the same lines with ``partner_transactions_csv``."""
    after: tuple[int, str] = (start_us - 1, "")
    while True:
        rows = await db.fetch(
            "SELECT id, kind, member_id, order_ref, points, posted_at_us, occurred_at_us"
            " FROM entries WHERE partner_id = {} AND posted_at_us < {}"
            " AND (posted_at_us > {} OR (posted_at_us = {} AND id > {}))"
            " ORDER BY posted_at_us, id LIMIT {}",
            partner_id,
            end_us,
            after[0],
            after[0],
            after[1],
            BATCH_ROWS,
        )
        for row in rows:
            yield row
        if len(rows) < BATCH_ROWS:
            return
        after = (rows[-1]["posted_at_us"], rows[-1]["id"])


def _utc_text(column: str) -> str:
    """``rfc3339`` in SQL, exact to the microsecond in years 1 to 9999: whole seconds and the
    microseconds are added apart (an interval times a number goes through a double)."""
    return (
        f"to_char(TIMESTAMP '1970-01-01' + ({column} / 1000000) * INTERVAL '1 second'"
        f" + ({column} % 1000000) * INTERVAL '1 microsecond',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
    )


# The columns of ``documents.transaction_row``, formatted by PostgreSQL. NULL prints as nothing
# and an empty string would print as "", so empty values become NULL.
TRANSACTIONS_CSV_SQL = (
    "SELECT id, kind, NULLIF(member_id, ''), NULLIF(order_ref, ''), points,"
    f" {_utc_text('posted_at_us')}, {_utc_text('NULLIF(occurred_at_us, 0)')}"
    " FROM entries WHERE partner_id = $1 AND posted_at_us >= $2 AND posted_at_us < $3"
    " ORDER BY posted_at_us, id"
)


async def partner_transactions_csv(
    partner_id: str, start_us: int, end_us: int, sink: Callable[[bytes], Awaitable[None]]
) -> None:
    """PostgreSQL: the lines ``partner_transactions`` gives, as CSV rows streamed by COPY in
    one index scan, with no Python object per row (docs/performance.md)."""
    await db.copy_csv(TRANSACTIONS_CSV_SQL, (partner_id, start_us, end_us), sink)
