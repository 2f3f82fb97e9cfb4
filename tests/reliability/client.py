"""Partners as the suite's load: every request signed by the independent RFC 9421 library,
sent over a real socket, counted, and (for writes) retried with the same key until it gets a
final answer, which is what a careful partner does when a connection drops or the API says 503."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coalition import program
from coalition.ledger import to_us
from partners import keys
from tests.partner_client import PartnerClient

# Answers that mean "nothing final yet, ask again with the same key".
RETRY_STATUSES = {503}
RETRY_SLUGS = {"idempotency-in-progress", "service-unavailable"}
RETRY_BACKOFF_SECONDS = 0.05
GIVE_UP_SECONDS = 120


def slug(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        return str(response.json()["type"]).rsplit("/", 1)[-1]
    return "ok" if response.is_success else str(response.status_code)


@dataclass
class Tally:
    """Every HTTP exchange of a scenario: statuses, transport errors and latencies."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    async def timed(self, call: Awaitable[httpx.Response]) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await call
        except httpx.TransportError as error:
            self.statuses[type(error).__name__] += 1
            raise
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[str(response.status_code)] += 1
        return response


@dataclass
class Partner:
    client: PartnerClient
    tally: Tally

    @property
    def id(self) -> str:
        return self.client.partner_id

    def via(self, http: httpx.AsyncClient) -> Partner:
        """The same partner (key, tally) on another HTTP client. Load scenarios give each
        virtual client its own: one httpx pool shared by 64 connections costs the test
        process more CPU per request than the server spends."""
        c = self.client
        return Partner(PartnerClient(http, c.partner_id, c.keyid, c.key, c.clock), self.tally)

    async def get(self, path: str) -> httpx.Response:
        return await self.tally.timed(self.client.get(path))

    async def post(self, path: str, body: Any = None, *, key: str | None = None) -> httpx.Response:
        return await self.tally.timed(self.client.post(path, body, key=key))

    async def post_until_final(
        self, path: str, body: Any = None, *, key: str | None = None
    ) -> httpx.Response:
        """Send with one key until the answer is final (anything but a transport error, 503 or
        "still in progress"); each attempt is freshly signed, as a real retry would be."""
        key = key or f"k-{secrets.token_hex(8)}"
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while True:
            try:
                response = await self.post(path, body, key=key)
                if response.status_code not in RETRY_STATUSES and slug(response) not in RETRY_SLUGS:
                    return response
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no final answer for {key} in {GIVE_UP_SECONDS} s")
            await asyncio.sleep(RETRY_BACKOFF_SECONDS)  # back off before the retry, not a race


def now() -> datetime:
    return datetime.now(UTC)


async def onboard(
    http: httpx.AsyncClient, tally: Tally, name: str, roles: str = "earn,redeem"
) -> Partner:
    """A new partner with a unique id and a registered Ed25519 key."""
    partner_id = f"{name}-{secrets.token_hex(3)}"
    await program.add_partner(
        partner_id, name.title(), roles=roles, currency="EUR", earn_rate="1", bonus_cap_points=10**6
    )
    private = Ed25519PrivateKey.generate()
    keyid = f"{partner_id}-k1"
    # Valid from a second ago: the server's clock is the same system clock.
    await keys.add_key(partner_id, private.public_key(), keyid=keyid, now_us=to_us(now()) - 10**6)
    return Partner(PartnerClient(http, partner_id, keyid, private, now), tally)


async def gather_limited(calls: list[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    """Run the calls with at most ``concurrency`` in flight (a pool of clients)."""
    queue = list(reversed(calls))
    results: list[Any] = [None] * len(calls)
    index = {id(call): i for i, call in enumerate(calls)}

    async def client() -> None:
        while queue:
            call = queue.pop()
            results[index[id(call)]] = await call()

    await asyncio.gather(*(client() for _ in range(min(concurrency, len(calls)))))
    return results


async def enrol(partner: Partner, points: int = 0) -> str:
    """A new member, with ``points`` earned at ``partner`` as a bonus when asked."""
    enrolled = await partner.post_until_final("/v1/members", {})
    assert enrolled.status_code == 201, enrolled.text
    member_id = str(enrolled.json()["member_id"])
    if points:
        body = {"member_id": member_id, "order_ref": "seed", "points": points, "reason": "seed"}
        earned = await partner.post_until_final("/v1/earn", body)
        assert earned.status_code == 201, earned.text
    return member_id


async def balance(partner: Partner, member_id: str) -> tuple[int, int]:
    """(available, held) as the API reports them."""
    response = await partner.get(f"/v1/members/{member_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    return int(body["available_points"]), int(body["held_points"])
