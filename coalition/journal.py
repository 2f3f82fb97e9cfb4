"""All SQL the ledger writes with, hand-written for the hot path.

Every function here runs inside the caller's ``write_transaction``. Locks are taken in one
order, member row first, so concurrent use cases on one member queue instead of deadlocking.
A use case reads what it decides on, then collects all its writes in one :class:`Writes`,
which PostgreSQL receives as a single statement: a round trip is the hot path's unit of cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from coalition import db
from coalition.errors import NotFound
from coalition.ledger import LotView, check_balanced

T = TypeVar("T")

MEMBER_COLUMNS = "id, status, available_points, held_points, debt_points"
PARTNER_COLUMNS = ("id", "name", "roles", "status", "currency", "earn_rate", "bonus_cap_points")


@dataclass(frozen=True, slots=True)
class Cause:
    """Who or what caused an entry: a partner's request or a job run."""

    partner_id: str | None = None
    key_id: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    job: str | None = None
    run_id: str | None = None
    # The partner's row as its signature check read it (PARTNER_COLUMNS): a request's use case
    # decides on it rather than reading it again, one round trip fewer.
    partner: dict[str, Any] | None = field(default=None, compare=False)


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


class Writes:
    """The writes of one use case, none reading another's effect. PostgreSQL gets them as one
    statement, a chain of data-modifying WITH queries (foreign keys are checked at its end, when
    every row exists); SQLite, which holds its write lock anyway, one by one."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, tuple[Any, ...]]] = []
        self.entry_id: str | None = None  # the entry these writes post, once added

    def add(self, sql: str, *args: Any) -> None:
        self._parts.append((sql, args))

    def extend(self, other: Writes) -> None:
        """Append ``other``'s writes (another use case's, on other rows: a batch)."""
        self._parts += other._parts

    @property
    def arg_count(self) -> int:
        return sum(len(args) for _, args in self._parts)

    async def run(self) -> dict[str, Any] | None:
        """Send them all; the first row the last one returns (``RETURNING``), if any."""
        if not self._parts:
            return None
        *head, (last, last_args) = self._parts
        if db.is_postgres() and head:
            ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(head))
            args = [arg for _, part_args in head for arg in part_args]
            return await db.fetch_one(f"WITH {ctes} {last}", *args, *last_args)
        for sql, args_ in head:
            await db.execute(sql, *args_)
        return await db.fetch_one(last, *last_args)


# PostgreSQL's protocol allows 32,767 parameters in one statement; a batch stays below.
MAX_STATEMENT_ARGS = 30_000


async def run_together(batch: Sequence[Writes]) -> None:
    """Several use cases' writes (on different members) in as few statements as fit."""
    statement, size = Writes(), 0
    for writes in batch:
        count = writes.arg_count
        if size + count > MAX_STATEMENT_ARGS:
            await statement.run()
            statement, size = Writes(), 0
        statement.extend(writes)
        size += count
    await statement.run()


@dataclass(frozen=True, slots=True)
class Pending(Generic[T]):
    """A use case's answer with its writes not yet sent: ``run_keyed`` adds the idempotency
    record to them, so the record costs no round trip of its own."""

    result: T
    writes: Writes


async def lock_member(member_id: str) -> dict[str, Any]:
    """The member's row, locked."""
    row = await db.fetch_one(
        f"SELECT {MEMBER_COLUMNS} FROM members WHERE id = {{}}{db.for_update()}", member_id
    )
    if row is None:
        raise NotFound(f"member {member_id} not found", member_id=member_id)
    return row


# PostgreSQL reads what a use case decides on in the same call that takes the member lock, by
# the functions of migration 2026-12-02T19: their second statement's snapshot is taken with the
# lock held, as a second round trip's would be, and the lock is held one round trip less.
# SQLite's IMMEDIATE transaction holds the database lock from its start: plain reads will do.
_SQLITE_FOR_EARN = (
    f"SELECT {MEMBER_COLUMNS}, (SELECT COALESCE(MAX(id), 0) + 1 FROM lots) AS new_lot_id,"
    " available_points - (SELECT COALESCE(SUM(remaining), 0) FROM lots WHERE member_id = {}"
    " AND remaining > 0 AND expires_at_us <= {}) AS spendable FROM members WHERE id = {}"
)


