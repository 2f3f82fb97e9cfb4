"""S11: the settlement worker (``coalition worker``, its own process) SIGKILLed before, during and
after committing a run; restarted; the date settled a third time. One run per date, nets plus
fees sum to zero, each cleared point in exactly one pair row, statements byte-identical."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date

import pytest

from coalition import db
from coalition.service import Ledger
from coalition.settings import Settings
from tests.conftest import DATABASE_URL
from tests.integration.settlement_support import STATEMENT_KEY
from tests.integration.test_settlement import at, build_worked_example, fresh_date
from tests.integration.test_settlement_worker import (
    enqueue_settle_due,
    expire_in_progress_markers,
    run_rows,
    start_worker,
)
from tests.reliability.figures import Figures
from tests.reliability.stack import Stack
from tests.support import Coalition, ManualClock, make_coalition


@pytest.fixture
async def settled_day(stack: Stack) -> AsyncIterator[tuple[Coalition, date, dict[str, str]]]:
    clock = ManualClock()
    world = await make_coalition(Ledger(Settings(database_url=DATABASE_URL), clock), clock)
    day = fresh_date()
    await build_worked_example(world, day)
    env = {
        **os.environ,
        **stack.env,
        "COALITION_DATABASE_URL": stack.database_url,  # the application role on PostgreSQL
        "COALITION_REDIS_KEY_PREFIX": f"s11-{day}:",
        "COALITION_STATEMENT_KEY_PATH": str(STATEMENT_KEY),
        "COALITION_SETTLEMENT_START_DATE": day.isoformat(),
        "COALITION_TEST_NOW": at(day, 1, 0, 31).isoformat(),  # the night after, past the grace
    }
    yield world, day, env


async def statements(run_id: object) -> dict[str, bytes]:
    rows = await db.fetch(
        "SELECT partner_id, signed_json, signed_csv FROM statements WHERE run_id = {}", run_id
    )
    return {r["partner_id"]: f"{r['signed_json']}\n{r['signed_csv']}".encode() for r in rows}


@pytest.mark.scenario("S11")
@pytest.mark.parametrize(
    "crash_at", ["before-prepare", "after-prepare", "after-sign:FASHION", "after-publish"]
)
async def test_s11_worker_killed_around_the_commit(
    settled_day: tuple[Coalition, date, dict[str, str]], crash_at: str, figures: Figures
) -> None:
    world, day, env = settled_day
    crash_at = crash_at.replace("FASHION", world.fashion)
    await enqueue_settle_due(env)
    assert await start_worker(env, crash_at) == -signal.SIGKILL
    await expire_in_progress_markers(env)  # arq would rerun the killed job after its timeout
    await enqueue_settle_due(env)  # the next night's cron, or an operator
    assert await start_worker(env) == 0
    [run] = await run_rows(day)
    assert run["status"] == "published"
    first = await statements(run["id"])
    assert len(first) >= 3 and all(first.values())

    pairs = await db.fetch(
        "SELECT payer_id, payee_id, points, fee_minor FROM cleared_pairs WHERE run_id = {}",
        run["id"],
    )
    assert len({(p["payer_id"], p["payee_id"]) for p in pairs}) == len(pairs)  # none twice
    [summary] = await db.fetch(
        "SELECT signed_json FROM statements WHERE run_id = {} AND partner_id = '*'", run["id"]
    )
    partners = json.loads(summary["signed_json"])["statement"]["partners"]
    fees = sum(p["fees_paid_minor"] for p in partners)
    assert fees == sum(p["fee_minor"] for p in pairs) > 0
    assert sum(p["net_position"]["amount_minor"] for p in partners) + fees == 0

    await enqueue_settle_due(env)
    assert await start_worker(env) == 0  # a third time: nothing new, nothing changed
    assert [r["id"] for r in await run_rows(day)] == [run["id"]]
    assert await statements(run["id"]) == first
    figures.record(Counter(), crash_at=crash_at.split(":")[0], statements=len(first))
    figures.audit = "OK (reconciled)"
