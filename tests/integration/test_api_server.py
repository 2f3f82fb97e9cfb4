"""The API served by uvicorn on a real socket: the second independent client library
(``requests-http-signature``), racing duplicate keys, health, OpenAPI and logs."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from freezegun import freeze_time
from http_message_signatures import MappingKeyResolver, algorithms
from redis.asyncio import Redis
from requests_http_signature import HTTPSignatureAuth

from coalition import db
from coalition.ledger import to_us
from partners import keys
from partners.app import create_app
from partners.server import configure_logging
from tests.integration.api_support import api_settings
from tests.partner_client import BASE, headers_of
from tests.support import Coalition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    keyid: str
    key: Ed25519PrivateKey
    world: Coalition

    def auth(self, post: bool = False) -> HTTPSignatureAuth:
        resolver = MappingKeyResolver(private_keys={self.keyid: self.key}, public_keys={})
        extra = ("content-type", "idempotency-key") if post else ()
        return HTTPSignatureAuth(
            signature_algorithm=algorithms.ED25519,
            key_resolver=resolver,
            key_id=self.keyid,
            covered_component_ids=BASE + extra,
            use_nonce=True,
        )


@pytest.fixture
async def served(world: Coalition, database: str) -> AsyncIterator[Served]:
    port = free_port()
    settings = api_settings(database, public_authority=f"127.0.0.1:{port}")
    redis = Redis.from_url(settings.redis_url)
    app = create_app(settings, redis=redis, own_database=False)  # the system clock
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes readiness only as a flag
        await asyncio.sleep(0.01)
    private = Ed25519PrivateKey.generate()
    keyid = f"{world.cafe}-live"
    await keys.add_key(
        world.cafe, private.public_key(), keyid=keyid, now_us=to_us(world.clock()) - 10**6
    )
    yield Served(f"http://127.0.0.1:{port}", keyid, private, world)
    server.should_exit = True
    await task


async def test_requests_http_signature_client_over_a_real_socket(served: Served) -> None:
    member = await served.world.member(0)

    def partner_session() -> list[requests.Response]:
        earn = requests.post(
            f"{served.url}/v1/earn",
            auth=served.auth(post=True),
            timeout=10,
            json={"member_id": member, "order_ref": "rhs-1", "points": 40, "reason": "welcome"},
            headers={"Idempotency-Key": f"rhs-{secrets.token_hex(6)}"},
        )
        balance = requests.get(
            f"{served.url}/v1/members/{member}?x=1", auth=served.auth(), timeout=10
        )
        return [earn, balance]

    earn, balance = await asyncio.to_thread(partner_session)
    assert earn.status_code == 201, earn.text
    assert balance.status_code == 200, balance.text
    assert balance.json()["available_points"] == 40


async def test_concurrent_duplicates_make_one_entry_and_in_flight_twins_get_409(
    served: Served,
) -> None:
    member = await served.world.member(500)
    key = f"race-{secrets.token_hex(6)}"

    def send() -> requests.Response:
        return requests.post(
            f"{served.url}/v1/redemptions",
            auth=served.auth(post=True),
            json={"member_id": member, "order_ref": "r", "points": 10},
            headers={"Idempotency-Key": key},
            timeout=30,
        )

    racing = await asyncio.gather(*[asyncio.to_thread(send) for _ in range(20)])
    statuses = Counter(r.status_code for r in racing)
    assert set(statuses) <= {201, 409} and statuses[201] >= 1, statuses
    for response in racing:
        if response.status_code == 409:
            assert response.json()["type"] == "/problems/idempotency-in-progress"
            assert response.headers["Retry-After"] == "1"
    after = await asyncio.gather(*[asyncio.to_thread(send) for _ in range(10)])
    assert {r.status_code for r in after} == {201}
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in after)
    ids = {r.json()["redemption_id"] for r in [*racing, *after] if r.status_code == 201}
    assert len(ids) == 1
    rows = await db.fetch("SELECT id FROM entries WHERE idempotency_key = {}", key)
    assert len(rows) == 1


async def test_clock_window_edges_with_freezegun(served: Served) -> None:
    member = await served.world.member(0)
    async with httpx.AsyncClient(base_url=served.url) as http:

        async def get_signed_at(offset_seconds: int) -> int:
            with freeze_time("2026-11-24 12:00:00", real_asyncio=True) as frozen:
                frozen.tick(timedelta(seconds=offset_seconds))
                prepared = requests.Request("GET", f"{served.url}/v1/members/{member}").prepare()
                served.auth()(prepared)  # the library stamps created from the (frozen) clock
                frozen.tick(timedelta(seconds=-offset_seconds))  # the server sees 12:00:00
                response = await http.get(f"/v1/members/{member}", headers=headers_of(prepared))
                return response.status_code

        assert await get_signed_at(-300) == 200
        assert await get_signed_at(-301) == 401
        assert await get_signed_at(30) == 200
        assert await get_signed_at(31) == 401


async def test_health_and_openapi(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        health = await http.get("/health")
        assert health.status_code == 200 and health.json() == {"database": "ok", "redis": "ok"}
        schema = (await http.get("/schema/openapi.json")).json()
        described = (await http.get("/problems/hold-state")).json()
    description = schema["info"]["description"]
    for slug in (
        "signature-missing",
        "signature-replayed",
        "idempotency-in-progress",
        "hold-state",
    ):
        assert f"/problems/{slug}" in description
    assert "Signature-Input" in description and "Idempotency-Key" in description
    earn = schema["paths"]["/v1/earn"]["post"]
    assert earn["requestBody"]["content"]["application/json"]["schema"]
    assert described["status"] == 409


async def test_logs_never_carry_keys_signatures_or_bodies(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    member = await served.world.member(0)
    secret_marker = f"order-{secrets.token_hex(8)}"
    configure_logging()  # what `coalition serve` does: INFO, drivers at WARNING
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="coalition")

    def call() -> Any:
        prepared = requests.Request(
            "POST",
            f"{served.url}/v1/earn",
            json={"member_id": member, "order_ref": secret_marker, "points": 5, "reason": "r"},
            headers={"Idempotency-Key": f"log-{secrets.token_hex(6)}"},
        ).prepare()
        served.auth(post=True)(prepared)
        response = requests.Session().send(prepared, timeout=10)
        return prepared, response

    prepared, response = await asyncio.to_thread(call)
    assert response.status_code == 201
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "request_id" in logged and "/v1/earn" in logged  # the access line is there
    signature_value = prepared.headers["Signature"].split("=", 1)[1]
    for secret in (secret_marker, signature_value, prepared.headers["Content-Digest"]):
        assert secret not in logged
