"""S1-S6 and S10: many signed clients racing on one member, one key or one hold, over HTTP
against the served API. S1, S2 and S5 run on SQLite too (S16)."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter
from datetime import datetime

import pytest

from coalition import db
from coalition.jobs import sweep_expired_holds
from coalition.service import Ledger
from coalition.settings import Settings
from tests.conftest import DATABASE_URL
from tests.reliability.client import Partner, balance, enrol, now, slug
from tests.reliability.conftest import Onboard
from tests.reliability.figures import Figures


async def journal_size() -> tuple[int, int]:
    rows = await db.fetch(
        "SELECT (SELECT count(*) FROM entries) AS entries, (SELECT count(*) FROM postings) AS p"
    )
    return int(rows[0]["entries"]), int(rows[0]["p"])


async def entries_with_key(partner: Partner, key: str) -> int:
    rows = await db.fetch(
        "SELECT count(*) AS n FROM entries WHERE partner_id = {} AND idempotency_key = {}",
        partner.id,
        key,
    )
    return int(rows[0]["n"])


def redeem(member_id: str, points: int, **extra: object) -> dict[str, object]:
    return {"member_id": member_id, "order_ref": f"o-{secrets.token_hex(4)}", "points": points}


@pytest.mark.sqlite
@pytest.mark.scenario("S1")
async def test_s1_200_concurrent_redemptions_on_one_member(
    partner: Onboard, figures: Figures
) -> None:
    issuer, shop = await partner("issuer"), await partner("shop")
    member = await enrol(issuer, 1000)
    answers = await asyncio.gather(
        *(shop.post_until_final("/v1/redemptions", redeem(member, 10)) for _ in range(200))
    )
    outcomes = Counter(slug(a) for a in answers)
    assert outcomes == Counter({"ok": 100, "insufficient-points": 100})
    assert await balance(shop, member) == (0, 0)

    # Random amounts 1-50: whatever succeeds sums to at most what the member had.
    member = await enrol(issuer, 1000)
    amounts = [random.randint(1, 50) for _ in range(200)]
    answers = await asyncio.gather(
        *(shop.post_until_final("/v1/redemptions", redeem(member, n)) for n in amounts)
    )
    redeemed = sum(n for n, a in zip(amounts, answers, strict=True) if a.status_code == 201)
    refused = Counter(slug(a) for a in answers if a.status_code != 201)
    assert set(refused) <= {"insufficient-points"}
    assert redeemed <= 1000
    assert await balance(shop, member) == (1000 - redeemed, 0)
    successes = sum(1 for a in answers if a.status_code == 201)
    figures.acknowledged_checked = 100 + successes
    figures.record(Counter(), random_redeemed=redeemed, random_successes=successes)


@pytest.mark.sqlite
@pytest.mark.scenario("S2")
async def test_s2_one_redemption_sent_50_times_during_and_after(
    partner: Onboard, figures: Figures
) -> None:
    issuer, shop = await partner("issuer"), await partner("shop")
    member = await enrol(issuer, 1000)
    key, body = f"dup-{secrets.token_hex(4)}", redeem(member, 30)
    during = await asyncio.gather(*(shop.post("/v1/redemptions", body, key=key) for _ in range(50)))
    after = await asyncio.gather(*(shop.post("/v1/redemptions", body, key=key) for _ in range(50)))

    created = [a for a in during if a.status_code == 201]
    first = [a for a in created if "Idempotent-Replayed" not in a.headers]
    assert len(first) == 1, Counter(slug(a) for a in during)
    others = Counter(slug(a) for a in during if a.status_code != 201)
    assert set(others) <= {"idempotency-in-progress"}, others
    assert all(a.headers.get("Idempotent-Replayed") == "true" for a in created if a is not first[0])
    for replay in after:
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert {a.content for a in created + after} == {first[0].content}  # byte-identical
    assert await entries_with_key(shop, key) == 1
    assert await balance(shop, member) == (970, 0)
    figures.acknowledged_checked = 1
    figures.record(Counter(), in_flight_409=others["idempotency-in-progress"])


@pytest.mark.scenario("S3")
async def test_s3_a_stored_key_resent_with_one_field_changed(
    partner: Onboard, figures: Figures
) -> None:
    issuer, shop = await partner("issuer"), await partner("shop")
    member, other = await enrol(issuer, 1000), await enrol(issuer, 1000)
    key, body = "reused-key", redeem(member, 30)
    stored = await shop.post_until_final("/v1/redemptions", body, key=key)
    assert stored.status_code == 201
    before = await journal_size()
    variants = [
        ("/v1/redemptions", body | {"member_id": other}),
        ("/v1/redemptions", body | {"points": 31}),
        ("/v1/redemptions", body | {"order_ref": "changed"}),
        ("/v1/earn", {"member_id": member, "order_ref": "x", "points": 30, "reason": "r"}),
    ]
    for path, changed in variants:
        answers = await asyncio.gather(*(shop.post(path, changed, key=key) for _ in range(5)))
        assert {(a.status_code, slug(a)) for a in answers} == {(422, "idempotency-key-reused")}
    assert await journal_size() == before
    assert await balance(shop, member) == (970, 0)
    figures.acknowledged_checked = 1


@pytest.mark.scenario("S4")
async def test_s4_a_refusal_is_remembered_for_its_key(partner: Onboard, figures: Figures) -> None:
    issuer, shop = await partner("issuer"), await partner("shop")
    member = await enrol(issuer, 10)
    key, body = "too-early", redeem(member, 50)
    refused = await shop.post_until_final("/v1/redemptions", body, key=key)
    assert (refused.status_code, slug(refused)) == (422, "insufficient-points")
    earned = await issuer.post_until_final(
        "/v1/earn", {"member_id": member, "order_ref": "more", "points": 100, "reason": "bonus"}
    )
    assert earned.status_code == 201
    retried = await shop.post_until_final("/v1/redemptions", body, key=key)
    assert (retried.status_code, slug(retried)) == (422, "insufficient-points")
    assert retried.headers["Idempotent-Replayed"] == "true"
    fresh = await shop.post_until_final("/v1/redemptions", body, key="after-earning")
    assert fresh.status_code == 201
    assert await balance(shop, member) == (60, 0)
    figures.acknowledged_checked = 2


async def sweeper() -> int:
    return await sweep_expired_holds(Ledger(Settings(database_url=DATABASE_URL), now), "rel-sweep")


async def sweeper_at(deadline: datetime) -> int:
    """The sweeper's first pass after the deadline (a pass before it finds nothing to do, and
    under load the requests sent at the deadline can arrive after it: then this pass is the
    one resolution)."""
    await asyncio.sleep(max(0.0, (deadline - now()).total_seconds() + 0.01))
    return await sweeper()


@pytest.mark.sqlite
@pytest.mark.scenario("S5")
async def test_s5_holds_race_and_a_hold_resolves_once(partner: Onboard, figures: Figures) -> None:
    issuer, shop = await partner("issuer"), await partner("shop")
    member = await enrol(issuer, 5000)
    holds = await asyncio.gather(
        *(
            shop.post_until_final("/v1/redemptions", redeem(member, 1000) | {"mode": "hold"})
            for _ in range(6)
        )
    )
    assert Counter(slug(h) for h in holds) == Counter({"ok": 5, "insufficient-points": 1})
    assert await balance(shop, member) == (0, 5000)

    # A hold of 100 raced by 10 captures, 10 voids and the sweeper, all around its deadline.
    small = await enrol(issuer, 300)
    hold = await shop.post_until_final(
        "/v1/redemptions", redeem(small, 100) | {"mode": "hold", "hold_ttl_seconds": 2}
    )
    assert hold.status_code == 201
    hold_id = hold.json()["redemption_id"]
    deadline = datetime.fromisoformat(hold.json()["hold_expires_at"])
    await asyncio.sleep(max(0.0, (deadline - now()).total_seconds() - 0.05))
    calls = [shop.post_until_final(f"/v1/redemptions/{hold_id}/capture") for _ in range(10)]
    calls += [shop.post_until_final(f"/v1/redemptions/{hold_id}/void") for _ in range(10)]
    answers, _ = await asyncio.gather(asyncio.gather(*calls), sweeper_at(deadline))
    # The sweeper may also time out holds other scenarios left open: count this hold's only.
    swept = await db.fetch(
        "SELECT count(*) AS n FROM entries WHERE resolves_hold_id = {} AND kind = 'hold_expiry'",
        hold_id,
    )
    resolutions = sum(1 for a in answers if a.status_code == 200) + swept[0]["n"]
    assert resolutions == 1
    assert {(a.status_code, slug(a)) for a in answers if a.status_code != 200} == {
        (409, "hold-state")
    }
    rows = await db.fetch("SELECT count(*) AS n FROM entries WHERE resolves_hold_id = {}", hold_id)
    assert rows[0]["n"] == 1

    # Past its deadline a hold cannot be captured, even before any sweeper has run.
    late = await enrol(issuer, 300)
    hold = await shop.post_until_final(
        "/v1/redemptions", redeem(late, 100) | {"mode": "hold", "hold_ttl_seconds": 1}
    )
    deadline = datetime.fromisoformat(hold.json()["hold_expires_at"])
    await asyncio.sleep(max(0.0, (deadline - now()).total_seconds() + 0.05))
    hold_id = hold.json()["redemption_id"]
    captured = await shop.post_until_final(f"/v1/redemptions/{hold_id}/capture")
    assert (captured.status_code, slug(captured)) == (409, "hold-state")

    # A voided hold cannot be captured.
    hold = await shop.post_until_final("/v1/redemptions", redeem(late, 50) | {"mode": "hold"})
    hold_id = hold.json()["redemption_id"]
    assert (await shop.post_until_final(f"/v1/redemptions/{hold_id}/void")).status_code == 200
    captured = await shop.post_until_final(f"/v1/redemptions/{hold_id}/capture")
    assert (captured.status_code, slug(captured)) == (409, "hold-state")
    assert await sweeper() >= 0  # time the late hold out too, so the audit sees it resolved
    figures.acknowledged_checked = 5 + 1
    figures.record(Counter(), resolved_by="sweeper" if swept[0]["n"] else "partner")


@pytest.mark.scenario("S6")
async def test_s6_partial_capture_and_over_capture(partner: Onboard, figures: Figures) -> None:
    issuer, shop = await partner("issuer"), await partner("shop")
    member = await enrol(issuer, 500)
    hold = await shop.post_until_final("/v1/redemptions", redeem(member, 100) | {"mode": "hold"})
    captured = await shop.post_until_final(
        f"/v1/redemptions/{hold.json()['redemption_id']}/capture", {"points": 60}
    )
    assert captured.status_code == 200 and captured.json()["points"] == 60
    assert await balance(shop, member) == (440, 0)
    hold = await shop.post_until_final("/v1/redemptions", redeem(member, 40) | {"mode": "hold"})
    over = await shop.post_until_final(
        f"/v1/redemptions/{hold.json()['redemption_id']}/capture", {"points": 50}
    )
    assert (over.status_code, slug(over)) == (409, "hold-state")
    assert await balance(shop, member) == (400, 40)
    figures.acknowledged_checked = 3


@pytest.mark.scenario("S10")
async def test_s10_concurrent_full_reversals_of_one_earn(
    partner: Onboard, figures: Figures
) -> None:
    issuer = await partner("issuer")
    member = await enrol(issuer)
    earned = await issuer.post_until_final(
        "/v1/earn", {"member_id": member, "order_ref": "e", "points": 500, "reason": "r"}
    )
    path = f"/v1/transactions/{earned.json()['transaction_id']}/reversals"
    answers = await asyncio.gather(
        *(issuer.post_until_final(path, {"reason": "returned"}) for _ in range(20))
    )
    assert Counter(slug(a) for a in answers) == Counter({"ok": 1, "reversal-exceeds-original": 19})
    over = await issuer.post_until_final(path, {"reason": "again", "points": 1})
    assert (over.status_code, slug(over)) == (422, "reversal-exceeds-original")
    assert await balance(issuer, member) == (0, 0)

    # Partial reversals never add up past the original.
    earned = await issuer.post_until_final(
        "/v1/earn", {"member_id": member, "order_ref": "f", "points": 100, "reason": "r"}
    )
    path = f"/v1/transactions/{earned.json()['transaction_id']}/reversals"
    answers = await asyncio.gather(
        *(issuer.post_until_final(path, {"reason": "part", "points": 30}) for _ in range(5))
    )
    assert Counter(slug(a) for a in answers) == Counter({"ok": 3, "reversal-exceeds-original": 2})
    assert await balance(issuer, member) == (10, 0)
    figures.acknowledged_checked = 1 + 3
