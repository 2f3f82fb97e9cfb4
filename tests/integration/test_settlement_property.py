"""For random ledgers, settled for real: the run publishes (the roll-forward closes and every
reconciliation check holds) and nets plus fees are exactly zero."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coalition import db
from coalition.errors import CoalitionError
from coalition.jobs import expire_lots
from settlement.calc import period_bounds
from settlement.service import OPERATOR
from tests.integration.settlement_support import settler_for
from tests.integration.test_settlement import fresh_date
from tests.support import Coalition

operations = st.lists(
    st.tuples(
        st.sampled_from(["earn", "redeem", "hold", "capture", "void", "reverse"]),
        st.integers(0, 2),
        st.integers(0, 2),
        st.integers(1, 400),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
async def test_random_ledgers_settle_to_zero_and_close(world: Coalition, ops: list) -> None:  # type: ignore[type-arg]
    day = fresh_date()
    start_us, end_us = period_bounds(day, world.ledger.settings.zone)
    world.clock.at = datetime.fromtimestamp(start_us / 10**6, tz=UTC) + timedelta(hours=1)
    partners = [world.cafe, world.fashion, world.fuel]
    members = [await world.member(), await world.member()]
    txns: list[tuple[str, str]] = []  # (partner, id)
    for op, p, m, points in ops:
        world.clock.advance(minutes=7)
        cause, member = world.cause(partners[p]), members[m % 2]
        try:
            if op == "earn":
                r, _ = await world.ledger.earn(
                    cause, member_id=member, order_ref="o", points=points, reason="r"
                )
                txns.append((partners[p], r.transaction_id))
            elif op in ("redeem", "hold"):
                q, _ = await world.ledger.redeem(
                    cause, member_id=member, order_ref="o", points=points, hold=op == "hold"
                )
                txns.append((partners[p], q.redemption_id))
            elif txns:
                owner, txn = txns[points % len(txns)]
                own = world.cause(owner)
                if op == "capture":
                    await world.ledger.capture(own, txn, points)
                elif op == "void":
                    await world.ledger.void(own, txn)
                else:
                    await world.ledger.reverse(own, txn, points=points % 50 + 1, reason="r")
        except CoalitionError:
            pass  # refusals are part of a random ledger
    await expire_lots(world.ledger, "expiry")
    world.clock.at = datetime.fromtimestamp(end_us / 10**6, tz=UTC) + timedelta(minutes=10)
    outcome = await settler_for(world).settle(day)
    assert outcome.status == "published", outcome.breaks
    row = await db.fetch_one(
        "SELECT signed_json FROM statements WHERE id = {}", f"{day}:{OPERATOR}"
    )
    assert row is not None
    summary = json.loads(row["signed_json"])["statement"]
    assert summary["zero_sum"]["sum"] == 0
    assert summary["zero_sum"]["net_total_minor"] == -summary["fees_total_minor"]
