"""All SQL the ledger writes with, hand-written for the hot path (one statement per row set).

Every function here runs inside the caller's ``write_transaction``. Locks are taken in one
order, member row first, so concurrent use cases on one member queue instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coalition import db
from coalition.errors import NotFound
from coalition.ledger import LotView, check_balanced

MEMBER_COLUMNS = "id, status, available_points, held_points, debt_points"


@dataclass(frozen=True, slots=True)
class Cause:
    """Who or what caused an entry: a partner's request or a job run."""

    partner_id: str | None = None
    key_id: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    job: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewEntry:
    id: str
    kind: str
    cause: Cause
    posted_at_us: int
    points: int
    member_id: str | None = None
    partner_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    order_ref: str | None = None
    reason: str | None = None
    original_id: str | None = None
    resolves_hold_id: str | None = None
    occurred_at_us: int | None = None


@dataclass(frozen=True, slots=True)
class Movement:
    lot: LotView
    kind: str
    lot_points: int
    liability_points: int
    cleared_points: int = 0
    payee_id: str | None = None


async def lock_member(member_id: str) -> dict[str, Any]:
    row = await db.fetch_one(
        f"SELECT {MEMBER_COLUMNS} FROM members WHERE id = {{}}{db.for_update()}", member_id
    )
    if row is None:
        raise NotFound(f"member {member_id} not found", member_id=member_id)
    return row


async def unexpired_lots(member_id: str, now_us: int) -> list[LotView]:
    rows = await db.fetch(
        "SELECT id, issuer_id, remaining, earned_at_us, expires_at_us FROM lots"
        " WHERE member_id = {} AND remaining > 0 AND expires_at_us > {}"
        " ORDER BY expires_at_us, earned_at_us, id",
        member_id,
        now_us,
    )
    return [LotView(**row) for row in rows]


async def insert_entry(entry: NewEntry, postings: Sequence[tuple[str, int]]) -> None:
    """The entry and its postings; refuses (as a bug) anything that does not balance."""
    postings = [(account, points) for account, points in postings if points != 0]
    check_balanced(postings)
    c = entry.cause
    entry_sql = (
        "INSERT INTO entries (id, kind, partner_id, member_id, points, amount_minor, currency,"
        " order_ref, reason, original_id, resolves_hold_id, key_id, idempotency_key, job, run_id,"
        " occurred_at_us, posted_at_us, posting_count)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})"
    )
    entry_args = [
        entry.id,
        entry.kind,
        entry.partner_id or c.partner_id,
        entry.member_id,
        entry.points,
        entry.amount_minor,
        entry.currency,
        entry.order_ref,
        entry.reason,
        entry.original_id,
        entry.resolves_hold_id,
        c.key_id,
        c.idempotency_key,
        c.job,
        c.run_id,
        entry.occurred_at_us,
        entry.posted_at_us,
        len(postings),
    ]
    values = ", ".join("({}, {}, {}, {})" for _ in postings)
    postings_sql = f"INSERT INTO postings (entry_id, account, points, posted_at_us) VALUES {values}"
    postings_args: list[Any] = []
    for account, points in postings:
        postings_args += [entry.id, account, points, entry.posted_at_us]
    if db.is_postgres():
        # One round trip: PostgreSQL runs a data-modifying WITH and checks the foreign key at
        # the end of the statement, when the entry exists.
        await db.execute(f"WITH entry AS ({entry_sql}) {postings_sql}", *entry_args, *postings_args)
    else:
        await db.execute(entry_sql, *entry_args)
        await db.execute(postings_sql, *postings_args)


async def insert_movements(
    entry: NewEntry, member_id: str, movements: Sequence[Movement], skip_lot: int | None = None
) -> None:
    """Record the lot movements and apply each one's change to its lot's ``remaining``
    (except ``skip_lot``'s: a lot created by this entry is written with its final value)."""
    if not movements:
        return
    values = ", ".join("({}, {}, {}, {}, {}, {}, {}, {}, {}, {})" for _ in movements)
    args: list[Any] = []
    for m in movements:
        args += [
            entry.id,
            m.lot.id,
            m.lot.issuer_id,
            member_id,
            m.payee_id,
            m.kind,
            m.lot_points,
            m.liability_points,
            m.cleared_points,
            entry.posted_at_us,
        ]
    await db.execute(
        "INSERT INTO lot_movements (entry_id, lot_id, issuer_id, member_id, payee_id, kind,"
        f" lot_points, liability_points, cleared_points, posted_at_us) VALUES {values}",
        *args,
    )
    deltas: dict[int, int] = {}
    for m in movements:
        deltas[m.lot.id] = deltas.get(m.lot.id, 0) + m.lot_points
    for lot_id, delta in sorted(deltas.items()):
        if delta and lot_id != skip_lot:
            await db.execute(
                "UPDATE lots SET remaining = remaining + {} WHERE id = {}", delta, lot_id
            )


async def insert_lot(
    entry: NewEntry, member_id: str, issuer_id: str, points: int, repaid: int, expires_at_us: int
) -> LotView:
    """A new lot of ``points``, ``repaid`` of them already gone to debts: its movements (the
    ``earn`` and any ``debt_repayment``) are recorded with ``skip_lot`` set to it."""
    row = await db.fetch_one(
        "INSERT INTO lots (member_id, issuer_id, entry_id, points, remaining, earned_at_us,"
        " expires_at_us) VALUES ({}, {}, {}, {}, {}, {}, {}) RETURNING id",
        member_id,
        issuer_id,
        entry.id,
        points,
        points - repaid,
        entry.posted_at_us,
        expires_at_us,
    )
    assert row is not None
    return LotView(int(row["id"]), issuer_id, points - repaid, entry.posted_at_us, expires_at_us)


