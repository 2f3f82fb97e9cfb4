"""The ledger's use cases on a real database, rule by rule from the money rules spec."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from coalition import db, queries
from coalition.errors import (
    EarnRejected,
    Forbidden,
    HoldStateError,
    InsufficientPoints,
    NotFound,
    ReversalExceedsOriginal,
)
from coalition.jobs import expire_lots, sweep_expired_holds
from coalition.ledger import to_us
from tests.support import Coalition


async def available(world: Coalition, member_id: str) -> int:
    return (await queries.balance(member_id, to_us(world.clock()))).available_points


async def lots_of(member_id: str) -> list[tuple[str, int, int]]:
    rows = await db.fetch(
        "SELECT issuer_id, points, remaining FROM lots WHERE member_id = {} ORDER BY id", member_id
    )
    return [(r["issuer_id"], r["points"], r["remaining"]) for r in rows]


async def cleared(entry_id: str) -> list[tuple[str, str | None, int]]:
    rows = await db.fetch(
        "SELECT issuer_id, payee_id, cleared_points FROM lot_movements"
        " WHERE entry_id = {} AND cleared_points <> 0 ORDER BY id",
        entry_id,
    )
    return [(r["issuer_id"], r["payee_id"], r["cleared_points"]) for r in rows]


async def test_earn_from_amount_floors_at_the_partner_rate(world: Coalition) -> None:
    member = await world.member()
    earned, replayed = await world.ledger.earn(
        world.cause(world.cafe), member_id=member, order_ref="o1", amount_minor=2599, currency="EUR"
    )
    assert (earned.points, earned.available_points, replayed) == (25, 25, False)
    fashion, _ = await world.ledger.earn(
        world.cause(world.fashion),
        member_id=member,
        order_ref="o2",
        amount_minor=1050,
        currency="EUR",
    )
    assert fashion.points == 21  # 10.50 EUR at 2 points per EUR
    assert await available(world, member) == 46


async def test_earn_refusals(world: Coalition) -> None:
    member = await world.member()
    cause = world.cause(world.cafe)
    with pytest.raises(EarnRejected, match="USD"):
        await world.ledger.earn(
            cause, member_id=member, order_ref="o", amount_minor=500, currency="USD"
        )
    with pytest.raises(EarnRejected, match="zero"):
        await world.ledger.earn(
            cause, member_id=member, order_ref="o", amount_minor=99, currency="EUR"
        )
    with pytest.raises(EarnRejected, match="cap"):
        await world.ledger.earn(cause, member_id=member, order_ref="o", points=100_001, reason="r")
    with pytest.raises(NotFound):
        await world.ledger.earn(cause, member_id="mem_nobody", order_ref="o", points=5, reason="r")
    assert await lots_of(member) == []


async def test_roles_and_suspension_are_enforced(world: Coalition) -> None:
    from coalition import program

    member = await world.member(100)
    await program.set_partner_status(world.fuel, "suspended")
    with pytest.raises(Forbidden, match="suspended"):
        await world.ledger.earn(
            world.cause(world.fuel), member_id=member, order_ref="o", points=5, reason="r"
        )
    await program.set_partner_status(world.fuel, "active")
    await db.execute("UPDATE partners SET roles = 'earn' WHERE id = {}", world.fuel)
    with pytest.raises(Forbidden, match="redeem role"):
        await world.ledger.redeem(
            world.cause(world.fuel), member_id=member, order_ref="o", points=5
        )
    assert await available(world, member) == 100


async def test_redemption_takes_earliest_expiring_lots_first(world: Coalition) -> None:
    member = await world.member()
    await world.ledger.earn(
        world.cause(world.cafe), member_id=member, order_ref="a", points=100, reason="r"
    )
    world.clock.advance(days=1)
    await world.ledger.earn(
        world.cause(world.fashion), member_id=member, order_ref="b", points=100, reason="r"
    )
    redemption, _ = await world.ledger.redeem(
        world.cause(world.fuel), member_id=member, order_ref="c", points=150
    )
    assert redemption.status == "captured"
    assert redemption.value.amount_minor == 150  # 150 points at 0.01 EUR
    assert await lots_of(member) == [(world.cafe, 100, 0), (world.fashion, 100, 50)]
    assert await cleared(redemption.redemption_id) == [
        (world.cafe, world.fuel, 100),
        (world.fashion, world.fuel, 50),
    ]
    with pytest.raises(InsufficientPoints):
        await world.ledger.redeem(
            world.cause(world.fuel), member_id=member, order_ref="d", points=51
        )


async def test_partial_capture_returns_the_rest_to_latest_expiring_lots(world: Coalition) -> None:
    member = await world.member()
    await world.ledger.earn(
        world.cause(world.cafe), member_id=member, order_ref="a", points=60, reason="r"
    )
    world.clock.advance(days=1)
    await world.ledger.earn(
        world.cause(world.fashion), member_id=member, order_ref="b", points=60, reason="r"
    )
    hold, _ = await world.ledger.redeem(
        world.cause(world.fuel), member_id=member, order_ref="c", points=100, hold=True
    )
    assert hold.status == "held" and hold.hold_expires_at is not None
    balance = await queries.balance(member, to_us(world.clock()))
    assert (balance.available_points, balance.held_points) == (20, 100)
    captured, _ = await world.ledger.capture(world.cause(world.fuel), hold.redemption_id, 70)
    assert (captured.status, captured.points) == ("captured", 70)
    # 60 from cafe + 40 from fashion were held; 30 go back to fashion (latest-expiring) first.
    assert await lots_of(member) == [(world.cafe, 60, 0), (world.fashion, 60, 50)]
    balance = await queries.balance(member, to_us(world.clock()))
    assert (balance.available_points, balance.held_points) == (50, 0)
    with pytest.raises(HoldStateError):
        await world.ledger.void(world.cause(world.fuel), hold.redemption_id)


async def test_capture_above_hold_and_after_deadline_are_refused(world: Coalition) -> None:
    member = await world.member(200)
    cause = world.cause(world.fashion)
    hold, _ = await world.ledger.redeem(
        cause, member_id=member, order_ref="h", points=40, hold=True, hold_ttl_seconds=60
    )
    with pytest.raises(HoldStateError, match="above"):
        await world.ledger.capture(cause, hold.redemption_id, 50)
    world.clock.advance(seconds=60)
    with pytest.raises(HoldStateError, match="expired"):
        await world.ledger.capture(cause, hold.redemption_id)  # before the sweeper ran
    assert await sweep_expired_holds(world.ledger, "run-test") >= 1
    detail = await queries.transaction(world.fashion, hold.redemption_id)
    assert detail.hold_status == "expired"
    assert await available(world, member) == 200


async def test_void_gives_the_points_back(world: Coalition) -> None:
    member = await world.member(80)
    hold, _ = await world.ledger.redeem(
        world.cause(world.fuel), member_id=member, order_ref="h", points=80, hold=True
    )
    assert await available(world, member) == 0
    voided, _ = await world.ledger.void(world.cause(world.fuel), hold.redemption_id)
    assert voided.status == "voided"
    assert await available(world, member) == 80
    with pytest.raises(Forbidden):
        await world.ledger.void(world.cause(world.cafe), hold.redemption_id)


async def test_redemption_reversal_restores_lots_and_clears_negatively(world: Coalition) -> None:
    member = await world.member(100, issuer=None)
    redemption, _ = await world.ledger.redeem(
        world.cause(world.fashion), member_id=member, order_ref="r", points=90
    )
    first, _ = await world.ledger.reverse(
        world.cause(world.fashion), redemption.redemption_id, points=30, reason="refund"
    )
    assert await cleared(first.reversal_id) == [(world.cafe, world.fashion, -30)]
    second, _ = await world.ledger.reverse(
        world.cause(world.fashion), redemption.redemption_id, reason="refund rest"
    )
    assert second.points == 60
    with pytest.raises(ReversalExceedsOriginal):
        await world.ledger.reverse(
            world.cause(world.fashion), redemption.redemption_id, points=1, reason="again"
        )
    assert await available(world, member) == 100
    with pytest.raises(Forbidden):
        await world.ledger.reverse(world.cause(world.cafe), redemption.redemption_id, reason="x")


async def test_earn_reversal_claws_back_then_makes_debt_repaid_by_later_earns(
    world: Coalition,
) -> None:
    member = await world.member()
    earn, _ = await world.ledger.earn(
        world.cause(world.cafe), member_id=member, order_ref="e", points=100, reason="r"
    )
    await world.ledger.earn(
        world.cause(world.fashion), member_id=member, order_ref="f", points=30, reason="r"
    )
    await world.ledger.redeem(
        world.cause(world.fuel), member_id=member, order_ref="g", points=100
    )  # the cafe lot is spent
    reversal, _ = await world.ledger.reverse(
        world.cause(world.cafe), earn.transaction_id, reason="goods returned"
    )
    # 30 come from the fashion lot (redeemed at cafe), 70 become debt owed to cafe.
    assert reversal.debt_points == 70
    assert await cleared(reversal.reversal_id) == [(world.fashion, world.cafe, 30)]
    balance = await queries.balance(member, to_us(world.clock()))
    assert (balance.available_points, balance.debt_points) == (-70, 70)
    with pytest.raises(InsufficientPoints):
        await world.ledger.redeem(
            world.cause(world.fuel), member_id=member, order_ref="h", points=1
        )
    later, _ = await world.ledger.earn(
        world.cause(world.fuel), member_id=member, order_ref="i", points=100, reason="r"
    )
    assert (later.debt_repaid_points, later.available_points) == (70, 30)
    assert await cleared(later.transaction_id) == [(world.fuel, world.cafe, 70)]
    balance = await queries.balance(member, to_us(world.clock()))
    assert (balance.available_points, balance.debt_points) == (30, 0)


async def test_expiry_makes_breakage_and_is_idempotent(world: Coalition) -> None:
    member = await world.member(50)
    world.clock.advance(days=200)
    await world.ledger.earn(
        world.cause(world.fashion), member_id=member, order_ref="x", points=20, reason="r"
    )
    world.clock.advance(days=24 * 31 - 200)  # past the first lot's 24 months, not the second's
    assert await available(world, member) == 20  # unswept expired points are not available
    with pytest.raises(InsufficientPoints):
        await world.ledger.redeem(
            world.cause(world.fuel), member_id=member, order_ref="y", points=21
        )
    assert await expire_lots(world.ledger, "run-1") >= 50
    assert await lots_of(member) == [(world.cafe, 50, 0), (world.fashion, 20, 20)]
    before = await db.fetch_one("SELECT COUNT(*) AS n FROM entries WHERE member_id = {}", member)
    await expire_lots(world.ledger, "run-2")
    after = await db.fetch_one("SELECT COUNT(*) AS n FROM entries WHERE member_id = {}", member)
    assert before == after


async def test_history_is_per_partner_and_paginated(world: Coalition) -> None:
    member = await world.member()
    for i in range(5):
        await world.ledger.earn(
            world.cause(world.cafe), member_id=member, order_ref=f"c{i}", points=10, reason="r"
        )
        world.clock.advance(seconds=1)
    await world.ledger.earn(
        world.cause(world.fashion), member_id=member, order_ref="f", points=10, reason="r"
    )
    page = await queries.history(member, world.cafe, limit=3)
    assert [t.order_ref for t in page.transactions] == ["c4", "c3", "c2"]
    rest = await queries.history(member, world.cafe, limit=3, cursor=page.next_cursor)
    assert [t.order_ref for t in rest.transactions] == ["c1", "c0"] and rest.next_cursor is None


async def test_journal_rows_cannot_be_updated_or_deleted(world: Coalition) -> None:
    await world.member(10)
    for sql in (
        "UPDATE postings SET points = points + 1",
        "DELETE FROM entries",
        "UPDATE lot_movements SET cleared_points = 0",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with db.write_transaction():
                await db.execute(sql)


async def test_worked_example_from_the_docs(world: Coalition) -> None:
    """docs/ledger.md, "A worked example": every number there is checked here."""
    ledger, clock, m = world.ledger, world.clock, await world.member()
    clock.at = clock.at.replace(year=2026, month=3, day=10)
    e1, _ = await ledger.earn(
        world.cause(world.cafe), member_id=m, order_ref="1", amount_minor=10000, currency="EUR"
    )
    clock.advance(days=1)
    e2, _ = await ledger.earn(
        world.cause(world.fashion), member_id=m, order_ref="2", amount_minor=2500, currency="EUR"
    )
    assert (e1.points, e2.points, e2.available_points) == (100, 50, 150)
    assert e1.expires_at.startswith("2028-03-10") and e2.expires_at.startswith("2028-03-11")
    clock.advance(days=1)
    r, _ = await ledger.redeem(world.cause(world.fuel), member_id=m, order_ref="3", points=120)
    assert r.value.amount_minor == 120
    assert await cleared(r.redemption_id) == [
        (world.cafe, world.fuel, 100),
        (world.fashion, world.fuel, 20),
    ]
    assert await lots_of(m) == [(world.cafe, 100, 0), (world.fashion, 50, 30)]
    clock.advance(days=1)
    v, _ = await ledger.reverse(
        world.cause(world.fuel), r.redemption_id, points=30, reason="refund"
    )
    assert await cleared(v.reversal_id) == [
        (world.fashion, world.fuel, -20),
        (world.cafe, world.fuel, -10),
    ]
    assert await lots_of(m) == [(world.cafe, 100, 10), (world.fashion, 50, 50)]
    clock.at = clock.at.replace(year=2028, month=3, day=11, hour=0, minute=30)
    assert await expire_lots(ledger, "nightly") >= 10
    assert await lots_of(m) == [(world.cafe, 100, 0), (world.fashion, 50, 50)]
    assert await available(world, m) == 50


async def test_a_balance_shows_unexpired_lots_by_expiry_and_leaves_out_unswept_ones(
    world: Coalition,
) -> None:
    """One read gives the member and their lots: lots past expiry that the nightly job has
    not swept count for nothing, the rest are listed by expiry date, and debt is taken off."""
    member = await world.member()
    earned = []
    for partner, points in ((world.cafe, 10), (world.fashion, 20), (world.fuel, 40)):
        result, _ = await world.ledger.earn(
            world.cause(partner), member_id=member, order_ref=partner, points=points, reason="r"
        )
        earned.append(result)
        world.clock.advance(days=10)
    await world.ledger.redeem(
        world.cause(world.cafe), member_id=member, order_ref="r", points=5
    )  # from the first lot, the earliest to expire
    world.clock.at = datetime.fromisoformat(earned[0].expires_at) + timedelta(days=1)

    balance = await queries.balance(member, to_us(world.clock()))

    assert balance.available_points == 20 + 40  # the first lot's 5 left are past expiry
    assert [(e.points, e.expires_at) for e in balance.expiring] == [
        (20, earned[1].expires_at),
        (40, earned[2].expires_at),
    ]
    assert (balance.held_points, balance.debt_points, balance.status) == (0, 0, "active")
    with pytest.raises(NotFound):
        await queries.balance("mbr_nobody", to_us(world.clock()))
