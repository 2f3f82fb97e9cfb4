"""Concurrent use cases on one member, on the real database: no lost update, no stale read, no
double resolution, and on SQLite no ``database is locked`` reaching a caller."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import pytest

from coalition import db, journal, queries
from coalition.errors import CoalitionError
from coalition.ledger import to_us
from tests.conftest import DATABASE_URL
from tests.databases import BACKEND
from tests.support import (
    Coalition,
    finish,
    sessions_waiting_on_a_lock,
    until_a_session_waits_on_a_lock,
)

T = TypeVar("T")


async def outcomes(calls: Sequence[Awaitable[Any]]) -> tuple[list[Any], Counter[str]]:
    """Run the calls at once; count successes and refusals by slug. Anything else fails."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    counts: Counter[str] = Counter()
    successes = []
    for result in results:
        if isinstance(result, CoalitionError):
            counts[result.slug] += 1
        elif isinstance(result, BaseException):
            raise result  # a crash, a deadlock or "database is locked": never acceptable
        else:
            counts["ok"] += 1
            successes.append(result)
    return successes, counts


async def test_200_concurrent_redemptions_of_10_against_1000(world: Coalition) -> None:
    member = await world.member(1000)
    _, counts = await outcomes(
        [
            world.ledger.redeem(
                world.cause(world.fashion, f"r-{i}"), member_id=member, order_ref=f"o{i}", points=10
            )
            for i in range(200)
        ]
    )
    assert counts == Counter({"ok": 100, "insufficient-points": 100})
    balance = await queries.balance(member, to_us(world.clock()))
    assert balance.available_points == 0


async def test_50_concurrent_identical_requests_make_one_entry(world: Coalition) -> None:
    member = await world.member(1000)
    cause = world.cause(world.fuel, "one-key", "same-request")
    successes, counts = await outcomes(
        [world.ledger.redeem(cause, member_id=member, order_ref="o", points=30) for _ in range(50)]
    )
    assert counts == Counter({"ok": 50})
    assert len({result.redemption_id for result, _ in successes}) == 1
    assert sum(1 for _, replayed in successes if not replayed) == 1
    rows = await db.fetch(
        "SELECT id FROM entries WHERE partner_id = {} AND idempotency_key = 'one-key'", world.fuel
    )
    assert len(rows) == 1
    balance = await queries.balance(member, to_us(world.clock()))
    assert balance.available_points == 970


async def test_6_concurrent_holds_of_1000_on_5000(world: Coalition) -> None:
    member = await world.member(5000)
    _, counts = await outcomes(
        [
            world.ledger.redeem(
                world.cause(world.cafe, f"h-{i}"),
                member_id=member,
                order_ref="h",
                points=1000,
                hold=True,
            )
            for i in range(6)
        ]
    )
    assert counts == Counter({"ok": 5, "insufficient-points": 1})
    balance = await queries.balance(member, to_us(world.clock()))
    assert (balance.available_points, balance.held_points) == (0, 5000)


async def test_20_concurrent_full_reversals_of_one_earn(world: Coalition) -> None:
    member = await world.member()
    earn, _ = await world.ledger.earn(
        world.cause(world.cafe), member_id=member, order_ref="e", points=500, reason="r"
    )
    _, counts = await outcomes(
        [
            world.ledger.reverse(
                world.cause(world.cafe, f"v-{i}"), earn.transaction_id, reason="returned"
            )
            for i in range(20)
        ]
    )
    assert counts == Counter({"ok": 1, "reversal-exceeds-original": 19})
    _, counts = await outcomes(
        [
            world.ledger.reverse(
                world.cause(world.fashion, f"w-{i}"),
                earn.transaction_id,
                points=1,
                reason="not mine",
            )
            for i in range(3)
        ]
    )
    assert counts == Counter({"forbidden": 3})


async def test_racing_captures_and_voids_resolve_a_hold_once(world: Coalition) -> None:
    member = await world.member(300)
    hold, _ = await world.ledger.redeem(
        world.cause(world.fuel), member_id=member, order_ref="h", points=100, hold=True
    )
    calls = [
        world.ledger.capture(world.cause(world.fuel, f"c-{i}"), hold.redemption_id)
        for i in range(10)
    ]
    calls += [
        world.ledger.void(world.cause(world.fuel, f"v-{i}"), hold.redemption_id) for i in range(10)
    ]
    _, counts = await outcomes(calls)
    assert counts["ok"] == 1 and counts["hold-state"] == 19
    rows = await db.fetch("SELECT id FROM entries WHERE resolves_hold_id = {}", hold.redemption_id)
    assert len(rows) == 1


Statement = tuple[str, tuple[Any, ...]]


async def behind_a_writer(
    member: str, writes: Sequence[Statement], read: Callable[[], Awaitable[T]]
) -> T:
    """``read`` in a write transaction, started while another connection holds ``member``'s
    row lock and has made ``writes``; that connection commits once ``read`` waits for the
    lock. The one-call lock-and-read functions must return what it committed."""
    holder = await asyncpg.connect(DATABASE_URL)

    async def in_a_transaction() -> T:
        async with db.write_transaction():
            return await read()

    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", member)
            for sql, args in writes:
                await holder.execute(sql, *args)
            waiter = asyncio.create_task(in_a_transaction())
            await until_a_session_waits_on_a_lock(DATABASE_URL)
        return await waiter
    finally:
        await holder.close()


