"""S12 and the dependency faults: the API SIGKILLed, PostgreSQL crashed (immediate stop, WAL
recovery) and Redis restarted, all under signed load, on a PostgreSQL cluster of the suite's own.
Clients retry with their keys; afterwards every acknowledged write is in the journal exactly
once, every key answers again with its first outcome (nothing stuck in flight) and the auditor
is clean. While a dependency is down the API must answer 503 problem+json, never a guess."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.partner_client import PartnerClient
from tests.reliability.client import Partner, Tally, enrol, now, slug
from tests.reliability.figures import Figures
from tests.reliability.stack import BIN, PrivatePostgres, Stack

IN_FLIGHT_SECONDS = 3  # short, so a key whose request died with the API is answerable soon


@dataclass
class Faulty:
    """A stack over a private PostgreSQL cluster: every part of it may be killed."""

    pg: PrivatePostgres
    stack: Stack
    owner_dsn: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.stack.env, "COALITION_DATABASE_URL": self.owner_dsn}
        return subprocess.run(
            [str(BIN / "coalition"), *args], env=env, capture_output=True, text=True, timeout=120
        )

    async def partner(self, http: httpx.AsyncClient, tally: Tally) -> Partner:
        partner_id = f"shop-{secrets.token_hex(3)}"
        added = self.cli("partner", "add", partner_id, "--name", "Shop", "--bonus-cap", "100000")
        assert added.returncode == 0, added.stderr
        private = Ed25519PrivateKey.generate()
        pem = self.stack.home / f"{partner_id}.pem"
        pem.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        keyid = f"{partner_id}-k1"
        registered = self.cli("key", "add", partner_id, "--public-key", str(pem), "--keyid", keyid)
        assert registered.returncode == 0, registered.stderr
        return Partner(PartnerClient(http, partner_id, keyid, private, now), tally)


@pytest.fixture(scope="module")
def faulty() -> Iterator[Faulty]:
    pg = PrivatePostgres()
    pg.init()
    stack = None
    try:
        subprocess.run(
            ["psql", pg.dsn(), "-qc", "CREATE DATABASE coalition"], check=True, capture_output=True
        )
        owner = pg.dsn("coalition")
        env = {**os.environ, "COALITION_DATABASE_URL": owner}
        migrate = [str(BIN / "coalition"), "migrate"]
        subprocess.run(migrate, env=env, check=True, capture_output=True)
        subprocess.run(
            ["psql", owner, "-qc", "CREATE ROLE api LOGIN IN ROLE coalition_app"],
            check=True,
            capture_output=True,
        )
        app_url = f"postgresql://api@127.0.0.1:{pg.port}/coalition"
        settings = {
            "COALITION_IDEMPOTENCY_IN_FLIGHT_SECONDS": str(IN_FLIGHT_SECONDS),
            "COALITION_RATE_LIMIT_PER_SECOND": "1000000",
        }
        stack = Stack(app_url, settings=settings)
        stack.start()
        yield Faulty(pg, stack, owner)
    finally:
        if stack is not None:
            stack.close()
        pg.close()


@pytest.fixture
async def http(faulty: Faulty) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=faulty.stack.url, timeout=30) as client:
        yield client


async def audit_clean(faulty: Faulty, figures: Figures) -> None:
    audited = await asyncio.to_thread(faulty.cli, "audit")
    figures.audit = "OK" if audited.returncode == 0 else "violations"
    assert audited.returncode == 0, audited.stdout + audited.stderr


async def entries_by_key(faulty: Faulty, partner_id: str) -> Counter[str]:
    connection = await asyncpg.connect(faulty.owner_dsn)
    try:
        rows = await connection.fetch(
            "SELECT idempotency_key FROM entries WHERE partner_id = $1", partner_id
        )
    finally:
        await connection.close()
    return Counter(row["idempotency_key"] for row in rows)


@pytest.mark.scenario("S12")
async def test_s12_kill_api_crash_postgres_restart_redis_under_load(
    faulty: Faulty, http: httpx.AsyncClient, figures: Figures
) -> None:
    tally = Tally()
    shop = await faulty.partner(http, tally)
    members = [await enrol(shop, 5_000) for _ in range(40)]
    sent: dict[str, tuple[str, dict[str, Any]]] = {}
    final: dict[str, httpx.Response] = {}
    stop = asyncio.Event()

    async def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key, member = f"s12-{n:02d}-{i:06d}", members[(n + i) % len(members)]
            body: dict[str, Any] = {"member_id": member, "order_ref": key, "points": 1 + i % 40}
            path = "/v1/redemptions" if i % 3 == 0 else "/v1/earn"
            if path == "/v1/earn":
                body["reason"] = "r"
            sent[key] = (path, body)
            final[key] = await shop.post_until_final(path, body, key=key)

    async def faults() -> list[str]:
        done = []
        for fault in ("kill-api", "crash-postgres", "restart-redis", "kill-api"):
            await asyncio.sleep(2)  # let load build up between faults
            await asyncio.to_thread(inject, faulty, fault)
            done.append(fault)
        await asyncio.sleep(2)
        stop.set()
        return done

    clients = [asyncio.create_task(client(n)) for n in range(16)]
    injected = await faults()
    await asyncio.gather(*clients)

    outcomes = Counter(slug(r) for r in final.values())
    assert set(outcomes) <= {"ok", "insufficient-points"}, outcomes
    assert tally.server_errors() == tally.statuses["503"], tally.statuses  # 503 is the only 5xx
    journal = await entries_by_key(faulty, shop.id)
    for key, response in final.items():
        assert journal[key] == (1 if response.is_success else 0), key  # not lost, not doubled

    # Nothing stuck: once the in-flight window has passed, every key answers with its outcome.
    await asyncio.sleep(IN_FLIGHT_SECONDS + 0.5)
    for key, (path, body) in sent.items():
        again = await shop.post(path, body, key=key)
        assert again.status_code == final[key].status_code, key
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.content == final[key].content
    figures.acknowledged_checked = sum(1 for r in final.values() if r.is_success)
    figures.record(tally.statuses, faults=" ".join(injected), keys=len(final))
    await audit_clean(faulty, figures)


def inject(faulty: Faulty, fault: str) -> None:
    if fault == "kill-api":
        faulty.stack.api.kill()
        faulty.stack.start_api()
    elif fault == "crash-postgres":
        faulty.pg.restart(mode="immediate")  # no checkpoint: recovery replays the WAL
    elif fault == "restart-redis":
        faulty.stack.redis.kill()
        faulty.stack.start_redis()


async def expect_unavailable(shop: Partner, member: str, key: str) -> None:
    body = {"member_id": member, "order_ref": key, "points": 5, "reason": "r"}
    earn = await shop.post("/v1/earn", body, key=key)
    for response in (earn, await shop.get(f"/v1/members/{member}")):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert slug(response) == "service-unavailable"
        assert response.headers["Retry-After"] == "1"


@pytest.mark.scenario("down")
async def test_api_answers_503_while_a_dependency_is_down(
    faulty: Faulty, http: httpx.AsyncClient, figures: Figures
) -> None:
    tally = Tally()
    shop = await faulty.partner(http, tally)
    member = await enrol(shop, 100)
    for key, down, start in (
        ("redis-down", faulty.stack.redis.kill, faulty.stack.start_redis),
        ("postgres-down", faulty.pg.stop, faulty.pg.start),
    ):
        await asyncio.to_thread(down)
        await expect_unavailable(shop, member, key)
        health = await http.get("/health")
        assert health.status_code == 503
        await asyncio.to_thread(start)
        earned = await shop.post_until_final(
            "/v1/earn", {"member_id": member, "order_ref": "up", "points": 5, "reason": "r"}
        )
        assert earned.status_code == 201
    journal = await entries_by_key(faulty, shop.id)
    assert journal["redis-down"] == journal["postgres-down"] == 0  # nothing half-written
    figures.record(tally.statuses)
    await audit_clean(faulty, figures)
