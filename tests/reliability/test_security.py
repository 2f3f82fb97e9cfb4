"""Security against the served API: another partner's objects on every endpoint, key and
partner states, replays, the time window, bodies swapped after signing, and the server's logs
searched for anything secret or private that the requests carried."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import Counter
from datetime import timedelta

import pytest

from coalition import program
from coalition.ledger import to_us
from partners import keys
from tests.partner_client import header
from tests.reliability.client import Partner, balance, enrol, now, slug
from tests.reliability.conftest import Onboard
from tests.reliability.figures import Figures
from tests.reliability.stack import Stack
from tests.support import card_number

REVOCATION_BOUND_SECONDS = 5.0  # docs/operations.md: how soon a revoked key stops working

# Strings that must never reach a log line, collected as the module's requests send them.
CANARIES: list[str] = []


def canary(label: str) -> str:
    value = f"{label}-{secrets.token_hex(6)}"
    CANARIES.append(value)
    return value


async def eventually_refused(partner: Partner, expected: tuple[int, str]) -> None:
    """Poll until a write is refused as expected, within the documented bound."""
    deadline = time.monotonic() + REVOCATION_BOUND_SECONDS
    while True:
        answer = await partner.post("/v1/members", {})
        if (answer.status_code, slug(answer)) == expected or time.monotonic() > deadline:
            assert (answer.status_code, slug(answer)) == expected, answer.text
            return


@pytest.mark.scenario("cross-partner")
async def test_another_partners_objects_are_never_served(
    partner: Onboard, figures: Figures
) -> None:
    owner, other = await partner("owner"), await partner("other")
    ref = canary("order")
    member = await enrol(owner, 500)
    earn = await owner.post_until_final(
        "/v1/earn", {"member_id": member, "order_ref": ref, "points": 50, "reason": "r"}
    )
    hold = await owner.post_until_final(
        "/v1/redemptions", {"member_id": member, "order_ref": ref, "points": 20, "mode": "hold"}
    )
    captured = await owner.post_until_final(
        "/v1/redemptions", {"member_id": member, "order_ref": ref, "points": 10}
    )
    txn, hold_id = earn.json()["transaction_id"], hold.json()["redemption_id"]
    redemption_id = captured.json()["redemption_id"]
    attempts = [
        ("GET", f"/v1/transactions/{txn}", None),
        ("GET", f"/v1/transactions/{redemption_id}", None),
        ("GET", f"/v1/transactions/{hold_id}", None),
        ("POST", f"/v1/transactions/{txn}/reversals", {"reason": "x"}),
        ("POST", f"/v1/transactions/{txn}/reversals", {"reason": "x", "points": 1}),
        ("POST", f"/v1/transactions/{redemption_id}/reversals", {"reason": "x"}),
        ("POST", f"/v1/redemptions/{hold_id}/capture", None),
        ("POST", f"/v1/redemptions/{hold_id}/capture", {"points": 5}),
        ("POST", f"/v1/redemptions/{hold_id}/void", None),
    ]
    statuses = Counter[int]()
    for method, path, body in attempts:
        answer = await (other.get(path) if method == "GET" else other.post(path, body))
        statuses[answer.status_code] += 1
        assert answer.status_code in (403, 404), (path, answer.text)
        assert ref not in answer.text and member not in answer.text
    history = await other.get(f"/v1/members/{member}/transactions")
    assert history.status_code == 200 and ref not in history.text and txn not in history.text
    assert history.json()["transactions"] == []
    # The owner's objects are untouched by all of that.
    assert await balance(owner, member) == (520, 20)
    figures.record(Counter(), attempts=len(attempts) + 1, refused=dict(statuses))


@pytest.mark.scenario("key-states")
async def test_revoked_expired_and_suspended_are_refused(
    partner: Onboard, figures: Figures
) -> None:
    shop = await partner("shop")
    assert (await shop.post("/v1/members", {})).status_code == 201  # works before

    await keys.revoke_key(shop.client.keyid, to_us(now()))
    await eventually_refused(shop, (401, "key-unknown"))

    expiring = await partner("expiring")
    private = expiring.client.key
    keyid = f"{expiring.id}-short"
    start = to_us(now()) - 10**6
    await keys.add_key(
        expiring.id, private.public_key(), keyid=keyid, now_us=start, not_before_us=start,
        not_after_us=start + 2 * 10**6,
    )  # fmt: skip
    expiring.client.keyid = keyid
    await eventually_refused(expiring, (401, "key-unknown"))

    suspended = await partner("suspended")
    await program.set_partner_status(suspended.id, "suspended")
    await eventually_refused(suspended, (403, "forbidden"))  # every POST; reads keep working
    figures.record(Counter(), cases=3)


@pytest.mark.scenario("signatures")
async def test_replays_stale_signatures_and_swapped_bodies_are_refused(
    partner: Onboard, figures: Figures
) -> None:
    shop = await partner("shop")
    member = await enrol(shop, 100)
    client = shop.client

    signed = client.signed("GET", f"/v1/members/{member}", nonce="fixed-nonce-1")
    first, replay = await client.send(signed), await client.send(signed)
    assert first.status_code == 200
    assert (replay.status_code, slug(replay)) == (401, "signature-replayed")

    for created in (now() - timedelta(seconds=400), now() + timedelta(seconds=120)):
        answer = await client.send(client.signed("GET", f"/v1/members/{member}", created=created))
        assert (answer.status_code, slug(answer)) == (401, "signature-expired")

    body = {"member_id": member, "order_ref": canary("swap"), "points": 5, "reason": "r"}
    original = client.signed("POST", "/v1/earn", body)
    swapped = body | {"points": 5000}
    original.body = json.dumps(swapped).encode()
    original.headers["Content-Length"] = str(len(original.body))
    answer = await client.send(original)
    assert (answer.status_code, slug(answer)) == (400, "digest-invalid")

    resigned = client.signed("POST", "/v1/earn", body)
    resigned.body = original.body
    resigned.headers["Content-Length"] = str(len(original.body))
    digest = base64.b64encode(hashlib.sha256(original.body).digest()).decode()
    resigned.headers["Content-Digest"] = f"sha-256=:{digest}:"
    answer = await client.send(resigned)
    assert (answer.status_code, slug(answer)) == (401, "signature-invalid")

    # Another partner's keyid with our key: the signature does not verify.
    intruder = await partner("intruder")
    forged = client.signed("GET", f"/v1/members/{member}", keyid=intruder.client.keyid)
    answer = await client.send(forged)
    assert (answer.status_code, slug(answer)) == (401, "signature-invalid")
    balance = await shop.get(f"/v1/members/{member}")
    assert balance.json()["available_points"] == 100  # nothing was earned by any of it
    figures.record(Counter(), cases=6)


@pytest.mark.scenario("logs")
async def test_no_secret_or_body_reaches_the_logs(
    partner: Onboard, stack: Stack, figures: Figures
) -> None:
    shop = await partner("shop")
    card = card_number()
    CANARIES.append(card)
    enrolled = await shop.post_until_final(
        "/v1/members", {"card_number": card, "partner_member_ref": canary("ref")}
    )
    member = enrolled.json()["member_id"]
    reason, key = canary("reason"), canary("idem")
    await shop.post_until_final(
        "/v1/earn",
        {"member_id": member, "order_ref": canary("order"), "points": 5, "reason": reason},
        key=key,
    )
    signed = shop.client.signed("GET", f"/v1/members/by-card/{card}")
    await shop.client.send(signed)
    CANARIES.append(header(signed, "Signature").split(":")[1])
    bad = await shop.post("/v1/earn", {"member_id": member, "points": canary("bad-number")})
    assert bad.status_code == 400
    logs = stack.api.logs()
    assert '"status": 201' in logs or '"status":201' in logs  # the access log is there
    leaked = [c for c in CANARIES if c in logs]
    assert leaked == [], f"in the API's logs: {leaked}"
    figures.record(Counter(), log_bytes=len(logs), canaries=len(CANARIES))