async def put_back(*writes: Statement) -> None:
    """Undo a test's direct writes, so the auditor sees a consistent ledger."""
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        for sql, args in writes:
            await connection.execute(sql, *args)
    finally:
        await connection.close()


SPEND = "UPDATE lots SET remaining = remaining + $2 WHERE member_id = $1"
SET_HOLD_STATUS = "UPDATE holds SET status = $2 WHERE id = $1"


@pytest.mark.skipif(BACKEND != "postgres", reason="the one-call lock and read is PostgreSQL's")
async def test_lots_read_with_the_lock_include_the_last_holders_writes(world: Coalition) -> None:
    """The member lock and the member's lots come in one call (``lock_member_lots``); the lots
    must still be read after the lock is granted, or a redemption queued behind another would
    decide on points the other one has just spent."""
    member = await world.member(1000)
    try:
        row, lots = await behind_a_writer(
            member,
            [(SPEND, (member, -400))],
            lambda: journal.lock_member_with_lots(member, to_us(world.clock())),
        )
        assert row["id"] == member
        assert [lot.remaining for lot in lots] == [600]
    finally:
        await put_back((SPEND, (member, 400)))


@pytest.mark.skipif(BACKEND != "postgres", reason="the one-call lock and read is PostgreSQL's")
async def test_a_hold_read_with_the_lock_includes_the_last_holders_writes(
    world: Coalition,
) -> None:
    """A capture, void or timeout locks the hold's member and reads the hold and its lots in
    one call (``lock_hold``); they must be read after the lock is granted, or a capture queued
    behind a void would decide on a hold that is no longer held."""
    member = await world.member(1000)
    hold, _ = await world.ledger.redeem(
        world.cause(world.fashion), member_id=member, order_ref="h", points=300, hold=True
    )
    hold_id = hold.redemption_id
    try:
        row, taken = await behind_a_writer(
            member,
            [(SET_HOLD_STATUS, (hold_id, "voided")), (SPEND, (member, -1))],
            lambda: journal.lock_hold(hold_id),
        )
        assert (row["id"], row["member_id"], row["status"]) == (hold_id, member, "voided")
        assert [(lot.remaining, points) for lot, points in taken] == [(699, -300)]
    finally:
        await put_back((SET_HOLD_STATUS, (hold_id, "held")), (SPEND, (member, 1)))


@pytest.mark.skipif(BACKEND != "postgres", reason="the one-call lock and read is PostgreSQL's")
async def test_a_reversal_reads_with_the_lock_the_last_holders_writes(world: Coalition) -> None:
    """A reversal locks the member and reads the original, what was reversed of it and its
    hold's state in one call (``lock_entry``); they must be read after the lock is granted."""
    member = await world.member(1000)
    hold, _ = await world.ledger.redeem(
        world.cause(world.fashion), member_id=member, order_ref="h", points=300, hold=True
    )
    hold_id = hold.redemption_id
    await world.ledger.capture(world.cause(world.fashion), hold_id, 200)
    try:
        row = await behind_a_writer(
            member, [(SET_HOLD_STATUS, (hold_id, "voided"))], lambda: journal.lock_entry(hold_id)
        )
        assert row is not None
        assert (row["kind"], row["member_id"], row["hold_status"]) == ("hold", member, "voided")
        assert (row["hold_captured_points"], row["reversed_points"]) == (200, 0)
    finally:
        await put_back((SET_HOLD_STATUS, (hold_id, "captured")))


@pytest.mark.skipif(BACKEND != "postgres", reason="row locks and the pool are PostgreSQL's")
async def test_a_hot_members_waiting_writes_hold_one_connection(world: Coalition) -> None:
    """A member's writes take turns in the process before they take a connection: of 25 queued
    on a row locked elsewhere one waits in the database, the pool (20) serves other members,
    and they run in arrival order."""
    busy, free = await world.member(), await world.member()
    holder = await asyncpg.connect(DATABASE_URL)
    queued: list[asyncio.Task[Any]] = []
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", busy)
            queued += [
                asyncio.create_task(
                    world.ledger.earn(
                        world.cause(world.cafe),
                        member_id=busy,
                        order_ref=f"o{i}",
                        points=1,
                        reason="bonus",
                    )
                )
                for i in range(25)
            ]
            await until_a_session_waits_on_a_lock(DATABASE_URL)
            (earned, _) = await asyncio.wait_for(  # a pool full of waiters never serves it
                world.ledger.earn(
                    world.cause(world.cafe),
                    member_id=free,
                    order_ref="o",
                    points=3,
                    reason="bonus",
                ),
                timeout=10,
            )
            assert earned.available_points == 3
            assert await sessions_waiting_on_a_lock(DATABASE_URL) == 1
            assert not any(task.done() for task in queued)
        results = await asyncio.gather(*queued)
        assert [e.available_points for e, _ in results] == list(range(1, 26))
    finally:
        await finish(queued)
        await holder.close()
