"""S9: the ledger's hypothesis state machine (tests/integration/test_ledger_model.py: earn, redeem,
hold, capture, void, timeout, reverse, expire, retry, key reuse) driven through the partner API.
Every use case is a signed HTTP request to the real app on the suite's database and Redis; the
model must agree with every answer and balance, and the auditor runs after every step.

The machine moves time by months (hold deadlines, lot expiry), so the app runs in-process on the
machine's clock (httpx's ASGI transport) rather than as the served process on the system clock.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Any, TypeVar, cast

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from coalition.errors import CoalitionError
from coalition.journal import Cause
from coalition.results import Earned, Redemption, Reversal
from coalition.service import Ledger
from coalition.settings import Settings
from tests.conftest import DATABASE_URL
from tests.integration import test_ledger_model
from tests.integration.api_support import api_settings, make_api_world
from tests.partner_client import PartnerClient
from tests.reliability.figures import Figures
from tests.reliability.stack import Stack
from tests.support import Coalition, ManualClock, make_coalition

R = TypeVar("R")
SENT: Counter[str] = Counter()


class HttpLedger:
    """The Ledger's use cases, answered by the partner API. Jobs (the hold sweep, expiry) and
    settings still come from the real ledger: they are not partner operations."""

    def __init__(self, ledger: Ledger, clients: dict[str, PartnerClient]) -> None:
        self._ledger, self._clients = ledger, clients

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def _send(self, cause: Cause, path: str, body: Any, result: type[R]) -> tuple[R, bool]:
        assert cause.partner_id is not None
        client = self._clients[cause.partner_id]
        key = cause.idempotency_key or f"model-{secrets.token_hex(8)}"
        answer = await client.post(path, body, key=key)
        SENT[str(answer.status_code)] += 1
        replayed = answer.headers.get("Idempotent-Replayed") == "true"
        if answer.is_success:
            return msgspec.json.decode(answer.content, type=result), replayed
        assert answer.status_code < 500, answer.text
        problem = answer.json()
        slug = problem["type"].rsplit("/", 1)[-1]
        record = {"slug": slug, "detail": problem["detail"], "fields": problem.get("fields") or {}}
        raise CoalitionError.from_record(msgspec.json.encode(record))

    async def earn(self, cause: Cause, *, member_id: str, order_ref: str, points: int,
                   reason: str, **_: Any) -> tuple[Earned, bool]:  # fmt: skip
        body = {"member_id": member_id, "order_ref": order_ref, "points": points, "reason": reason}
        return await self._send(cause, "/v1/earn", body, Earned)

    async def redeem(self, cause: Cause, *, member_id: str, order_ref: str, points: int,
                     hold: bool = False, hold_ttl_seconds: int | None = None,
                     **_: Any) -> tuple[Redemption, bool]:  # fmt: skip
        body: dict[str, Any] = {"member_id": member_id, "order_ref": order_ref, "points": points}
        if hold:
            body |= {"mode": "hold", "hold_ttl_seconds": hold_ttl_seconds}
        return await self._send(cause, "/v1/redemptions", body, Redemption)

    async def capture(
        self, cause: Cause, redemption_id: str, points: int | None = None
    ) -> tuple[Redemption, bool]:
        body = {} if points is None else {"points": points}
        return await self._send(cause, f"/v1/redemptions/{redemption_id}/capture", body, Redemption)

    async def void(self, cause: Cause, redemption_id: str) -> tuple[Redemption, bool]:
        return await self._send(cause, f"/v1/redemptions/{redemption_id}/void", {}, Redemption)

    async def reverse(self, cause: Cause, transaction_id: str, *, points: int | None = None,
                      reason: str, **_: Any) -> tuple[Reversal, bool]:  # fmt: skip
        body: dict[str, Any] = {"reason": reason}
        if points is not None:
            body["points"] = points
        return await self._send(cause, f"/v1/transactions/{transaction_id}/reversals", body,
                                Reversal)  # fmt: skip


class HttpMachine(test_ledger_model.LedgerMachine):
    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, LOOP).result(timeout=60)


LOOP: asyncio.AbstractEventLoop


@pytest.mark.scenario("S9")
async def test_s9_the_api_agrees_with_the_model(
    stack: Stack, figures: Figures, long_mode: bool
) -> None:
    global LOOP
    LOOP = asyncio.get_running_loop()
    clock = ManualClock()
    ledger = Ledger(Settings(database_url=DATABASE_URL), clock)
    world = await make_coalition(ledger, clock)
    start = clock.at
    settings_ = api_settings(DATABASE_URL, redis_url=stack.redis_url)
    async for api in make_api_world(world, settings_):
        clients = {c.partner_id: c for c in (api.cafe, api.fashion, api.fuel)}
        # HttpLedger stands in for the Ledger: its use cases over HTTP, the rest delegated
        http_ledger = cast(Ledger, HttpLedger(ledger, clients))
        over_http = Coalition(http_ledger, clock, world.cafe, world.fashion, world.fuel)
        test_ledger_model.WORLD = over_http

        def fresh_machine() -> HttpMachine:
            clock.at = start  # every example starts at the same moment with new members
            return HttpMachine()

        machine_settings = settings(
            max_examples=500 if long_mode else 50, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )  # fmt: skip
        # run_state_machine_as_test takes any factory (its docstring) but is annotated type[...]
        await asyncio.to_thread(
            run_state_machine_as_test,
            fresh_machine,  # type: ignore[arg-type]
            settings=machine_settings,
        )
    assert SENT["201"] > 0 and sum(SENT.values()) > 100
    figures.record(SENT)
    figures.audit = "OK after every step"
