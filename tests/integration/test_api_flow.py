"""The partner API end to end, signed by an independent RFC 9421 library, on the real app."""

from __future__ import annotations

from typing import Any

import pytest

from coalition import db
from tests.integration.api_support import ApiWorld
from tests.support import card_number


async def test_enrol_earn_redeem_hold_capture_reverse(api: ApiWorld) -> None:
    card = card_number()
    enrolled = await api.cafe.post("/v1/members", {"card_number": card})
    assert enrolled.status_code == 201, enrolled.text
    member = enrolled.json()["member_id"]

    earned = await api.cafe.post(
        "/v1/earn",
        {
            "member_id": member,
            "order_ref": "A-1",
            "amount": {"amount_minor": 12550, "currency": "EUR"},
        },
    )
    assert earned.status_code == 201, earned.text
    assert earned.json()["points"] == 125 and earned.json()["available_points"] == 125

    api.world.clock.advance(seconds=1)
    redeemed = await api.fashion.post(
        "/v1/redemptions", {"member_id": member, "order_ref": "B-1", "points": 25}
    )
    assert redeemed.status_code == 201, redeemed.text
    body = redeemed.json()
    assert body["status"] == "captured" and body["value"] == {"amount_minor": 25, "currency": "EUR"}

    api.world.clock.advance(seconds=1)
    held = await api.fashion.post(
        "/v1/redemptions", {"member_id": member, "order_ref": "B-2", "points": 60, "mode": "hold"}
    )
    assert held.status_code == 201 and held.json()["status"] == "held"
    hold_id = held.json()["redemption_id"]
    api.world.clock.advance(seconds=1)
    captured = await api.fashion.post(f"/v1/redemptions/{hold_id}/capture", {"points": 50})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured" and captured.json()["points"] == 50

    api.world.clock.advance(seconds=1)
    reversed_ = await api.fashion.post(
        f"/v1/transactions/{hold_id}/reversals", {"points": 20, "reason": "refund"}
    )
    assert reversed_.status_code == 201, reversed_.text
    assert reversed_.json()["points"] == 20

    balance = await api.cafe.get(f"/v1/members/{member}")
    assert balance.status_code == 200, balance.text
    assert balance.json()["available_points"] == 125 - 25 - 50 + 20
    by_card = await api.fuel.get(f"/v1/members/by-card/{card}")
    assert by_card.json()["member_id"] == member

    detail = await api.fashion.get(f"/v1/transactions/{hold_id}")
    assert detail.status_code == 200
    assert [r["points"] for r in detail.json()["reversals"]] == [20]
    history = await api.fashion.get(f"/v1/members/{member}/transactions?limit=10")
    assert [t["type"] for t in history.json()["transactions"]] == [
        "redemption_reversal",
        "capture",
        "hold",
        "redeem",
    ]
    cafe_history = await api.cafe.get(f"/v1/members/{member}/transactions")
    assert [t["type"] for t in cafe_history.json()["transactions"]] == ["earn"]


async def test_a_replay_reads_the_database_once(
    api: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idempotency record comes with the signing key (one statement): a retried request is
    answered from it without a lookup of its own, and a first request finds none there."""
    enrolled = await api.cafe.post("/v1/members", {"card_number": card_number()})
    member = enrolled.json()["member_id"]
    statements: list[str] = []
    fetch = db.fetch

    async def counted(sql: str, *args: Any) -> list[dict[str, Any]]:
        statements.append(sql)
        return await fetch(sql, *args)

    monkeypatch.setattr(db, "fetch", counted)
    body = {"member_id": member, "order_ref": "R-1", "points": 10, "reason": "welcome"}
    first = await api.cafe.post("/v1/earn", body, key="replay-0001")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert not any("FROM idempotency_records" in s for s in statements), statements
    statements.clear()
    again = await api.cafe.post("/v1/earn", body, key="replay-0001")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert len(statements) == 1 and "idempotency_records" in statements[0], statements
