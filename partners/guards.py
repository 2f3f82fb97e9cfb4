"""Short-lived request state kept in Redis: nonces, rate windows, in-flight idempotency keys.

Everything here expires by itself; nothing in Redis is needed to keep the ledger correct (the
database's unique idempotency records are the real guard against double posting).
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

# Delete the in-flight marker only if it is still ours (a slow request may outlive its TTL).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class Guards:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def claim_nonce(self, keyid: str, nonce: str, ttl_seconds: int) -> bool:
        """True the first time a (keyid, nonce) pair is seen within ``ttl_seconds``."""
        key = f"{self.prefix}nonce:{keyid}:{nonce}"
        return bool(await self.redis.set(key, b"1", nx=True, ex=ttl_seconds))

    async def within_rate(self, partner_id: str, limit_per_second: int, now_s: int) -> bool:
        key = f"{self.prefix}rate:{partner_id}:{now_s}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        return int(count) <= limit_per_second

    async def acquire_in_flight(self, partner_id: str, key: str, ttl_seconds: int) -> str | None:
        """A token if no other request with this key is running, else None."""
        token = secrets.token_hex(8)
        marker = f"{self.prefix}inflight:{partner_id}:{key}"
        acquired = await self.redis.set(marker, token, nx=True, ex=ttl_seconds)
        return token if acquired else None

    async def release_in_flight(self, partner_id: str, key: str, token: str) -> None:
        await self.redis.eval(_RELEASE, 1, f"{self.prefix}inflight:{partner_id}:{key}", token)  # type: ignore[misc]