async def lock_member_for_earn(member_id: str, now_us: int) -> dict[str, Any]:
    """The member's row, locked, with ``new_lot_id`` (the id of the lot the earn writes, so it
    goes in the same chain as the movements that name it) and ``spendable``: the balance less
    lots past expiry that the nightly job has not swept."""
    if db.is_postgres():
        row = await db.fetch_one("SELECT * FROM lock_member_for_earn({}, {})", member_id, now_us)
    else:
        row = await db.fetch_one(_SQLITE_FOR_EARN, member_id, now_us, member_id)
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


async def lock_member_with_lots(
    member_id: str, now_us: int
) -> tuple[dict[str, Any], list[LotView]]:
    """:func:`lock_member`, then :func:`unexpired_lots`."""
    if not db.is_postgres():
        return await lock_member(member_id), await unexpired_lots(member_id, now_us)
    rows = await db.fetch("SELECT * FROM lock_member_lots({}, {})", member_id, now_us)
    if not rows:
        raise NotFound(f"member {member_id} not found", member_id=member_id)
    return rows[0], [_joined_lot(r) for r in rows if r["lot_id"] is not None]


def _joined_lot(row: dict[str, Any]) -> LotView:
    """The lot of a row of ``lock_member_lots`` or ``lock_members`` (the lot's id is ``lot_id``)."""
    return LotView(
        row["lot_id"], row["issuer_id"], row["remaining"], row["earned_at_us"], row["expires_at_us"]
    )


@dataclass(frozen=True, slots=True)
class Locked:
    """A member locked for a write, with what its use case decides on: for a redemption
    (``lots``) the unexpired lots in consumption order; for an earn the member row also
    carries ``new_lot_id`` and ``spendable``."""

    member: dict[str, Any]
    lots: list[LotView]


async def lock_for(member_id: str, lots: bool, now_us: int) -> Locked:
    """Lock one member for an earn (``lots`` false) or a redemption (``lots`` true)."""
    if lots:
        return Locked(*await lock_member_with_lots(member_id, now_us))
    return Locked(await lock_member_for_earn(member_id, now_us), [])


async def lock_members(wanted: dict[str, bool], now_us: int) -> dict[str, Locked]:
    """PostgreSQL: :func:`lock_for` for several members (member id -> ``lots``) in one call.
    A member that does not exist, or whose row another transaction holds, is left out."""
    members = list(wanted)
    rows = await db.fetch(
        "SELECT * FROM lock_members({}::text[], {}::boolean[], {})",
        members,
        [wanted[m] for m in members],
        now_us,
    )
    locked: dict[str, Locked] = {}
    for row in rows:
        member_id = row["id"]
        if member_id not in locked:
            locked[member_id] = Locked(row, [])
        if row["lot_id"] is not None:
            locked[member_id].lots.append(_joined_lot(row))
    return locked


def insert_entry(writes: Writes, entry: NewEntry, postings: Sequence[tuple[str, int]]) -> None:
    """The entry and its postings; refuses (as a bug) anything that does not balance."""
    postings = [(account, points) for account, points in postings if points != 0]
    check_balanced(postings)
    writes.entry_id = entry.id
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
    writes.add(entry_sql, *entry_args)
    writes.add(postings_sql, *postings_args)


