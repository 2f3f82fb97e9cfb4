"""Fingerprints against the auditor's exact queries, on a real ledger tampered at random.

Every tampering runs in a transaction that is rolled back, so the shared test database stays
consistent for the auditor that runs after each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coalition import db, fingerprints
from coalition.audit import CHECKS
from settlement.reconciliation import ledger_breaks
from tests.databases import BACKEND
from tests.support import Coalition

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="fingerprints are PostgreSQL's")

# SQL with {m}, {lot} and {e} for a member of the world and their lot and entry, and {d} for a
# non-zero amount: each breaks one relation the checks compare.
TAMPERINGS = {
    "available": "UPDATE members SET available_points = available_points + {d} WHERE id = {m}",
    "held": "UPDATE members SET held_points = held_points + {d} WHERE id = {m}",
    "debt": "UPDATE members SET debt_points = debt_points + {d} WHERE id = {m}",
    "lot": "UPDATE lots SET remaining = remaining + {d} WHERE id = {lot}",
    "posting": "INSERT INTO postings (entry_id, account, points, posted_at_us)"
    " VALUES ({e}, 'member:' || {m}, {d}, 0)",
    "held_posting": "INSERT INTO postings (entry_id, account, points, posted_at_us)"
    " VALUES ({e}, 'held:' || {m}, {d}, 0)",
    "movement": "INSERT INTO lot_movements (entry_id, lot_id, issuer_id, member_id, kind,"
    " lot_points, liability_points, cleared_points, posted_at_us)"
    " SELECT entry_id, id, issuer_id, member_id, 'earn', {d}, 0, 0, 0 FROM lots WHERE id = {lot}",
    "hold_status": "UPDATE holds SET status = CASE status WHEN 'held' THEN 'voided' ELSE 'held'"
    " END WHERE member_id = {m}",
    "resolution": "INSERT INTO entries (id, kind, points, posted_at_us, posting_count,"
    " resolves_hold_id, job, run_id) SELECT 'tamper-' || id, 'void', 0, 0, 2, id, 't', 't'"
    " FROM holds WHERE member_id = {m}",
}

tamperings = st.lists(
    st.tuples(
        st.sampled_from(sorted(TAMPERINGS)),
        st.integers(0, 2),  # which member (and their lot, entry)
        st.integers(-3, 3).filter(bool),
    ),
    max_size=4,
)


class _Rollback(Exception):
    pass


@asynccontextmanager
async def rolled_back() -> AsyncIterator[None]:
    try:
        async with db.write_transaction():
            yield
            raise _Rollback
    except _Rollback:
        pass


async def _members_with_history(world: Coalition) -> list[dict[str, object]]:
    """Three members, each with a lot, an entry and an open hold."""
    rows = []
    for points in (100, 250, 40):
        member = await world.member(points)
        await world.ledger.redeem(
            world.cause(world.fashion), member_id=member, order_ref="o", points=5, hold=True
        )
        row = await db.fetch_one(
            "SELECT l.member_id AS m, l.id AS lot, l.entry_id AS e FROM lots l"
            " WHERE l.member_id = {}",
            member,
        )
        assert row is not None
        rows.append(row)
    return rows


async def _exact_failures() -> set[str]:
    return {name for name in fingerprints.EQUALITIES if await db.fetch(CHECKS[name])}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=tamperings)
@example(changes=[])
@example(changes=[("available", 0, 3), ("available", 0, -3)])  # cancels out: no break
@example(changes=[("posting", 1, 2)])
@example(changes=[("lot", 2, -1), ("movement", 2, -1)])  # consistent lot and movement
@example(changes=[("resolution", 0, 1), ("resolution", 0, 1)])  # the second is refused
async def test_fingerprints_flag_exactly_the_checks_the_auditor_breaks(
    world: Coalition, changes: list[tuple[str, int, int]]
) -> None:
    members = await _members_with_history(world)
    async with rolled_back():
        for name, which, d in changes:
            row = members[which]
            sql = TAMPERINGS[name].format(m=f"'{row['m']}'", lot=row["lot"], e=f"'{row['e']}'", d=d)
            try:
                await db.execute("SAVEPOINT change")
                await db.execute(sql)
            except (asyncpg.CheckViolationError, asyncpg.UniqueViolationError):  # refused
                await db.execute("ROLLBACK TO SAVEPOINT change")
        flagged = await fingerprints.failing_checks()
        assert flagged == await _exact_failures()


async def _post(entry_id: object, account: str, points: int) -> None:
    await db.execute(
        "INSERT INTO postings (entry_id, account, points, posted_at_us) VALUES ({}, {}, {}, 0)",
        entry_id,
        account,
        points,
    )


async def test_an_amount_too_large_to_weight_falls_back_to_the_exact_checks(
    world: Coalition,
) -> None:
    member = (await _members_with_history(world))[0]
    async with rolled_back():
        await _post(member["e"], f"member:{member['m']}", 2**40)
        with pytest.raises(asyncpg.NumericValueOutOfRangeError):
            await db.execute("SAVEPOINT probe")
            await fingerprints.failing_checks()
        await db.execute("ROLLBACK TO SAVEPOINT probe")
        breaks = await ledger_breaks()
    assert {b.check for b in breaks} >= {"entry-balances", "journal-sums-to-zero"}
    assert any(str(member["e"]) in b.detail for b in breaks if b.check == "entry-balances")


async def test_a_difference_outside_the_join_is_still_a_break(world: Coalition) -> None:
    """Points moved to a member who does not exist: the exact query walks the members table,
    finds no row, and the fingerprint's difference stands as the break."""
    member = (await _members_with_history(world))[0]
    async with rolled_back():
        for account, points in (("member:nobody", 5), (f"liability:{world.cafe}", -5)):
            await _post(member["e"], account, points)
        breaks = await ledger_breaks()
    by_check = {b.check: b for b in breaks}
    assert by_check["member-balance-vs-journal"].subject == "fingerprint"
    assert "entry-balances" in by_check  # two more legs than the entry records
    assert "journal-sums-to-zero" not in by_check
