"""Short-lived request state kept in Redis: rate windows, nonces, in-flight idempotency keys.

Everything here expires by itself; nothing in Redis is needed to keep the ledger correct (the
database's unique idempotency records are the real guard against double posting).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from coalition.clock import Clock
from partners.coalescing import Coalescer

# One round trip admits a request: it counts the request in its partner's window of this second
# and, within the limit, takes its claim (a nonce, or an Idempotency-Key's in-flight marker).
# A request over the limit claims nothing. KEYS: the window[, the claim]. ARGV: the limit, the
# claim's value and TTL. Answers 0: over the limit, 1: the claim is another's, 2: admitted.
_ADMIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 2) end
if count > tonumber(ARGV[1]) then return 0 end
if #KEYS == 2 and not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return 1 end
return 2
"""

# Delete the in-flight marker only if it is still ours (a slow request may outlive its TTL).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


# ``_ADMIT``'s KEYS and ARGV for one request.
_Admission = tuple[tuple[str, ...], tuple[str, ...]]


class RateLimited(Exception):
    """The partner is over its rate limit (429)."""


@dataclass(frozen=True)
class Claim:
    """A Redis key a request takes for itself (SET NX) for ``ttl_seconds``."""

    key: str
    value: str
    ttl_seconds: int


class Guards:
    def __init__(self, redis: Redis, prefix: str, limit_per_second: int, clock: Clock) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limit_per_second = limit_per_second
        self.clock = clock
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)
        # Concurrent requests' admissions share a pipeline, one in flight at a time.
        self.admissions: Coalescer[_Admission, int] = Coalescer(
            self._admit_all, max_in_flight=1, max_keys=64
        )

    def nonce(self, keyid: str, nonce: str, ttl_seconds: int) -> Claim:
        """Single use of a (keyid, nonce) pair within ``ttl_seconds``."""
        return Claim(f"{self.prefix}nonce:{keyid}:{nonce}", "1", ttl_seconds)

    def in_flight(self, partner_id: str, key: str, ttl_seconds: int) -> Claim:
        """The running request of an Idempotency-Key; its token lets only it release the claim."""
        marker = f"{self.prefix}inflight:{partner_id}:{key}"
        return Claim(marker, secrets.token_hex(8), ttl_seconds)

    async def admit(self, partner_id: str, claim: Claim | None = None) -> bool:
        """Count the request in its partner's window (:class:`RateLimited` over the limit) and
        take its claim: False when another request holds it."""
        window = f"{self.prefix}rate:{partner_id}:{int(self.clock().timestamp())}"
        admission: _Admission = ((window,), (str(self.limit_per_second),))
        if claim is not None:
            admission = (
                (window, claim.key),
                (str(self.limit_per_second), claim.value, str(claim.ttl_seconds)),
            )
        answer = await self.admissions(admission)
        if answer == 0:
            raise RateLimited
        return answer == 2

    async def _admit_all(self, admissions: list[_Admission]) -> list[int | Exception]:
        """Run ``_ADMIT`` for each admission in one pipeline (EVALSHA each: a script in a
        redis-py pipeline would cost a SCRIPT EXISTS round trip every time)."""
        answers = await self._evalsha_all(admissions)
        lost = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if lost:  # Redis restarted or flushed its scripts: those did not run; load and rerun
            rerun: list[int | Exception]
            try:
                await self.redis.script_load(self._admit.script)
                rerun = await self._evalsha_all([admissions[n] for n in lost])
            except RedisError as error:  # the others' answers (claims taken) still stand
                rerun = [error] * len(lost)
            for n, answer in zip(lost, rerun, strict=True):
                answers[n] = answer
        return answers

    async def _evalsha_all(self, admissions: list[_Admission]) -> list[int | Exception]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in admissions:
                pipe.evalsha(self._admit.sha, len(keys), *keys, *args)
            answers: list[int | Exception] = await pipe.execute(raise_on_error=False)
        return answers

    async def release(self, claim: Claim) -> None:
        await self._release(keys=[claim.key], args=[claim.value])
