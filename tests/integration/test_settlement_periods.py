"""Which period an entry belongs to: local midnight, DST, and late commits."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from freezegun import freeze_time

from coalition import db
from coalition.clock import system_clock
from coalition.ledger import to_us
from coalition.service import Ledger
from settlement.calc import last_closed_date, period_bounds
from tests.integration.settlement_support import settler_for
from tests.integration.test_settlement import fresh_date
from tests.support import Coalition


def test_periods_follow_local_midnight_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = period_bounds(date(2026, 3, 29), berlin)  # clocks go forward at 02:00
    assert (end - start) == 23 * 3600 * 10**6
    assert start == to_us(datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    start, end = period_bounds(date(2026, 10, 25), berlin)  # and back
    assert (end - start) == 25 * 3600 * 10**6
    now = datetime(2026, 3, 29, 22, 6, tzinfo=UTC)  # 00:06 local on the 30th
    assert last_closed_date(now, berlin, 300) == date(2026, 3, 29)
    assert last_closed_date(now.replace(minute=4), berlin, 300) == date(2026, 3, 28)


async def statement_of(day: date, partner: str) -> dict[str, object]:
    row = await db.fetch_one("SELECT signed_json FROM statements WHERE id = {}", f"{day}:{partner}")
    assert row is not None
    result: dict[str, object] = json.loads(row["signed_json"])["statement"]
    return result


async def test_entries_on_each_side_of_local_midnight_in_a_dst_zone(world: Coalition) -> None:
    """The system clock, moved by freezegun, posts earns at the first microsecond of a Berlin
    business date and one microsecond either side of its end (local midnight)."""
    day = fresh_date()
    zone = ZoneInfo("Europe/Berlin")
    settler = settler_for(world, time_zone="Europe/Berlin")
    ledger = Ledger(settler.settings, system_clock)  # the real clock, frozen by freezegun
    member = await world.member()
    start_us, end_us = period_bounds(day, zone)
    local_midnight = datetime.fromtimestamp(end_us / 10**6, tz=UTC)
    for label, at in (
        ("before", local_midnight.timestamp() - 0.000001),
        ("after", local_midnight.timestamp()),
    ):
        with freeze_time(datetime.fromtimestamp(at, tz=UTC), real_asyncio=True):
            await ledger.earn(
                world.cause(world.cafe),
                member_id=member,
                order_ref=label,
                points=10 if label == "before" else 20,
                reason="r",
            )
    with freeze_time(datetime.fromtimestamp(start_us / 10**6, tz=UTC), real_asyncio=True):
        await ledger.earn(
            world.cause(world.cafe), member_id=member, order_ref="first", points=5, reason="r"
        )
    following = date.fromordinal(day.toordinal() + 1)
    with freeze_time(
        datetime.fromtimestamp(period_bounds(following, zone)[1] / 10**6 + 600, tz=UTC),
        real_asyncio=True,
    ):
        settle = settler_for(world, time_zone="Europe/Berlin", settlement_start_date=str(day))
        settle.clock = system_clock
        assert (await settle.settle(day)).status == "published"
        assert (await settle.settle(following)).status == "published"
    first = await statement_of(day, world.cafe)
    second = await statement_of(following, world.cafe)
    assert first["issuance"] == {"earn_count": 2, "earned_points": 15, "earn_reversed_points": 0}
    assert second["issuance"] == {"earn_count": 1, "earned_points": 20, "earn_reversed_points": 0}
    assert first["time_zone"] == "Europe/Berlin"
    assert first["liability"]["closing_points"] == second["liability"]["opening_points"]  # type: ignore[index]


async def test_a_transaction_started_before_midnight_and_committed_after_counts_once(
    world: Coalition,
) -> None:
    """Ledger time is the transaction's posted_at: an entry that starts at 23:59:59.9 and
    commits after midnight belongs to the earlier date, and to no other."""
    day = fresh_date()
    member = await world.member()
    _, end_us = period_bounds(day, ZoneInfo("UTC"))
    moments = iter([end_us - 100_000, end_us + 5_000_000])  # posted, then commit time

    def slow_clock() -> datetime:
        return datetime.fromtimestamp(next(moments, end_us + 5_000_000) / 10**6, tz=UTC)

    slow = Ledger(world.ledger.settings, slow_clock)
    earned, _ = await slow.earn(
        world.cause(world.fuel), member_id=member, order_ref="late", points=7, reason="r"
    )
    assert earned.posted_at.startswith(day.isoformat())
    world.clock.at = datetime.fromtimestamp(end_us / 10**6 + 86_400 + 600, tz=UTC)
    settler = settler_for(world)
    following = date.fromordinal(day.toordinal() + 1)
    assert (await settler.settle(day)).status == "published"
    assert (await settler.settle(following)).status == "published"
    counts = [
        (await statement_of(d, world.fuel))["issuance"]["earned_points"]  # type: ignore[index]
        for d in (day, following)
    ]
    assert counts == [7, 0]
