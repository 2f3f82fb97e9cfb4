"""The ledger's use cases. Each one is a single write transaction (via ``run_keyed``) that locks
the member row first, reads the member's lots, decides with the pure rules in ``ledger`` and
writes the entry, its postings and lot movements, and the new balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from coalition import db, journal
from coalition.batching import Decide, RunAlone, WriteBatcher
from coalition.clock import Clock, now_us, system_clock
from coalition.errors import (
    CoalitionError,
    EarnRejected,
    Forbidden,
    HoldStateError,
    InsufficientPoints,
    InvalidInput,
    LedgerInvariantError,
    NotFound,
    ReversalExceedsOriginal,
)
from coalition.idempotency import run_keyed
from coalition.journal import Cause, Movement, NewEntry, Pending
from coalition.ledger import (
    DebtView,
    Take,
    add_months_us,
    give_back,
    held_account,
    issued_account,
    member_account,
    new_id,
    points_for_amount,
    points_value_minor,
    redeemed_account,
    repay_debts,
    rfc3339,
    take_points,
    take_up_to,
)
from coalition.results import Earned, Money, Redemption, Reversal
from coalition.settings import Settings

T = TypeVar("T", bound=msgspec.Struct)

EARN_KINDS = ("earn", "bonus_earn")


class Ledger:
    """Earn, redeem, hold, capture, void, reverse. Stateless apart from settings and clock."""

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        self._last_batcher: WriteBatcher | None = None
        self._member_turns: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._turns_loop: asyncio.AbstractEventLoop | None = None

    def now_us(self) -> int:
        return now_us(self.clock)

    async def _run(
        self,
        cause: Cause,
        result_type: type[T],
        operation: Callable[[], Awaitable[T | Pending[T]]],
    ) -> tuple[T, bool]:
        return await run_keyed(cause, result_type, operation, self.now_us)

    async def _run_locked(
        self,
        cause: Cause,
        result_type: type[T],
        member_id: str,
        lots: bool,
        prepare: Callable[[], Awaitable[Decide[T]]],
    ) -> tuple[T, bool]:
        """Run a use case that locks one member: ``prepare`` checks what needs no lock and
        answers how to decide on the locked member (``journal.lock_for``'s ``lots``).

        A member's requests in this process take turns (``_turn``). On PostgreSQL a partner's
        keyed request goes into a batch (``coalition.batching``); a rejection, or a batch that
        could not take it, runs alone, as everything else does.
        """
        batcher = self._batcher()
        prepared: Decide[T] | None = None
        if batcher is not None and cause.idempotency_key is not None:
            # A rejection before the lock runs alone: run_keyed prepares again and remembers it.
            with contextlib.suppress(CoalitionError):
                prepared = await prepare()

        async def operation() -> Pending[T]:
            decide = prepared or await prepare()
            now = self.now_us()
            return await decide(await journal.lock_for(member_id, lots, now), now)

        async with self._turn(member_id):
            if prepared is not None and batcher is not None:
                try:
                    return await batcher.submit(cause, member_id, lots, prepared), False
                except RunAlone:
                    pass
            return await self._run(cause, result_type, operation)

    def _turn(self, member_id: str) -> asyncio.Lock:
        """Where a member's writes in this process wait for one another, in arrival order,
        before they take a database connection or a place in a batch: a hot member's queue
        then waits here rather than as one connection per request queued on its row."""
        loop = asyncio.get_running_loop()
        if self._turns_loop is not loop:  # a lock belongs to one loop, as the batcher does
            self._turns_loop, self._member_turns = loop, weakref.WeakValueDictionary()
        turn = self._member_turns.get(member_id)
        if turn is None:
            turn = self._member_turns[member_id] = asyncio.Lock()
        return turn

    @property
    def write_batcher(self) -> WriteBatcher | None:
        """The batcher this ledger last used (its counters), if any."""
        return self._last_batcher

    def _batcher(self) -> WriteBatcher | None:
        """This event loop's batcher; None where writes are not batched (SQLite, or off)."""
        if self.settings.write_batches < 1 or not db.is_postgres():
            return None
        loop = asyncio.get_running_loop()
        if self._last_batcher is None or self._last_batcher.loop is not loop:
            self._last_batcher = WriteBatcher(
                self.now_us, self.settings.write_batches, self.settings.write_batch_max_requests
            )
        return self._last_batcher

    # -- earn ---------------------------------------------------------------------------------

    async def earn(
        self,
        cause: Cause,
        *,
        member_id: str,
        order_ref: str,
        amount_minor: int | None = None,
        currency: str | None = None,
        points: int | None = None,
        reason: str | None = None,
        occurred_at_us: int | None = None,
    ) -> tuple[Earned, bool]:
        """Points from a purchase amount (partner's earn rate) or bonus points within the cap."""

        async def prepare() -> Decide[Earned]:
            partner = await _partner_may(cause, "earn")
            if amount_minor is not None:
                if currency != partner["currency"]:
                    raise EarnRejected(
                        f"amount in {currency}, but partner {partner['id']} earns in"
                        f" {partner['currency']}",
                        currency=currency,
                    )
                earned = points_for_amount(
                    amount_minor, partner["currency"], Decimal(partner["earn_rate"])
                )
                kind = "earn"
            else:
                assert points is not None
                if points > partner["bonus_cap_points"]:
                    raise EarnRejected(
                        f"bonus of {points} points is above the cap of"
                        f" {partner['bonus_cap_points']}",
                        cap_points=partner["bonus_cap_points"],
                    )
                earned, kind = points, "bonus_earn"
            if earned <= 0:
                raise EarnRejected("this earn is worth zero points", points=earned)
            return functools.partial(
                self._post_earn,
                cause,
                partner["id"],
                member_id,
                kind,
                earned,
                order_ref,
                reason,
                amount_minor,
                currency,
                occurred_at_us,
            )

        return await self._run_locked(cause, Earned, member_id, False, prepare)

    async def _post_earn(
        self,
        cause: Cause,
        issuer_id: str,
        member_id: str,
        kind: str,
        points: int,
        order_ref: str,
        reason: str | None,
        amount_minor: int | None,
        currency: str | None,
        occurred_at_us: int | None,
        locked: journal.Locked,
        now: int,
    ) -> Pending[Earned]:
        member = locked.member
        entry = NewEntry(
            new_id("txn"),
            kind,
            cause,
            now,
            points,
            member_id=member_id,
            amount_minor=amount_minor,
            currency=currency,
            order_ref=order_ref,
            reason=reason,
            occurred_at_us=occurred_at_us,
        )
        expires_at = add_months_us(now, self.settings.lot_validity_months)
        # Later earns pay the debt first; those points count as redeemed at the creditor.
        repayments = (
            repay_debts(points, await _open_debts(member_id)) if member["debt_points"] > 0 else []
        )
        repaid = sum(n for _, n in repayments)
        writes = journal.Writes()
        journal.insert_entry(
            writes,
            entry,
            [(issued_account(issuer_id), -points), (member_account(member_id), points)],
        )
        # The new lot is written with what its movements leave in it: one UPDATE fewer.
        lot = journal.insert_lot(
            writes,
            entry,
            int(member["new_lot_id"]),
            member_id,
            issuer_id,
            points,
            repaid,
            expires_at,
        )
        movements = [Movement(lot, "earn", points, points)]
        for debt, n in repayments:
            movements.append(Movement(lot, "debt_repayment", -n, -n, n, debt.creditor_id))
            journal.reduce_debt(writes, debt.id, n)
        journal.insert_movements(writes, entry, member_id, movements, skip_lot=lot.id)
        # available_points is lots less debt: the lot adds points - repaid, the repaid debt goes.
        journal.update_member(writes, member_id, available=points, debt=-repaid)
        available = int(member["spendable"]) + points  # the new lot expires in the future
        earned = Earned(entry.id, points, available, rfc3339(expires_at), repaid, rfc3339(now))
        return Pending(earned, writes)

    # -- redeem, hold, capture, void ----------------------------------------------------------

    async def redeem(
        self,
        cause: Cause,
        *,
        member_id: str,
        order_ref: str,
        points: int,
        hold: bool = False,
        hold_ttl_seconds: int | None = None,
        occurred_at_us: int | None = None,
    ) -> tuple[Redemption, bool]:
        """Spend points directly (``hold=False``) or authorise them for a later capture."""
        ttl = hold_ttl_seconds or self.settings.hold_ttl_default_seconds
        if ttl > self.settings.hold_ttl_max_seconds:
            raise InvalidInput(
                f"hold_ttl_seconds above the maximum of {self.settings.hold_ttl_max_seconds}"
            )

        async def prepare() -> Decide[Redemption]:
            partner = await _partner_may(cause, "redeem")
            return functools.partial(decide, partner)

        async def decide(
            partner: dict[str, Any], locked: journal.Locked, now: int
        ) -> Pending[Redemption]:
            member, lots = locked.member, locked.lots
            available = sum(lot.remaining for lot in lots) - int(member["debt_points"])
            if available < points:
                raise InsufficientPoints(
                    f"{points} points requested, {max(available, 0)} available",
                    available_points=max(available, 0),
                )
            takes = take_points(lots, points)
            kind = "hold" if hold else "redeem"
            entry = NewEntry(
                new_id("txn"),
                kind,
                cause,
                now,
                points,
                member_id=member_id,
                order_ref=order_ref,
                occurred_at_us=occurred_at_us,
            )
            sink = held_account(member_id) if hold else redeemed_account(partner["id"])
            writes = journal.Writes()
            journal.insert_entry(
                writes, entry, [(member_account(member_id), -points), (sink, points)]
            )
            if hold:
                movements = [Movement(t.lot, "hold", -t.points, 0, 0, partner["id"]) for t in takes]
            else:
                movements = [
                    Movement(t.lot, "redeem", -t.points, -t.points, t.points, partner["id"])
                    for t in takes
                ]
            journal.insert_movements(writes, entry, member_id, movements)
            journal.update_member(writes, member_id, available=-points, held=points if hold else 0)
            expires_at = now + ttl * 1_000_000 if hold else None
            if expires_at is not None:
                journal.insert_hold(writes, entry.id, member_id, partner["id"], points, expires_at)
            redemption = Redemption(
                entry.id,
                "held" if hold else "captured",
                points,
                self.value(points),
                rfc3339(expires_at) if expires_at else None,
                rfc3339(now),
            )
            return Pending(redemption, writes)

        return await self._run_locked(cause, Redemption, member_id, True, prepare)

    async def capture(
        self, cause: Cause, redemption_id: str, points: int | None = None
    ) -> tuple[Redemption, bool]:
        """Make a hold final, fully or in part; the uncaptured rest goes back to its lots."""

        async def operation() -> Pending[Redemption]:
            await _partner_may(cause, "redeem")
            return await self.resolve_hold(cause, redemption_id, "capture", points)

        return await self._run(cause, Redemption, operation)

    async def void(self, cause: Cause, redemption_id: str) -> tuple[Redemption, bool]:
        async def operation() -> Pending[Redemption]:
            await _partner_may(cause, "redeem")
            return await self.resolve_hold(cause, redemption_id, "void", None)

        return await self._run(cause, Redemption, operation)

    async def resolve_hold(
        self, cause: Cause, hold_id: str, action: str, capture_points: int | None
    ) -> Pending[Redemption]:
        """Capture, void or time out a hold (``action``: capture | void | hold_expiry).

        Runs inside the caller's transaction, which sends the writes it answers with. Exactly
        one resolution per hold: the member row lock serialises racing resolutions and the
        unique ``resolves_hold_id`` backs it.
        """
        now = self.now_us()
        hold, taken = await journal.lock_hold(hold_id)  # read with the member locked
        if cause.partner_id is not None and hold["partner_id"] != cause.partner_id:
            raise Forbidden("this redemption belongs to another partner")
        if hold["status"] != "held":
            raise HoldStateError(f"hold is already {hold['status']}", status=hold["status"])
        if action != "hold_expiry" and hold["expires_at_us"] <= now:
            raise HoldStateError("hold has expired", status="expired")
        held = int(hold["points"])
        captured = 0
        if action == "capture":
            captured = held if capture_points is None else capture_points
            if captured < 1:
                raise InvalidInput("a capture needs at least 1 point")
            if captured > held:
                raise HoldStateError(
                    f"capture of {captured} is above the hold of {held}",
                    status="held",
                    hold_points=held,
                )
        member_id, payee = hold["member_id"], hold["partner_id"]
        given = [Take(lot, -points) for lot, points in taken]
        released = give_back(given, held - captured)
        released_by_lot = {t.lot.id: t.points for t in released}
        movements = [Movement(t.lot, "release", t.points, 0) for t in released]
        for t in given:
            n = t.points - released_by_lot.get(t.lot.id, 0)
            if n:
                movements.append(Movement(t.lot, "capture", 0, -n, n, payee))
        entry = NewEntry(
            new_id("txn"),
            action,
            cause,
            now,
            captured if captured else held,
            member_id=member_id,
            partner_id=payee,
            original_id=hold_id,
            resolves_hold_id=hold_id,
        )
        writes = journal.Writes()
        journal.insert_entry(
            writes,
            entry,
            [
                (held_account(member_id), -held),
                (redeemed_account(payee), captured),
                (member_account(member_id), held - captured),
            ],
        )
        journal.insert_movements(writes, entry, member_id, movements)
        journal.update_member(writes, member_id, available=held - captured, held=-held)
        status = {"capture": "captured", "void": "voided", "hold_expiry": "expired"}[action]
        journal.close_hold(writes, hold_id, status, captured, entry.id)
        redemption = Redemption(
            hold_id,
            status,
            captured if action == "capture" else held,
            self.value(captured if action == "capture" else held),
            None,
            rfc3339(now),
        )
        return Pending(redemption, writes)

    # -- reversals ----------------------------------------------------------------------------

    async def reverse(
        self,
        cause: Cause,
        transaction_id: str,
        *,
        points: int | None = None,
        reason: str,
        order_ref: str | None = None,
    ) -> tuple[Reversal, bool]:
        """Reverse an earn or a captured redemption, fully or in part, up to the original."""

        async def operation() -> Pending[Reversal]:
            original = await journal.lock_entry(transaction_id)  # read with the member locked
            if original is None:
                raise NotFound(f"transaction {transaction_id} not found")
            if original["partner_id"] != cause.partner_id:
                raise Forbidden("this transaction belongs to another partner")
            await _partner_may(cause, "earn" if original["kind"] in EARN_KINDS else "redeem")
            member_id = original["member_id"]
            reversible = _reversible_points(original)
            wanted = reversible if points is None else points
            if wanted <= 0 or wanted > reversible:
                raise ReversalExceedsOriginal(
                    f"{wanted} points asked, {reversible} left to reverse",
                    reversible_points=reversible,
                )
            entry_kind = (
                "earn_reversal" if original["kind"] in EARN_KINDS else "redemption_reversal"
            )
            entry = NewEntry(
                new_id("txn"),
                entry_kind,
                cause,
                self.now_us(),
                wanted,
                member_id=member_id,
                original_id=transaction_id,
                reason=reason,
                order_ref=order_ref,
            )
            writes = journal.Writes()
            if entry_kind == "earn_reversal":
                debt = await self._reverse_earn(writes, entry, original, wanted)
            else:
                debt = 0
                await self._reverse_redemption(writes, entry, original, wanted)
            reversal = Reversal(entry.id, transaction_id, wanted, debt, rfc3339(entry.posted_at_us))
            return Pending(reversal, writes)

        return await self._run(cause, Reversal, operation)

    async def _reverse_earn(
        self, writes: journal.Writes, entry: NewEntry, original: dict[str, Any], points: int
    ) -> int:
        """Take from the original lot, then the member's other lots (redeemed at the reversing
        partner), and turn what is still missing into debt owed to that partner."""
        member_id, partner_id = original["member_id"], original["partner_id"]
        lot = await journal.lot_of_entry(original["id"])
        movements: list[Movement] = []
        from_original = min(points, lot.remaining)
        if from_original:
            movements.append(Movement(lot, "earn_reversal", -from_original, -from_original))
        rest = points - from_original
        others = (
            [
                o
                for o in await journal.unexpired_lots(member_id, entry.posted_at_us)
                if o.id != lot.id
            ]
            if rest
            else []
        )
        for t in take_up_to(others, rest):
            movements.append(
                Movement(t.lot, "clawback", -t.points, -t.points, t.points, partner_id)
            )
            rest -= t.points
        journal.insert_entry(
            writes,
            entry,
            [(member_account(member_id), -points), (issued_account(partner_id), points)],
        )
        journal.insert_movements(writes, entry, member_id, movements)
        if rest:
            journal.insert_debt(writes, member_id, partner_id, entry.id, rest)
        journal.update_member(writes, member_id, available=-points, debt=rest)
        return rest

    async def _reverse_redemption(
        self, writes: journal.Writes, entry: NewEntry, original: dict[str, Any], points: int
    ) -> None:
        """Give the points back to the lots the redemption took them from."""
        member_id, payee = original["member_id"], original["partner_id"]
        # Per lot, the cleared points of the redemption (or its capture) net of earlier reversals.
        rows = await journal.movements_by_lot(
            "m.entry_id IN (SELECT id FROM entries WHERE id = {} OR original_id = {})"
            " AND m.cleared_points <> 0",
            original["id"],
            original["id"],
        )
        given = [Take(journal.lot_of(row), int(row["cleared_points"])) for row in rows]
        back = give_back([t for t in given if t.points > 0], points)
        movements = [
            Movement(t.lot, "redemption_reversal", t.points, t.points, -t.points, payee)
            for t in back
        ]
        journal.insert_entry(
            writes,
            entry,
            [(redeemed_account(payee), -points), (member_account(member_id), points)],
        )
        journal.insert_movements(writes, entry, member_id, movements)
        journal.update_member(writes, member_id, available=points)

    def value(self, points: int) -> Money:
        currency = self.settings.settlement_currency
        return Money(points_value_minor(points, self.settings.point_value, currency), currency)


async def _partner_may(cause: Cause, role: str) -> dict[str, Any]:
    if cause.partner_id is None:
        raise LedgerInvariantError("a partner request needs a partner")
    partner = cause.partner or await journal.load_partner(cause.partner_id)
    if partner["status"] != "active":
        raise Forbidden(f"partner {partner['id']} is suspended", partner_id=partner["id"])
    if role not in partner["roles"].split(","):
        raise Forbidden(f"partner {partner['id']} does not have the {role} role", role=role)
    return partner


def _reversible_points(original: dict[str, Any]) -> int:
    """What is left to reverse of ``original`` (a row of ``journal.lock_entry``)."""
    kind = original["kind"]
    if kind in EARN_KINDS or kind == "redeem":
        total = int(original["points"])
    elif kind == "hold":
        status = original["hold_status"]
        if status != "captured":
            raise HoldStateError(
                f"only a captured hold can be reversed; it is {status}", status=status
            )
        total = int(original["hold_captured_points"])
    else:
        raise InvalidInput(f"a {kind} transaction cannot be reversed")
    return total - int(original["reversed_points"])


async def _open_debts(member_id: str) -> list[DebtView]:
    rows = await journal.open_debts(member_id)
    return [DebtView(int(r["id"]), r["creditor_id"], int(r["remaining"])) for r in rows]
