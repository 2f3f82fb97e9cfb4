"""Every row of the wire contract's error table: the exact status and problem type, the 401
headers, and nothing written to the ledger."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coalition import db, program
from coalition.ledger import to_us
from partners import keys
from tests.integration.api_support import ApiWorld, api_settings, make_api_world
from tests.partner_client import header
from tests.support import Coalition


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == status, body
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Signature")
        assert '"@method" "@authority" "@path" "@query"' in response.headers["accept-signature"]
    return body


async def ledger_rows() -> tuple[int, ...]:
    row = await db.fetch_one(
        "SELECT (SELECT COUNT(*) FROM entries) AS e, (SELECT COUNT(*) FROM postings) AS p,"
        " (SELECT COUNT(*) FROM members) AS m, (SELECT COUNT(*) FROM lots) AS l"
    )
    assert row is not None
    return tuple(row.values())


@pytest.fixture
async def member(api: ApiWorld) -> str:
    return await api.world.member(100)


async def test_signature_failures_are_401_with_their_own_type(api: ApiWorld, member: str) -> None:
    before = await ledger_rows()
    earn = {"member_id": member, "order_ref": "o", "points": 5, "reason": "r"}
    client = api.cafe

    unsigned = await api.http.post("/v1/earn", json=earn, headers={"Idempotency-Key": "k" * 10})
    problem(unsigned, 401, "signature-missing")

    two = client.signed("POST", "/v1/earn", earn)
    for name in ("Signature-Input", "Signature"):
        two.headers[name] = header(two, name) + ", " + header(two, name).replace("pyhms", "b")
    problem(await client.send(two), 401, "signature-malformed")

    odd = client.signed("POST", "/v1/earn", earn)
    odd.headers["Signature-Input"] = header(odd, "Signature-Input") + ';colour="blue"'
    problem(await client.send(odd), 401, "signature-malformed")

    uncovered = client.signed(
        "POST", "/v1/earn", earn, components=("@method", "@authority", "@path", "@query")
    )
    problem(await client.send(uncovered), 401, "signature-coverage")

    old = client.signed(
        "POST", "/v1/earn", earn, created=api.world.clock() - timedelta(seconds=301)
    )
    problem(await client.send(old), 401, "signature-expired")
    future = client.signed(
        "POST", "/v1/earn", earn, created=api.world.clock() + timedelta(seconds=31)
    )
    problem(await client.send(future), 401, "signature-expired")

    stranger = client.signed("POST", "/v1/earn", earn, keyid="no-such-key")
    problem(await client.send(stranger), 401, "key-unknown")

    forged = client.signed("POST", "/v1/earn", earn, private=Ed25519PrivateKey.generate())
    problem(await client.send(forged), 401, "signature-invalid")

    swapped = client.signed("POST", "/v1/earn", earn)
    swapped.body = json.dumps({**earn, "points": 500}).encode()  # body swapped after signing
    swapped.headers["Content-Length"] = str(len(swapped.body))
    problem(await client.send(swapped), 400, "digest-invalid")

    assert await ledger_rows() == before


async def test_window_edges_are_accepted(api: ApiWorld, member: str) -> None:
    now = api.world.clock()
    for created in (now - timedelta(seconds=300), now + timedelta(seconds=30)):
        response = await api.cafe.get(f"/v1/members/{member}", created=created)
        assert response.status_code == 200, response.text


async def test_a_nonce_is_single_use_on_get(api: ApiWorld, member: str) -> None:
    request = api.cafe.signed("GET", f"/v1/members/{member}", nonce="once-only")
    assert (await api.cafe.send(request)).status_code == 200
    problem(await api.cafe.send(request), 401, "signature-replayed")
    empty = api.cafe.signed("GET", f"/v1/members/{member}", nonce="")  # a nonce all the same
    assert (await api.cafe.send(empty)).status_code == 200
    problem(await api.cafe.send(empty), 401, "signature-replayed")
    # Another key may use the same nonce value.
    assert (await api.fuel.get(f"/v1/members/{member}", nonce="once-only")).status_code == 200


@pytest.mark.parametrize("points", [0, -1, 2**63, 1.5, "10", None, True], ids=lambda p: repr(p))
async def test_bad_numbers_are_invalid_request_and_never_stored(
    api: ApiWorld, member: str, points: object
) -> None:
    before = await ledger_rows()
    response = await api.fuel.post(
        "/v1/redemptions", {"member_id": member, "order_ref": "o", "points": points}
    )
    problem(response, 400, "invalid-request")
    assert await ledger_rows() == before


async def test_bodies_are_strict(api: ApiWorld, member: str) -> None:
    before = await ledger_rows()
    cases = [
        {"member_id": member, "order_ref": "o", "points": 5, "reason": "r", "extra": 1},
        {"member_id": member, "order_ref": "o"},
        {"member_id": member, "order_ref": "o", "points": 5},
        {"member_id": member, "order_ref": "x" * 129, "points": 5, "reason": "r"},
        {"member_id": member, "order_ref": "o", "amount": {"amount_minor": 100, "currency": "eur"}},
    ]
    for body in cases:
        problem(await api.cafe.post("/v1/earn", body), 400, "invalid-request")
    problem(await api.cafe.post("/v1/earn", b"not json"), 400, "invalid-request")
    assert await ledger_rows() == before


async def test_business_refusals(api: ApiWorld, member: str) -> None:
    w = api.world
    problem(await api.cafe.get("/v1/members/mem_nobody"), 404, "not-found")
    problem(await api.fuel.post("/v1/redemptions/txn_nothing/capture"), 404, "not-found")
    problem(
        await api.fuel.post(
            "/v1/redemptions", {"member_id": member, "order_ref": "o", "points": 101}
        ),
        422,
        "insufficient-points",
    )
    problem(
        await api.cafe.post(
            "/v1/earn",
            {
                "member_id": member,
                "order_ref": "o",
                "amount": {"amount_minor": 500, "currency": "USD"},
            },
        ),
        422,
        "earn-rejected",
    )
    problem(
        await api.cafe.post(
            "/v1/earn",
            {"member_id": member, "order_ref": "o", "points": 100_001, "reason": "too generous"},
        ),
        422,
        "earn-rejected",
    )
    hold = await api.fuel.post(
        "/v1/redemptions", {"member_id": member, "order_ref": "h", "points": 40, "mode": "hold"}
    )
    hold_id = hold.json()["redemption_id"]
    problem(
        await api.fuel.post(f"/v1/redemptions/{hold_id}/capture", {"points": 41}), 409, "hold-state"
    )
    assert (await api.fuel.post(f"/v1/redemptions/{hold_id}/void")).status_code == 200
    problem(await api.fuel.post(f"/v1/redemptions/{hold_id}/capture"), 409, "hold-state")
    earn = await api.cafe.post(
        "/v1/earn", {"member_id": member, "order_ref": "e", "points": 10, "reason": "r"}
    )
    problem(
        await api.cafe.post(
            f"/v1/transactions/{earn.json()['transaction_id']}/reversals",
            {"points": 11, "reason": "too much"},
        ),
        422,
        "reversal-exceeds-original",
    )
    await program.set_partner_status(w.fuel, "suspended")
    try:
        problem(
            await api.fuel.post(
                "/v1/redemptions", {"member_id": member, "order_ref": "o", "points": 1}
            ),
            403,
            "forbidden",
        )
        # Reads stay open to a suspended partner; only writes are refused.
        assert (await api.fuel.get(f"/v1/members/{member}")).status_code == 200
    finally:
        await program.set_partner_status(w.fuel, "active")


async def test_idempotency_key_rules(api: ApiWorld, member: str) -> None:
    body = {"member_id": member, "order_ref": "o", "points": 10}
    for bad in ("short", "has space in it", "x" * 256, '"unbalanced'):
        response = await api.fuel.post("/v1/redemptions", body, headers={"Idempotency-Key": bad})
        problem(response, 400, "idempotency-key-invalid")
    missing = api.fuel.signed(
        "POST",
        "/v1/redemptions",
        body,
        components=("@method", "@authority", "@path", "@query", "content-type"),
    )
    del missing.headers["Idempotency-Key"]
    problem(await api.fuel.send(missing), 400, "idempotency-key-invalid")

    first = await api.fuel.post("/v1/redemptions", body, key='"redeem-0001"')
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await api.fuel.post("/v1/redemptions", body, key="redeem-0001")  # bare form, same key
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    changed = await api.fuel.post("/v1/redemptions", {**body, "points": 11}, key="redeem-0001")
    problem(changed, 422, "idempotency-key-reused")
    other_path = await api.fuel.post(
        "/v1/earn",
        {"member_id": member, "order_ref": "o", "points": 10, "reason": "r"},
        key="redeem-0001",
    )
    problem(other_path, 422, "idempotency-key-reused")


async def test_a_key_in_flight_gets_409_with_retry_after(api: ApiWorld, member: str) -> None:
    before = await ledger_rows()
    token = await api.app.state.redis.set(
        f"{api.settings.redis_key_prefix}inflight:{api.fuel.partner_id}:busy-key-1", "x", ex=30
    )
    assert token
    response = await api.fuel.post(
        "/v1/redemptions", {"member_id": member, "order_ref": "o", "points": 10}, key="busy-key-1"
    )
    problem(response, 409, "idempotency-in-progress")
    assert response.headers["retry-after"] == "1"
    assert await ledger_rows() == before


async def test_remembered_rejection_is_replayed(api: ApiWorld, member: str) -> None:
    body = {"member_id": member, "order_ref": "o", "points": 150}
    first = await api.fuel.post("/v1/redemptions", body, key="s4-key-0001")
    problem(first, 422, "insufficient-points")
    assert "idempotent-replayed" not in first.headers  # the first answer is not a replay
    await api.world.ledger.earn(
        api.world.cause(api.world.cafe), member_id=member, order_ref="e", points=100, reason="r"
    )
    again = await api.fuel.post("/v1/redemptions", body, key="s4-key-0001")
    problem(again, 422, "insufficient-points")
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert (await api.fuel.post("/v1/redemptions", body, key="s4-key-0002")).status_code == 201


async def test_partner_b_cannot_touch_partner_a_objects(api: ApiWorld, member: str) -> None:
    earn = await api.cafe.post(
        "/v1/earn", {"member_id": member, "order_ref": "e", "points": 10, "reason": "r"}
    )
    hold = await api.cafe.post(
        "/v1/redemptions", {"member_id": member, "order_ref": "h", "points": 20, "mode": "hold"}
    )
    earn_id, hold_id = earn.json()["transaction_id"], hold.json()["redemption_id"]
    before = await ledger_rows()
    for response in [
        await api.fashion.get(f"/v1/transactions/{earn_id}"),
        await api.fashion.get(f"/v1/transactions/{hold_id}"),
        await api.fashion.post(f"/v1/redemptions/{hold_id}/capture"),
        await api.fashion.post(f"/v1/redemptions/{hold_id}/void"),
        await api.fashion.post(f"/v1/transactions/{earn_id}/reversals", {"reason": "mine?"}),
    ]:
        body = problem(response, 403, "forbidden")
        assert earn_id not in json.dumps(body) or "belongs" in json.dumps(body)
    history = await api.fashion.get(f"/v1/members/{member}/transactions")
    assert history.json()["transactions"] == []  # B sees none of A's history
    assert await ledger_rows() == before


async def test_body_size_limit_is_413(api: ApiWorld, member: str) -> None:
    huge = {"member_id": member, "order_ref": "o", "points": 5, "reason": "x" * 70_000}
    problem(await api.cafe.post("/v1/earn", huge), 413, "content-too-large")


@pytest.fixture
async def limited(world: Coalition, database: str) -> AsyncIterator[ApiWorld]:
    async for built in make_api_world(world, api_settings(database, rate_limit_per_second=3)):
        yield built


async def test_rate_limit_is_429_with_retry_after(limited: ApiWorld) -> None:
    member = await limited.world.member()
    statuses = [(await limited.cafe.get(f"/v1/members/{member}")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = await limited.cafe.get(f"/v1/members/{member}")
    problem(response, 429, "rate-limited")
    assert response.headers["retry-after"] == "1"
    assert (await limited.fashion.get(f"/v1/members/{member}")).status_code == 200  # per partner
    limited.world.clock.advance(seconds=1)
    assert (await limited.cafe.get(f"/v1/members/{member}")).status_code == 200


async def test_writes_count_against_the_rate_and_a_refused_one_can_be_retried(
    limited: ApiWorld,
) -> None:
    """A write is admitted (counted, its key marked in flight) just before it runs: over the
    limit it is refused with nothing written and no marker left, so its retry runs."""
    member = await limited.world.member()
    earn = {"member_id": member, "order_ref": "o", "points": 5, "reason": "r"}
    statuses = [
        (await limited.cafe.post("/v1/earn", earn, key=f"rate-key-{n}")).status_code
        for n in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    before = await ledger_rows()
    problem(await limited.cafe.post("/v1/earn", earn, key="rate-key-3"), 429, "rate-limited")
    assert await ledger_rows() == before
    limited.world.clock.advance(seconds=1)
    retried = await limited.cafe.post("/v1/earn", earn, key="rate-key-3")
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert await ledger_rows() != before


async def test_a_read_over_the_rate_does_not_use_up_its_nonce(limited: ApiWorld) -> None:
    member = await limited.world.member()
    for _ in range(3):
        assert (await limited.cafe.get(f"/v1/members/{member}")).status_code == 200
    request = limited.cafe.signed("GET", f"/v1/members/{member}", nonce="after-429")
    problem(await limited.cafe.send(request), 429, "rate-limited")
    limited.world.clock.advance(seconds=1)
    assert (await limited.cafe.send(request)).status_code == 200
    problem(await limited.cafe.send(request), 401, "signature-replayed")


async def test_a_key_is_free_again_at_once_after_a_5xx(
    api: ApiWorld, member: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    earn = {"member_id": member, "order_ref": "o", "points": 5, "reason": "r"}
    with monkeypatch.context() as patched:
        patched.setattr(db, "WRITE_DEADLINE_SECONDS", -1.0)  # every write is "too slow"
        failed = await api.cafe.post("/v1/earn", earn, key="after-5xx-1")
    problem(failed, 503, "service-unavailable")
    retried = await api.cafe.post("/v1/earn", earn, key="after-5xx-1")
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    marker = f"{api.settings.redis_key_prefix}inflight:{api.cafe.partner_id}:after-5xx-1"
    assert await api.app.state.redis.exists(marker)  # left to expire: the record answers now
    again = await api.cafe.post("/v1/earn", earn, key="after-5xx-1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == retried.content


async def test_a_write_refused_before_it_runs_leaves_its_key_free(
    api: ApiWorld, member: str
) -> None:
    bad = await api.cafe.post("/v1/earn", {"member_id": member, "points": "5"}, key="free-key-1")
    problem(bad, 400, "invalid-request")
    earn = {"member_id": member, "order_ref": "o", "points": 5, "reason": "r"}
    assert (await api.cafe.post("/v1/earn", earn, key="free-key-1")).status_code == 201


async def test_key_rotation_and_immediate_revocation(api: ApiWorld, member: str) -> None:
    w, now = api.world, to_us(api.world.clock())
    second = Ed25519PrivateKey.generate()
    await keys.add_key(w.cafe, second.public_key(), keyid=f"{w.cafe}-second", now_us=now)
    with pytest.raises(Exception, match="2 active keys"):
        await keys.add_key(
            w.cafe, Ed25519PrivateKey.generate().public_key(), keyid="third", now_us=now
        )
    old = await api.cafe.get(f"/v1/members/{member}")
    new = await api.cafe.get(f"/v1/members/{member}", keyid=f"{w.cafe}-second", private=second)
    assert (old.status_code, new.status_code) == (200, 200)
    await keys.revoke_key(api.cafe.keyid, now)
    problem(await api.cafe.get(f"/v1/members/{member}"), 401, "key-unknown")
    assert (
        await api.cafe.get(f"/v1/members/{member}", keyid=f"{w.cafe}-second", private=second)
    ).status_code == 200