def insert_movements(
    writes: Writes,
    entry: NewEntry,
    member_id: str,
    movements: Sequence[Movement],
    skip_lot: int | None = None,
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
    writes.add(
        "INSERT INTO lot_movements (entry_id, lot_id, issuer_id, member_id, payee_id, kind,"
        f" lot_points, liability_points, cleared_points, posted_at_us) VALUES {values}",
        *args,
    )
    deltas: dict[int, int] = {}
    for m in movements:
        deltas[m.lot.id] = deltas.get(m.lot.id, 0) + m.lot_points
    for lot_id, delta in sorted(deltas.items()):
        if delta and lot_id != skip_lot:
            writes.add("UPDATE lots SET remaining = remaining + {} WHERE id = {}", delta, lot_id)


def insert_lot(
    writes: Writes,
    entry: NewEntry,
    lot_id: int,
    member_id: str,
    issuer_id: str,
    points: int,
    repaid: int,
    expires_at_us: int,
) -> LotView:
    """A new lot of ``points``, ``repaid`` of them already gone to debts: its movements (the
    ``earn`` and any ``debt_repayment``) are recorded with ``skip_lot`` set to it."""
    writes.add(
        "INSERT INTO lots (id, member_id, issuer_id, entry_id, points, remaining, earned_at_us,"
        " expires_at_us) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        lot_id,
        member_id,
        issuer_id,
        entry.id,
        points,
        points - repaid,
        entry.posted_at_us,
        expires_at_us,
    )
    return LotView(lot_id, issuer_id, points - repaid, entry.posted_at_us, expires_at_us)


def update_member(
    writes: Writes, member_id: str, *, available: int = 0, held: int = 0, debt: int = 0
) -> None:
    writes.add(
        "UPDATE members SET available_points = available_points + {},"
        " held_points = held_points + {}, debt_points = debt_points + {} WHERE id = {}",
        available,
        held,
        debt,
        member_id,
    )


async def load_partner(partner_id: str) -> dict[str, Any]:
    row = await db.fetch_one(
        f"SELECT {', '.join(PARTNER_COLUMNS)} FROM partners WHERE id = {{}}", partner_id
    )
    if row is None:
        raise NotFound(f"partner {partner_id} not found", partner_id=partner_id)
    return row


# An entry to reverse: what its reversals took back so far and, for a hold, its state.
_ENTRY_TO_REVERSE = (
    "SELECT e.id, e.kind, e.partner_id, e.member_id, e.points,"
    " (SELECT COALESCE(SUM(r.points), 0) FROM entries r WHERE r.original_id = e.id"
    " AND r.kind IN ('earn_reversal', 'redemption_reversal')) AS reversed_points,"
    " h.status AS hold_status, h.captured_points AS hold_captured_points"
    " FROM entries e LEFT JOIN holds h ON h.id = e.id WHERE e.id = {}"
)


async def lock_entry(entry_id: str) -> dict[str, Any] | None:
    """An entry to reverse, read with its member locked: ``id``, ``kind``, ``partner_id``,
    ``member_id``, ``points``, ``reversed_points`` (taken back by its reversals so far) and,
    for a hold, ``hold_status`` and ``hold_captured_points``. PostgreSQL: one call of
    ``lock_entry`` (migration 2026-12-03T19). SQLite's write transaction already holds the
    database lock, so a plain read will do."""
    if db.is_postgres():
        return await db.fetch_one("SELECT * FROM lock_entry({})", entry_id)
    return await db.fetch_one(_ENTRY_TO_REVERSE, entry_id)


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


def insert_hold(
    writes: Writes, hold_id: str, member_id: str, partner_id: str, points: int, expires_at_us: int
) -> None:
    writes.add(
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


async def lock_hold(hold_id: str) -> tuple[dict[str, Any], list[tuple[LotView, int]]]:
    """A hold, read with its member locked, and per lot the points it took (negative ``lot``
    movements): what a capture, void or timeout decides on. PostgreSQL: one call of
    ``lock_hold`` (migration 2026-12-03T18). SQLite's write transaction already holds the
    database lock, so plain reads will do."""
    if not db.is_postgres():
        hold = await load_hold(hold_id)
        rows = await movements_by_lot("m.entry_id = {}", hold_id)
        return hold, [(lot_of(row), int(row["lot_points"])) for row in rows]
    rows = await db.fetch("SELECT * FROM lock_hold({})", hold_id)
    if not rows:
        raise NotFound(f"redemption {hold_id} not found (or not a hold)", redemption_id=hold_id)
    taken: list[tuple[LotView, int]] = []
    for r in rows:
        if r["lot_id"] is not None:  # the lot's expiry is lot_expires_at_us: the hold has one too
            lot = LotView(
                r["lot_id"],
                r["issuer_id"],
                r["remaining"],
                r["earned_at_us"],
                r["lot_expires_at_us"],
            )
            taken.append((lot, r["lot_points"]))
    return rows[0], taken


def close_hold(
    writes: Writes, hold_id: str, status: str, captured_points: int, entry_id: str
) -> None:
    # The status guard makes a second resolution a no-op even if the lock order were broken.
    writes.add(
        "UPDATE holds SET status = {}, captured_points = {}, resolved_by = {}"
        " WHERE id = {} AND status = 'held'",
        status,
        captured_points,
        entry_id,
        hold_id,
    )


LOT_OF_ENTRY = (  # index lots_entry
    "SELECT id, issuer_id, remaining, earned_at_us, expires_at_us FROM lots WHERE entry_id = {}"
)


async def lot_of_entry(entry_id: str) -> LotView:
    row = await db.fetch_one(LOT_OF_ENTRY, entry_id)
    if row is None:
        raise NotFound(f"no lot for transaction {entry_id}")
    return lot_of(row)


def insert_debt(
    writes: Writes, member_id: str, creditor_id: str, entry_id: str, points: int
) -> None:
    writes.add(
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


def reduce_debt(writes: Writes, debt_id: int, points: int) -> None:
    writes.add("UPDATE debts SET remaining = remaining - {} WHERE id = {}", points, debt_id)
