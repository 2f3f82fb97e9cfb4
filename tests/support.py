"""Test helpers: a clock the test moves by hand, and a small coalition of partners."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from coalition import program
from coalition.journal import Cause
from coalition.service import Ledger


@dataclass
class ManualClock:
    """A clock for domain code: time moves only when the test says so."""

    at: datetime = field(default_factory=lambda: datetime(2026, 3, 10, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class Coalition:
    """Three partners with unique ids, so tests never collide in the shared run database."""

    ledger: Ledger
    clock: ManualClock
    cafe: str
    fashion: str
    fuel: str

    def cause(self, partner_id: str, key: str | None = None, fingerprint: str = "f") -> Cause:
        return Cause(
            partner_id=partner_id,
            key_id=f"{partner_id}-key",
            idempotency_key=key,
            fingerprint=fingerprint if key else None,
        )

    async def member(self, points: int = 0, issuer: str | None = None) -> str:
        enrolled, _ = await program.enrol_member(Cause(job="test"), clock=self.clock)
        if points:
            await self.ledger.earn(
                self.cause(issuer or self.cafe),
                member_id=enrolled.member_id,
                order_ref="seed",
                points=points,
                reason="seed",
            )
        return enrolled.member_id


async def make_coalition(ledger: Ledger, clock: ManualClock) -> Coalition:
    suffix = secrets.token_hex(3)
    ids = {}
    for name, roles, rate in (
        ("cafe", "earn,redeem", "1"),
        ("fashion", "earn,redeem", "2"),
        ("fuel", "earn,redeem", "0.5"),
    ):
        ids[name] = f"{name}-{suffix}"
        await program.add_partner(
            ids[name],
            name.title(),
            roles=roles,
            currency="EUR",
            earn_rate=rate,
            bonus_cap_points=100_000,
        )
    return Coalition(ledger, clock, ids["cafe"], ids["fashion"], ids["fuel"])


def card_number() -> str:
    """A fresh 16-digit card number with a valid Luhn check digit."""
    body = [int(d) for d in f"9{secrets.randbelow(10**14):014d}"]
    total = sum(
        d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(body))
    )
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


async def sessions_waiting_on_a_lock(database_url: str) -> int:
    """How many sessions of the database wait for a lock now (PostgreSQL). A connection of its
    own, because inside a transaction ``pg_stat_activity`` is a snapshot."""
    inspector = await asyncpg.connect(database_url)
    try:
        waiting: int = await inspector.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await inspector.close()
    return waiting


async def until_a_session_waits_on_a_lock(database_url: str) -> None:
    """Return once a session of the database waits for a lock (polled: PostgreSQL sends no
    event)."""
    for _ in range(1000):  # at most 10 s
        if await sessions_waiting_on_a_lock(database_url):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no session started waiting on a lock")


async def finish(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel what a failed test left running, so it cannot write into the next test."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