async def update_member(
    member_id: str, *, available: int = 0, held: int = 0, debt: int = 0
) -> None:
    await db.execute(
        "UPDATE members SET available_points = available_points + {},"
        " held_points = held_points + {}, debt_points = debt_points + {} WHERE id = {}",
        available,
        held,
        debt,
        member_id,
    )


async def credit_member(member_id: str, points: int, repaid: int, now_us: int) -> int:
    """Add an earn (``repaid`` of it went to debts) and return the member's spendable points in
    the same round trip: the balance less lots past expiry that the nightly job has not swept."""
    row = await db.fetch_one(
        "UPDATE members SET available_points = available_points + {},"
        " debt_points = debt_points - {} WHERE id = {}"
        " RETURNING available_points - (SELECT COALESCE(SUM(remaining), 0) FROM lots"
        " WHERE member_id = {} AND remaining > 0 AND expires_at_us <= {}) AS spendable",
        points,
        repaid,
        member_id,
        member_id,
        now_us,
    )
    assert row is not None
    return int(row["spendable"])


async def load_partner(partner_id: str) -> dict[str, Any]:
    row = await db.fetch_one(
        "SELECT id, name, roles, status, currency, earn_rate, bonus_cap_points FROM partners"
        " WHERE id = {}",
        partner_id,
    )
    if row is None:
        raise NotFound(f"partner {partner_id} not found", partner_id=partner_id)
    return row


async def load_entry(entry_id: str) -> dict[str, Any] | None:
    return await db.fetch_one("SELECT * FROM entries WHERE id = {}", entry_id)


async def movements_by_lot(where: str, *args: Any) -> list[dict[str, Any]]:
    """Lot movements joined with their lots, summed per lot, for the entries ``where`` selects."""
    return await db.fetch(
        "SELECT l.id, l.issuer_id, l.remaining, l.earned_at_us, l.expires_at_us,"
        " SUM(m.lot_points) AS lot_points, SUM(m.cleared_points) AS cleared_points"
        " FROM lot_movements m JOIN lots l ON l.id = m.lot_id"
        f" WHERE {where} GROUP BY l.id, l.issuer_id, l.remaining, l.earned_at_us, l.expires_at_us",
        *args,
    )


def lot_of(row: dict[str, Any]) -> LotView:
    return LotView(
        int(row["id"]),
        row["issuer_id"],
        int(row["remaining"]),
        int(row["earned_at_us"]),
        int(row["expires_at_us"]),
    )


async def insert_hold(
    hold_id: str, member_id: str, partner_id: str, points: int, expires_at_us: int
) -> None:
    await db.execute(
        "INSERT INTO holds (id, member_id, partner_id, points, captured_points, status,"
        " expires_at_us) VALUES ({}, {}, {}, {}, 0, 'held', {})",
        hold_id,
        member_id,
        partner_id,
        points,
        expires_at_us,
    )


async def load_hold(hold_id: str) -> dict[str, Any]:
    row = await db.fetch_one("SELECT * FROM holds WHERE id = {}", hold_id)
    if row is None:
        raise NotFound(f"redemption {hold_id} not found (or not a hold)", redemption_id=hold_id)
    return row


async def close_hold(hold_id: str, status: str, captured_points: int, entry_id: str) -> None:
    # The status guard makes a second resolution a no-op even if the lock order were broken.
    await db.execute(
        "UPDATE holds SET status = {}, captured_points = {}, resolved_by = {}"
        " WHERE id = {} AND status = 'held'",
        status,
        captured_points,
        entry_id,
        hold_id,
    )


async def reversed_points(transaction_id: str) -> int:
    row = await db.fetch_one(
        "SELECT COALESCE(SUM(points), 0) AS points FROM entries"
        " WHERE original_id = {} AND kind IN ('earn_reversal', 'redemption_reversal')",
        transaction_id,
    )
    return int(row["points"]) if row else 0


async def lot_of_entry(entry_id: str) -> LotView:
    row = await db.fetch_one(
        "SELECT id, issuer_id, remaining, earned_at_us, expires_at_us FROM lots"
        " WHERE entry_id = {}",
        entry_id,
    )
    if row is None:
        raise NotFound(f"no lot for transaction {entry_id}")
    return lot_of(row)


async def insert_debt(member_id: str, creditor_id: str, entry_id: str, points: int) -> None:
    await db.execute(
        "INSERT INTO debts (member_id, creditor_id, entry_id, points, remaining)"
        " VALUES ({}, {}, {}, {}, {})",
        member_id,
        creditor_id,
        entry_id,
        points,
        points,
    )


async def open_debts(member_id: str) -> list[dict[str, Any]]:
    return await db.fetch(
        "SELECT id, creditor_id, remaining FROM debts WHERE member_id = {} AND remaining > 0"
        " ORDER BY id",
        member_id,
    )


async def reduce_debt(debt_id: int, points: int) -> None:
    await db.execute("UPDATE debts SET remaining = remaining - {} WHERE id = {}", points, debt_id)
