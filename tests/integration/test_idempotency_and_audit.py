"""Idempotency records and the auditor, on the real database."""

from __future__ import annotations

import pytest

from coalition import db, program
from coalition.audit import audit
from coalition.errors import IdempotencyKeyReused, InsufficientPoints
from coalition.journal import Cause
from tests.support import Coalition, card_number


async def entries_for(partner: str, key: str) -> int:
    row = await db.fetch_one(
        "SELECT COUNT(*) AS n FROM entries WHERE partner_id = {} AND idempotency_key = {}",
        partner,
        key,
    )
    assert row is not None
    return int(row["n"])


async def test_a_rejection_is_remembered_even_after_the_member_earns(world: Coalition) -> None:
    member = await world.member(5)
    cause = world.cause(world.fashion, "s4-key", "redeem-50")
    with pytest.raises(InsufficientPoints) as first:
        await world.ledger.redeem(cause, member_id=member, order_ref="o", points=50)
    await world.ledger.earn(
        world.cause(world.cafe), member_id=member, order_ref="e", points=100, reason="r"
    )
    with pytest.raises(InsufficientPoints) as again:
        await world.ledger.redeem(cause, member_id=member, order_ref="o", points=50)
    assert (again.value.detail, again.value.fields) == (first.value.detail, first.value.fields)
    fresh, replayed = await world.ledger.redeem(
        world.cause(world.fashion, "s4-new-key", "redeem-50"),
        member_id=member,
        order_ref="o",
        points=50,
    )
    assert fresh.status == "captured" and not replayed


async def test_a_key_reused_with_another_request_is_refused_and_writes_nothing(
    world: Coalition,
) -> None:
    member = await world.member(100)
    first, _ = await world.ledger.redeem(
        world.cause(world.fuel, "k1", "fp-a"), member_id=member, order_ref="o", points=10
    )
    with pytest.raises(IdempotencyKeyReused):
        await world.ledger.redeem(
            world.cause(world.fuel, "k1", "fp-b"), member_id=member, order_ref="o", points=11
        )
    replay, replayed = await world.ledger.redeem(
        world.cause(world.fuel, "k1", "fp-a"), member_id=member, order_ref="o", points=10
    )
    assert replayed and replay == first
    assert await entries_for(world.fuel, "k1") == 1
    # Keys are scoped per partner: another partner may use the same key.
    other, replayed = await world.ledger.redeem(
        world.cause(world.cafe, "k1", "fp-b"), member_id=member, order_ref="o", points=11
    )
    assert not replayed and other.redemption_id != first.redemption_id


async def test_enrolment_is_idempotent_and_cards_are_unique(world: Coalition) -> None:
    card = card_number()
    cause = Cause(partner_id=world.cafe, idempotency_key="enrol-1", fingerprint="card")
    first, _ = await program.enrol_member(cause, card_number=card, partner_member_ref="c-1")
    again, replayed = await program.enrol_member(cause, card_number=card, partner_member_ref="c-1")
    assert replayed and again == first
    assert await program.member_by_card(card) == first.member_id
    with pytest.raises(Exception, match="already exists"):
        await program.enrol_member(Cause(partner_id=world.fashion), card_number=card)


async def test_the_auditor_names_a_corrupted_balance_and_lot(world: Coalition) -> None:
    member = await world.member(100)
    row = await db.fetch_one("SELECT id FROM lots WHERE member_id = {}", member)
    assert row is not None
    async with db.write_transaction():
        await db.execute("UPDATE members SET available_points = 90 WHERE id = {}", member)
        await db.execute("UPDATE lots SET remaining = 99 WHERE id = {}", row["id"])
    report = await audit()
    checks = {
        (v.check, member in v.detail or f"lot_id={row['id']}" in v.detail)
        for v in report.violations
    }
    assert ("member-balance-vs-journal", True) in checks
    assert ("lot-remaining-vs-movements", True) in checks
    assert ("issuer-liability", False) in checks  # names the issuer, not the member
    # Put it back so the end-of-test audit is clean again.
    async with db.write_transaction():
        await db.execute("UPDATE members SET available_points = 100 WHERE id = {}", member)
        await db.execute("UPDATE lots SET remaining = 100 WHERE id = {}", row["id"])


async def test_a_write_past_its_deadline_rolls_back_and_stores_nothing(
    world: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await world.member(50)
    monkeypatch.setattr(db, "WRITE_DEADLINE_SECONDS", -1.0)  # every write is "too slow"
    with pytest.raises(db.WriteDeadlineExceeded):
        await world.ledger.redeem(
            world.cause(world.fuel, "slow-key-1", "f"), member_id=member, order_ref="o", points=10
        )
    monkeypatch.undo()
    assert await entries_for(world.fuel, "slow-key-1") == 0
    retried, replayed = await world.ledger.redeem(
        world.cause(world.fuel, "slow-key-1", "f"), member_id=member, order_ref="o", points=10
    )
    assert not replayed and retried.points == 10  # nothing was stored for the failure


async def test_racing_enrolments_of_one_card_make_one_member(world: Coalition) -> None:
    import asyncio

    from coalition.errors import AlreadyExists

    card = card_number()
    results = await asyncio.gather(
        *[
            program.enrol_member(
                Cause(partner_id=world.cafe, idempotency_key=f"race-card-{i}", fingerprint=f"f{i}"),
                card_number=card,
            )
            for i in range(8)
        ],
        return_exceptions=True,
    )
    assert sum(1 for r in results if isinstance(r, tuple)) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if not isinstance(r, tuple))
