"""Thin arq jobs. arq runs a job at least once, so each one is idempotent and its effects are
backed by unique rows in the database; retrying or duplicating a job changes nothing."""

from __future__ import annotations

import logging
import os
import signal
from datetime import date
from typing import Any

from coalition.jobs import expire_lots, sweep_expired_holds
from coalition.ledger import new_id
from coalition.service import Ledger
from settlement.service import Settler

log = logging.getLogger("coalition.worker")

Ctx = dict[str, Any]


def _crash_point(name: str) -> None:
    """Test hook: SIGKILL this worker at a named point (``COALITION_TEST_CRASH_AT``)."""
    if os.environ.get("COALITION_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


async def settle_due(ctx: Ctx) -> list[str]:
    """Prepare the oldest unsettled closed date and fan its statements out; the job that signs
    the last statement publishes the date and calls this again for the next one."""
    settler: Settler = ctx["settler"]
    for day in await settler.due_dates():
        _crash_point("before-prepare")
        outcome, pending = await settler.prepare(day)
        log.info("settlement %s: %s, %d statements to sign", day, outcome.status, len(pending))
        if outcome.status == "failed":
            return [f"{day}: failed"]  # stop: later dates depend on this one's closing
        if pending:
            _crash_point("after-prepare")
            for partner_id in pending:
                await ctx["redis"].enqueue_job(
                    "sign_statement",
                    day.isoformat(),
                    partner_id,
                    _job_id=f"sign:{day}:{partner_id}",
                )
            return [f"{day}: {len(pending)} statements queued"]
        await settler.publish_if_complete(day)
    return []


async def sign_statement(ctx: Ctx, day_iso: str, partner_id: str) -> str:
    settler: Settler = ctx["settler"]
    day = date.fromisoformat(day_iso)
    await settler.sign_statement(day, partner_id)
    _crash_point(f"after-sign:{partner_id}")
    if await settler.publish_if_complete(day):
        _crash_point("after-publish")
        log.info("settlement %s published", day)
        await ctx["redis"].enqueue_job("settle_due", _job_id=f"settle-after:{day}")
    return f"{day}:{partner_id}"


async def expire(ctx: Ctx) -> int:
    return await expire_lots(ctx["ledger"], new_id("run"))


async def sweep_holds(ctx: Ctx) -> int:
    return await sweep_expired_holds(ctx["ledger"], new_id("run"))


def context(ledger: Ledger, settler: Settler) -> Ctx:
    return {"ledger": ledger, "settler": settler}
