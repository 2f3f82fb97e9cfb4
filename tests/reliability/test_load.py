"""S7 and S8: sustained signed load on the served API, then every acknowledged write is looked
up in the journal, deadlocks are read from PostgreSQL's own counters, and the auditor runs."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from coalition import db
from coalition.ledger import new_id, to_us
from tests import databases
from tests.reliability.client import Partner, enrol, now, slug
from tests.reliability.conftest import Onboard
from tests.reliability.figures import Figures


async def deadlocks() -> int:
    if databases.BACKEND != "postgres":
        return 0
    rows = await db.fetch(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(rows[0]["deadlocks"])


async def bulk_members(count: int) -> list[str]:
    """Members inserted directly: seeding, not the scenario (enrolment has its own tests)."""
    ids = [new_id("mem") for _ in range(count)]
    created = to_us(now())
    for start in range(0, count, 1000):
        chunk = ids[start : start + 1000]
        values = ", ".join("({}, 'active', 0, 0, 0, {})" for _ in chunk)
        args: list[Any] = [arg for member_id in chunk for arg in (member_id, created)]
        await db.execute(
            "INSERT INTO members (id, status, available_points, held_points, debt_points,"
            f" created_at_us) VALUES {values}",
            *args,
        )
    return ids


async def acknowledged_in_journal(partner_id: str, keys: list[str]) -> int:
    """How many of ``keys`` have exactly one entry; a missing or doubled one is a lost write."""
    found = Counter[str]()
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        marks = ", ".join("{}" for _ in chunk)
        rows = await db.fetch(
            f"SELECT idempotency_key FROM entries WHERE partner_id = {{}}"
            f" AND idempotency_key IN ({marks})",
            partner_id,
            *chunk,
        )
        found.update(row["idempotency_key"] for row in rows)
    assert all(found[key] == 1 for key in keys), "an acknowledged write is missing or doubled"
    return len(keys)


@pytest.mark.scenario("S7")
async def test_s7_earns_to_distinct_members_at_64_clients(
    partner: Onboard, figures: Figures, long_mode: bool
) -> None:
    count, points = (100_000 if long_mode else 20_000), 7
    issuer = await partner("issuer")
    members = await bulk_members(count)
    deadlocks_before = await deadlocks()
    keys = [f"s7-{i:08d}" for i in range(count)]

    answers: list[Any] = [None] * count
    todo = iter(range(count))

    async def client(http: httpx.AsyncClient) -> None:
        me = issuer.via(http)
        for i in todo:  # shared by the 64 clients: each takes the next earn
            body = {"member_id": members[i], "order_ref": f"o{i}", "points": points, "reason": "r"}
            answers[i] = await me.post_until_final("/v1/earn", body, key=keys[i])

    async with contextlib.AsyncExitStack() as clients:
        https = [
            await clients.enter_async_context(
                httpx.AsyncClient(base_url=issuer.client.http.base_url, timeout=60)
            )
            for _ in range(64)
        ]
        started = time.monotonic()
        await asyncio.gather(*(client(http) for http in https))
        elapsed = time.monotonic() - started
    assert Counter(slug(a) for a in answers) == Counter({"ok": count})
    assert issuer.tally.server_errors() == 0
    rows = await db.fetch(
        "SELECT coalesce(sum(remaining), 0) AS liability FROM lots WHERE issuer_id = {}", issuer.id
    )
    assert rows[0]["liability"] == count * points  # the issuer owes exactly what it issued
    assert await deadlocks() == deadlocks_before
    figures.acknowledged_checked = await acknowledged_in_journal(issuer.id, keys)
    figures.record(
        Counter(),
        earns_per_s=round(count / elapsed),
        p50_ms=round(issuer.tally.percentile_ms(0.5), 1),
        p99_ms=round(issuer.tally.percentile_ms(0.99), 1),
        deadlocks=0,
    )


@pytest.mark.scenario("S8")
async def test_s8_random_mix_on_few_members_for_two_minutes(
    partner: Onboard, figures: Figures, s8_seconds: float
) -> None:
    duration = s8_seconds
    shops = [await partner(f"shop{i}") for i in range(5)]
    members = [await enrol(shops[i % 5], 2_000) for i in range(20)]
    deadlocks_before = await deadlocks()
    acked: dict[str, list[str]] = {shop.id: [] for shop in shops}
    earned: list[tuple[Partner, str]] = []  # (issuer, transaction id) that may be reversed
    rng = random.Random(8)
    stop_at = time.monotonic() + duration

    async def client() -> None:
        while time.monotonic() < stop_at:
            shop, member = rng.choice(shops), rng.choice(members)
            key, roll = f"s8-{secrets.token_hex(8)}", rng.random()
            if roll < 0.45:
                body = {"member_id": member, "order_ref": key, "points": rng.randint(1, 80)}
                answer = await shop.post_until_final("/v1/earn", body | {"reason": "r"}, key=key)
                if answer.status_code == 201:
                    earned.append((shop, answer.json()["transaction_id"]))
            elif roll < 0.9 or not earned:
                body = {"member_id": member, "order_ref": key, "points": rng.randint(1, 120)}
                answer = await shop.post_until_final("/v1/redemptions", body, key=key)
            else:
                issuer, transaction_id = rng.choice(earned)
                body = {"reason": "returned", "points": rng.randint(1, 20)}
                path = f"/v1/transactions/{transaction_id}/reversals"
                answer, shop = await issuer.post_until_final(path, body, key=key), issuer
            assert answer.status_code < 500, answer.text  # no serialization error, no deadlock
            if answer.is_success:
                acked[shop.id].append(key)

    await asyncio.gather(*(client() for _ in range(32)))
    tally = shops[0].tally
    assert tally.server_errors() == 0
    assert await deadlocks() == deadlocks_before
    checked = 0
    for shop_id, keys in acked.items():
        checked += await acknowledged_in_journal(shop_id, keys)
    figures.acknowledged_checked = checked
    figures.record(
        Counter(),
        seconds=duration,
        per_s=round(tally.requests / duration),
        p99_ms=round(tally.percentile_ms(0.99), 1),
        deadlocks=0,
    )
