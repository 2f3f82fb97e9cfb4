"""S13, S14 and S15: entries around the period cutoff, rows corrupted by hand, and what the
application's database role and the API refuse. S13 and S14 drive the ledger's clock, so they
run the use cases in-process on the suite's database (the served API shares it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from coalition import db
from coalition.audit import audit
from coalition.service import Ledger
from coalition.settings import Settings
from settlement.calc import period_bounds
from tests.conftest import DATABASE_URL
from tests.integration.settlement_support import settler_for
from tests.integration.test_settlement import build_worked_example, fresh_date
from tests.reliability.client import enrol, slug
from tests.reliability.conftest import Onboard
from tests.reliability.figures import Figures
from tests.reliability.stack import BIN, Stack
from tests.support import Coalition, ManualClock, make_coalition


@pytest.fixture
async def world() -> AsyncIterator[Coalition]:
    clock = ManualClock()
    yield await make_coalition(Ledger(Settings(database_url=DATABASE_URL), clock), clock)


async def earned_in_statement(day: date, partner_id: str) -> int:
    row = await db.fetch_one(
        "SELECT signed_json FROM statements WHERE business_date = {} AND partner_id = {}",
        day.isoformat(),
        partner_id,
    )
    assert row is not None
    return int(json.loads(row["signed_json"])["statement"]["issuance"]["earned_points"])


@pytest.mark.scenario("S13")
async def test_s13_commits_around_the_cutoff_land_in_one_period(
    world: Coalition, figures: Figures, audited: None
) -> None:
    day = fresh_date()
    _, end_us = period_bounds(day, ZoneInfo("UTC"))
    members = [await world.member() for _ in range(10)]

    async def earn(member: str, posted_us: int, commit_delay_us: int, points: int) -> None:
        # posted_at is read inside the transaction; the commit happens later on this clock.
        moments = iter([posted_us, posted_us + commit_delay_us])

        def clock() -> datetime:
            return datetime.fromtimestamp(next(moments, posted_us + commit_delay_us) / 1e6, UTC)

        await Ledger(world.ledger.settings, clock).earn(
            world.cause(world.fuel), member_id=member, order_ref="c", points=points, reason="r"
        )

    offsets = [-2_000_000, -100_000, -1, 0, 1, 100_000, 2_000_000]  # around midnight
    calls = [
        earn(members[i % 10], end_us + off, delay, 1 + i)
        for i, (off, delay) in enumerate((o, d) for o in offsets for d in (0, 5_000_000))
    ]
    await asyncio.gather(*calls)
    before = sum(1 + i for i, o in enumerate(o for o in offsets for _ in (0, 1)) if o < 0)
    world.clock.at = datetime.fromtimestamp(end_us / 1e6 + 2 * 86_400, UTC)
    settler = settler_for(world)
    following = date.fromordinal(day.toordinal() + 1)
    for d in (day, following):
        assert (await settler.settle(d)).status == "published"
    counts = [await earned_in_statement(d, world.fuel) for d in (day, following)]
    assert counts == [before, sum(range(1, len(calls) + 1)) - before]  # each entry once
    figures.record(Counter(), entries=len(calls), earlier=before, later=counts[1])
    figures.acknowledged_checked = len(calls)


@pytest.mark.scenario("S14")
async def test_s14_corrupted_balance_and_posting_are_named_and_block_publication(
    world: Coalition, stack: Stack, figures: Figures, audited: None
) -> None:
    day = fresh_date()
    await build_worked_example(world, day)
    member = await db.fetch_one(
        "SELECT member_id FROM lots WHERE issuer_id = {} LIMIT 1", world.cafe
    )
    posting = await db.fetch_one(
        "SELECT p.id, p.entry_id FROM postings p JOIN entries e ON e.id = p.entry_id"
        " WHERE e.partner_id = {} AND p.account LIKE 'member:%' LIMIT 1",
        world.fashion,
    )
    assert member is not None and posting is not None
    await corrupt(member["member_id"], posting["id"], +1)
    try:
        report = await audit()
        named = {v.check for v in report.violations if member["member_id"] in v.detail}
        assert "member-balance-vs-journal" in named
        assert any(posting["entry_id"] in v.detail for v in report.violations)
        command = [str(BIN / "coalition"), "audit"]
        cli = await asyncio.to_thread(
            subprocess.run, command, env=stack_env(stack), capture_output=True, text=True
        )
        assert cli.returncode == 1 and member["member_id"] in cli.stdout + cli.stderr
        outcome = await settler_for(world).settle(day)
        assert outcome.status == "failed" and outcome.breaks
        published = await db.fetch(
            "SELECT id FROM statements WHERE business_date = {}", day.isoformat()
        )
        assert published == []
        figures.record(Counter(), violations=len(report.violations), breaks=len(outcome.breaks))
    finally:
        await corrupt(member["member_id"], posting["id"], -1)
    assert (await settler_for(world).settle(day)).status == "published"


def stack_env(stack: Stack) -> dict[str, str]:
    return {**os.environ, **stack.env, "COALITION_DATABASE_URL": stack.database_url}


async def corrupt(member_id: str, posting_id: int, delta: int) -> None:
    """Change a balance and a journal posting by hand, as a rogue superuser could."""
    async with db.write_transaction():
        await db.execute(
            "UPDATE members SET available_points = available_points + {} WHERE id = {}",
            delta,
            member_id,
        )
        if db.is_postgres():
            await db.execute("SET LOCAL session_replication_role = replica")  # skip the guards
        await db.execute(
            "UPDATE postings SET points = points + {} WHERE id = {}", delta, posting_id
        )


@pytest.mark.scenario("S15")
async def test_s15_the_app_role_cannot_change_the_journal_and_bad_numbers_are_400(
    partner: Onboard, app_database_url: str, figures: Figures
) -> None:
    shop = await partner("shop")
    member = await enrol(shop, 100)
    refused = Counter[str]()
    connection = await asyncpg.connect(app_database_url)
    try:
        for statement in (
            "UPDATE entries SET points = points + 1",
            "DELETE FROM postings",
            "UPDATE postings SET points = 0",
            "DELETE FROM lot_movements",
            "UPDATE idempotency_records SET result = ''",
            "TRUNCATE lot_movements",
            "DELETE FROM members",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
            refused[statement.split()[0]] += 1
    finally:
        await connection.close()
    before = await db.fetch("SELECT count(*) AS n FROM entries")
    bad_points: tuple[object, ...] = (0, -1, 2**63, 1.5, "10", None, True, 1e3, "1e3", [], {})
    for bad in bad_points:
        body = {"member_id": member, "order_ref": "bad", "points": bad, "reason": "r"}
        for path in ("/v1/earn", "/v1/redemptions"):
            answer = await shop.post(path, body)
            assert (answer.status_code, slug(answer)) == (400, "invalid-request"), (bad, path)
    assert await db.fetch("SELECT count(*) AS n FROM entries") == before
    figures.record(Counter(), refused_statements=sum(refused.values()))
