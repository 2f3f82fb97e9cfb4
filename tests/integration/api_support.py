"""Fixtures for partner API tests: the real app with its real Redis, and signing partners."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from redis.asyncio import Redis

from coalition.ledger import to_us
from coalition.settings import Settings
from partners import keys
from partners.app import create_app
from tests.partner_client import AUTHORITY, PartnerClient
from tests.redis_server import redis_url_for_tests
from tests.support import Coalition


@dataclass
class ApiWorld:
    world: Coalition
    app: Litestar
    http: httpx.AsyncClient
    redis: Redis
    settings: Settings
    cafe: PartnerClient
    fashion: PartnerClient
    fuel: PartnerClient


async def register(world: Coalition, partner_id: str, http: httpx.AsyncClient) -> PartnerClient:
    private = Ed25519PrivateKey.generate()
    keyid = f"{partner_id}-{secrets.token_hex(3)}"
    await keys.add_key(partner_id, private.public_key(), keyid=keyid, now_us=to_us(world.clock()))
    return PartnerClient(http, partner_id, keyid, private, world.clock)


def api_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "redis_url": redis_url_for_tests(),
        "public_authority": AUTHORITY,
        "redis_key_prefix": f"coalition-test-{secrets.token_hex(4)}:",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def make_api_world(world: Coalition, settings: Settings) -> AsyncIterator[ApiWorld]:
    redis = Redis.from_url(settings.redis_url)
    app = create_app(settings, clock=world.clock, redis=redis)
    # httpx's ASGI app type takes no app typed with TypedDict scopes (encode/httpx#3111)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=f"https://{AUTHORITY}") as http:
        clients = [await register(world, p, http) for p in (world.cafe, world.fashion, world.fuel)]
        yield ApiWorld(world, app, http, redis, settings, *clients)
    async for key in redis.scan_iter(match=f"{settings.redis_key_prefix}*"):
        await redis.delete(key)
    await redis.aclose()


@pytest.fixture
async def api(world: Coalition, database: str) -> AsyncIterator[ApiWorld]:
    async for built in make_api_world(world, api_settings(database)):
        yield built
