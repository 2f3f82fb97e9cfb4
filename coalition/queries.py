"""Read side: balances, a member's history with one partner, one transaction with its reversals."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from coalition import db
from coalition.errors import Forbidden, InvalidInput, NotFound
from coalition.ledger import rfc3339
from coalition.tables import Entry, Member

EXPIRING_LOTS_SHOWN = 5
HISTORY_LIMIT_MAX = 100


class ExpiringPoints(msgspec.Struct, frozen=True):
    points: int
    expires_at: str


class Balance(msgspec.Struct, frozen=True):
    member_id: str
    card_number: str | None
    status: str
    available_points: int
    held_points: int
    debt_points: int
    expiring: list[ExpiringPoints]
    tier: str | None = None


class Transaction(msgspec.Struct, frozen=True):
    transaction_id: str
    type: str
    member_id: str | None
    points: int
    order_ref: str | None
    reason: str | None
    original_id: str | None
    amount: dict[str, Any] | None
    posted_at: str
    occurred_at: str | None


class History(msgspec.Struct, frozen=True):
    transactions: list[Transaction]
    next_cursor: str | None


class TransactionDetail(msgspec.Struct, frozen=True):
    transaction: Transaction
    reversals: list[Transaction]
    hold_status: str | None


# The member and their unexpired lots with points left, in one read: one snapshot (two reads
# could straddle a write, mixing a member row and lots from either side of it), one round trip.
# Lots past expiry that the nightly job has not swept yet are no longer available.
_BALANCE = (
    "SELECT m.card_number, m.status, m.held_points, m.debt_points, l.remaining, l.expires_at_us"
    " FROM members m LEFT JOIN lots l ON l.member_id = m.id AND l.remaining > 0"
    " AND l.expires_at_us > {} WHERE m.id = {} ORDER BY l.expires_at_us"
)


async def balance(member_id: str, now_us: int) -> Balance:
    rows = await db.fetch(_BALANCE, now_us, member_id)
    if not rows:
        raise NotFound(f"member {member_id} not found", member_id=member_id)
    member = rows[0]
    unexpired = [row for row in rows if row["remaining"] is not None]
    available = sum(lot["remaining"] for lot in unexpired) - member["debt_points"]
    expiring: dict[int, int] = {}
    for lot in unexpired:
        if len(expiring) == EXPIRING_LOTS_SHOWN and lot["expires_at_us"] not in expiring:
            break
        expiring[lot["expires_at_us"]] = expiring.get(lot["expires_at_us"], 0) + lot["remaining"]
    return Balance(
        member_id=member_id,
        card_number=member["card_number"],
        status=member["status"],
        available_points=available,
        held_points=member["held_points"],
        debt_points=member["debt_points"],
        expiring=[ExpiringPoints(points, rfc3339(at)) for at, points in expiring.items()],
    )


def transaction_of(row: dict[str, Any]) -> Transaction:
    amount = None
    if row["amount_minor"] is not None:
        amount = {"amount_minor": row["amount_minor"], "currency": row["currency"]}
    return Transaction(
        transaction_id=row["id"],
        type=row["kind"],
        member_id=row["member_id"],
        points=row["points"],
        order_ref=row["order_ref"],
        reason=row["reason"],
        original_id=row["original_id"],
        amount=amount,
        posted_at=rfc3339(row["posted_at_us"]),
        occurred_at=rfc3339(row["occurred_at_us"]) if row["occurred_at_us"] else None,
    )


def _encode_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{row['posted_at_us']}:{row['id']}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        posted, entry_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        return int(posted), entry_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API returned") from None


async def history(
    member_id: str, partner_id: str, *, cursor: str | None = None, limit: int = 50
) -> History:
    """The member's transactions with ``partner_id`` only, newest first."""
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise InvalidInput(f"limit must be within 1..{HISTORY_LIMIT_MAX}")
    if not await Member.exists().where(Member.id == member_id):
        raise NotFound(f"member {member_id} not found", member_id=member_id)
    where = "member_id = {} AND partner_id = {}"
    args: list[Any] = [member_id, partner_id]
    if cursor:
        posted, entry_id = _decode_cursor(cursor)
        where += " AND (posted_at_us < {} OR (posted_at_us = {} AND id < {}))"
        args += [posted, posted, entry_id]
    rows = await db.fetch(
        f"SELECT * FROM entries WHERE {where} ORDER BY posted_at_us DESC, id DESC LIMIT {{}}",
        *args,
        limit + 1,
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    return History([transaction_of(r) for r in page], next_cursor)


async def transaction(partner_id: str, transaction_id: str) -> TransactionDetail:
    row = await Entry.select().where(Entry.id == transaction_id).first()
    if row is None:
        raise NotFound(f"transaction {transaction_id} not found")
    if row["partner_id"] != partner_id:
        raise Forbidden("this transaction belongs to another partner")
    reversals = await (
        Entry.select()
        .where(
            (Entry.original_id == transaction_id)
            & Entry.kind.is_in(["earn_reversal", "redemption_reversal"])
        )
        .order_by(Entry.posted_at_us)
    )
    hold = await db.fetch_one("SELECT status FROM holds WHERE id = {}", transaction_id)
    return TransactionDetail(
        transaction=transaction_of(row),
        reversals=[transaction_of(r) for r in reversals],
        hold_status=hold["status"] if hold else None,
    )
