"""Concurrent requests' key lookups (PostgreSQL) and Redis admissions share round trips
(``partners.coalescing``), and each request still gets exactly its own answer."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from coalition import db
from coalition.ledger import to_us
from partners import guards as guards_module
from partners import keys
from partners.guards import Guards, RateLimited
from partners.signing import KEY_UNKNOWN, SignatureError
from tests.redis_server import redis_url_for_tests
from tests.support import Coalition, ManualClock


async def _new_key(world: Coalition, partner_id: str) -> tuple[str, bytes]:
    public = Ed25519PrivateKey.generate().public_key()
    keyid = f"{partner_id}-{secrets.token_hex(3)}"
    await keys.add_key(partner_id, public, keyid=keyid, now_us=to_us(world.clock()))
    return keyid, keys.raw_public(public)


async def test_concurrent_key_lookups_each_get_their_own_key_partner_and_record(
    world: Coalition,
) -> None:
    cafe_key, cafe_public = await _new_key(world, world.cafe)
    fashion_key, fashion_public = await _new_key(world, world.fashion)
    revoked_key, _ = await _new_key(world, world.fuel)
    now = to_us(world.clock())
    await keys.revoke_key(revoked_key, now)
    member = await world.member()
    await world.ledger.earn(
        world.cause(world.fashion, key="order-1", fingerprint="fp-1"),
        member_id=member,
        order_ref="o-1",
        points=10,
        reason="bonus",
    )
    before = (keys._lookups.batches, keys._lookups.calls)

    answers = await asyncio.gather(
        keys.verification_key(cafe_key, now),
        keys.verification_key(fashion_key, now, "order-1"),
        keys.verification_key("nobody", now),
        keys.verification_key(revoked_key, now),
        keys.verification_key(cafe_key, now, "order-1"),  # the record is fashion's, not cafe's
        return_exceptions=True,
    )

    cafe, fashion, unknown, revoked, cafe_again = answers
    assert not isinstance(cafe, BaseException) and not isinstance(fashion, BaseException)
    assert not isinstance(cafe_again, BaseException)
    assert (cafe.partner["id"], keys.raw_public(cafe.public_key)) == (world.cafe, cafe_public)
    assert (fashion.partner["id"], keys.raw_public(fashion.public_key)) == (
        world.fashion,
        fashion_public,
    )
    assert cafe.record is None and cafe_again.record is None
    assert fashion.record is not None and fashion.record["fingerprint"] == "fp-1"
    for refused in (unknown, revoked):
        assert isinstance(refused, SignatureError) and refused.slug == KEY_UNKNOWN
    if db.is_postgres():  # all five arrived before the first query went: one query
        assert (keys._lookups.batches, keys._lookups.calls) == (before[0] + 1, before[1] + 5)


@pytest.fixture
async def guards(clock: ManualClock) -> AsyncIterator[Guards]:
    """Guards on the test Redis under a key prefix of their own (limit: 4 a second)."""
    redis = Redis.from_url(redis_url_for_tests())
    prefix = f"coalition-test-{secrets.token_hex(4)}:"
    yield Guards(redis, prefix, 4, clock)
    async for key in redis.scan_iter(match=f"{prefix}*"):
        await redis.delete(key)
    await redis.aclose()


async def test_admissions_in_one_pipeline_keep_the_rate_limit_and_single_claims(
    guards: Guards,
) -> None:
    claim = guards.in_flight("cafe", "order-1", 30)
    twin = guards.in_flight("cafe", "order-1", 30)  # the same key, another request's token
    answers = await asyncio.gather(
        guards.admit("cafe", claim),
        guards.admit("cafe", twin),
        guards.admit("cafe"),
        guards.admit("cafe"),
        guards.admit("cafe"),  # the fifth in this second: over the limit of 4
        return_exceptions=True,
    )
    assert list(answers[:4]) == [True, False, True, True]
    assert isinstance(answers[4], RateLimited)
    assert (guards.admissions.batches, guards.admissions.calls) == (1, 5)
    assert await guards.redis.get(claim.key) == claim.value.encode()


async def test_admissions_load_the_script_again_when_redis_lost_it(
    guards: Guards, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A script text no Redis has seen (a unique comment) stands for one a restart lost; the
    # server's other scripts are left alone.
    fresh = f"{guards_module._ADMIT}-- {secrets.token_hex(8)}\n"
    monkeypatch.setattr(guards_module, "_ADMIT", fresh)
    guards = Guards(guards.redis, guards.prefix, 4, guards.clock)
    assert await guards.redis.script_exists(guards._admit.sha) == [False]
    claim = guards.nonce("cafe-key", secrets.token_hex(4), 30)
    answers = await asyncio.gather(guards.admit("cafe", claim), guards.admit("cafe", claim))
    assert sorted(answers) == [False, True]  # each ran exactly once, after the reload
    assert await guards.redis.script_exists(guards._admit.sha) == [True]
    window = f"{guards.prefix}rate:cafe:{int(guards.clock().timestamp())}"
    assert await guards.redis.get(window) == b"2"
