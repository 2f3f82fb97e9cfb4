"""Statements over the partner API: each partner sees its own, in three verifiable formats."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from settlement.verify import verify_csv, verify_file, verify_json
from tests.integration.api_support import ApiWorld, api_settings, make_api_world
from tests.integration.settlement_support import STATEMENT_KEY, settler_for
from tests.integration.test_settlement import build_worked_example, fresh_date
from tests.support import Coalition


@pytest.fixture
async def settled(world: Coalition, database: str) -> AsyncIterator[tuple[ApiWorld, str]]:
    day = fresh_date()
    await build_worked_example(world, day)
    assert (await settler_for(world).settle(day)).status == "published"
    settings = api_settings(database, statement_key_path=str(STATEMENT_KEY))
    async for api in make_api_world(world, settings):
        yield api, day.isoformat()


async def test_partners_download_and_verify_their_own_statements(
    settled: tuple[ApiWorld, str],
) -> None:
    api, day = settled
    jwks = (await api.http.get("/v1/keys")).json()  # unsigned
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["kid"].startswith("stmt-")

    listing = await api.cafe.get(f"/v1/settlements?from={day}&to={day}")
    assert listing.status_code == 200, listing.text
    [entry] = listing.json()["settlements"]
    assert entry["net_position"] == {"amount_minor": 264, "instruction": "pay_out"}

    as_json = await api.cafe.get(f"/v1/settlements/{day}/statement")
    assert as_json.headers["content-type"].startswith("application/json")
    assert verify_json(as_json.content, jwks)["partner_id"] == api.world.cafe
    as_csv = await api.cafe.get(f"/v1/settlements/{day}/statement", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert verify_csv(as_csv.content, jwks) == entry["statement_digest"]
    as_pdf = await api.cafe.get(
        f"/v1/settlements/{day}/statement", headers={"Accept": "application/pdf"}
    )
    assert as_pdf.content.startswith(b"%PDF")
    assert verify_file(as_pdf.content, jwks).startswith(f"OK pdf statement {api.world.cafe}")

    theirs = await api.fashion.get(f"/v1/settlements/{day}/statement")
    assert verify_json(theirs.content, jwks)["partner_id"] == api.world.fashion
    missing = await api.cafe.get("/v1/settlements/1999-01-01/statement")
    assert missing.status_code == 404


async def test_void_and_capture_accept_an_empty_body(api: ApiWorld) -> None:
    member = await api.world.member(100)
    for action in ("void", "capture"):
        hold = await api.fuel.post(
            "/v1/redemptions", {"member_id": member, "order_ref": "h", "points": 10, "mode": "hold"}
        )
        done = await api.fuel.post(f"/v1/redemptions/{hold.json()['redemption_id']}/{action}")
        assert done.status_code == 200, done.text


async def test_an_impossible_date_is_invalid_request_not_a_crash(api: ApiWorld) -> None:
    """Found by schemathesis: 0000-00-00 matches the path pattern and used to answer 500."""
    for day in ("0000-00-00", "2026-02-30", "2026-13-01"):
        answer = await api.cafe.get(f"/v1/settlements/{day}/statement")
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "/problems/invalid-request"
    answer = await api.cafe.get("/v1/settlements?to=0001-01-01")  # 30 days before: no such date
    assert answer.status_code == 400, answer.text
