"""Settlement on the real database: a worked example computed by hand, cutoffs, determinism,
signatures, and a corrupted ledger that must not publish."""

from __future__ import annotations

import itertools
import json
import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coalition import db
from coalition.jobs import expire_lots
from settlement import documents, statement_key
from settlement.calc import period_bounds
from settlement.service import OPERATOR
from settlement.verify import VerificationFailed, verify_csv, verify_json
from tests.databases import BACKEND
from tests.integration.settlement_support import STATEMENT_KEY, settler_for
from tests.support import Coalition

D = date(2026, 3, 10)  # the worked example's date; other tests take dates of their own
_next_day = itertools.count(date(2031, 1, 1).toordinal() + secrets.randbelow(1000) * 10, 3)


def fresh_date() -> date:
    """A business date no other test in this run writes to (the run database is shared).
    Never 29 February: the worked example earns a lot exactly two years before the date."""
    day = date.fromordinal(next(_next_day))
    return fresh_date() if (day.month, day.day) == (2, 29) else day


def at(day: date, offset_days: int, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) + timedelta(
        days=offset_days
    )


async def statement(business_date: date, partner: str) -> dict[str, Any]:
    row = await db.fetch_one(
        "SELECT signed_json FROM statements WHERE id = {}", f"{business_date}:{partner}"
    )
    assert row is not None
    result: dict[str, Any] = json.loads(row["signed_json"])["statement"]
    return result


async def build_worked_example(world: Coalition, day: date = D) -> None:
    """docs/settlement.md, "A worked example" (all times UTC; ``day`` is 10 March there)."""
    ledger, clock = world.ledger, world.clock
    c, f, u = world.cafe, world.fashion, world.fuel

    async def earn(partner: str, member: str, points: int) -> str:
        result, _ = await ledger.earn(
            world.cause(partner), member_id=member, order_ref="e", points=points, reason="r"
        )
        return result.transaction_id

    async def redeem(partner: str, member: str, points: int) -> str:
        result, _ = await ledger.redeem(
            world.cause(partner), member_id=member, order_ref="r", points=points
        )
        return result.redemption_id

    m1, m2, m3, m4 = [await world.member() for _ in range(4)]
    clock.at = at(day, 0, 1).replace(year=day.year - 2)
    await earn(u, m3, 300)  # expires 2026-03-10 01:00, inside the period
    clock.at = at(day, -1, 12)
    await earn(c, m1, 1000)
    await earn(f, m2, 500)
    clock.at = at(day, 0, 2)
    assert await expire_lots(ledger, "nightly") >= 300
    clock.at = at(day, 0, 9)
    await redeem(f, m1, 250)  # cafe's points redeemed at fashion
    clock.at = at(day, 0, 9, 30)
    await earn(u, m2, 200)
    clock.at = at(day, 0, 10)
    at_cafe = await redeem(c, m2, 700)  # 500 fashion points, then 200 fuel points
    clock.at = at(day, 0, 11)
    await ledger.reverse(world.cause(c), at_cafe, points=100, reason="refund")  # back to fuel lot
    clock.at = at(day, 0, 12)
    m4_earn = await earn(u, m4, 100)
    clock.at = at(day, 0, 12, 5)
    await redeem(f, m4, 100)
    clock.at = at(day, 0, 12, 10)
    reversal, _ = await ledger.reverse(world.cause(u), m4_earn, reason="goods returned")
    assert reversal.debt_points == 100  # owed to fuel
    clock.at = at(day, 0, 13)
    await earn(c, m4, 80)  # pays 80 of the debt: redeemed at fuel
    clock.at = at(day, 1, 0, 30)


async def test_worked_example_statements(world: Coalition) -> None:
    """The figures of docs/settlement.md. The example is dated 10 March 2026 there; here it runs
    on a date no other test writes to, so the operator summary holds this example alone."""
    day = fresh_date()
    await build_worked_example(world, day)
    c, f, u = world.cafe, world.fashion, world.fuel
    outcome = await settler_for(world).settle(day)
    assert outcome.status == "published", outcome.breaks

    cafe = await statement(day, c)
    following = date.fromordinal(day.toordinal() + 1)
    assert cafe["period"] == {"start": f"{day}T00:00:00Z", "end": f"{following}T00:00:00Z"}
    assert cafe["issuance"] == {"earn_count": 1, "earned_points": 80, "earn_reversed_points": 0}
    assert cafe["receivables"] == [
        {"payer": f, "points": 500, "value_minor": 500, "fee_minor": 5},
        {"payer": u, "points": 100, "value_minor": 100, "fee_minor": 1},
    ]
    assert cafe["payables"] == [
        {"payee": f, "points": 250, "value_minor": 250},
        {"payee": u, "points": 80, "value_minor": 80},
    ]
    assert cafe["net_position"] == {"amount_minor": 264, "instruction": "pay_out"}
    assert cafe["liability"] == {
        "opening_points": 1000,
        "issued_points": 80,
        "earn_reversed_points": 0,
        "redeemed_points": 330,
        "redemption_reversed_points": 0,
        "expired_points": 0,
        "closing_points": 750,
        "closing_value_minor": 750,
    }
    assert cafe["reversals"]["redemption_reversed_points"] == 100

    assert cafe["reversals"] == {
        "earn_reversal_count": 0,
        "earn_reversed_points": 0,
        "redemption_reversal_count": 1,
        "redemption_reversed_points": 100,
    }

    fashion = await statement(day, f)
    assert fashion["issuance"] == {"earn_count": 0, "earned_points": 0, "earn_reversed_points": 0}
    assert fashion["payables"] == [{"payee": c, "points": 500, "value_minor": 500}]
    assert fashion["reversals"] == {
        "earn_reversal_count": 0,
        "earn_reversed_points": 0,
        "redemption_reversal_count": 0,
        "redemption_reversed_points": 0,
    }
    assert fashion["receivables"] == [
        {"payer": c, "points": 250, "value_minor": 250, "fee_minor": 2},  # 2.5 rounds to 2
        {"payer": u, "points": 100, "value_minor": 100, "fee_minor": 1},
    ]
    assert fashion["net_position"] == {"amount_minor": -153, "instruction": "pay_in"}
    assert fashion["liability"] == {
        "opening_points": 500,
        "issued_points": 0,
        "earn_reversed_points": 0,
        "redeemed_points": 500,
        "redemption_reversed_points": 0,
        "expired_points": 0,
        "closing_points": 0,
        "closing_value_minor": 0,
    }

    fuel = await statement(day, u)
    assert fuel["issuance"] == {"earn_count": 2, "earned_points": 300, "earn_reversed_points": 100}
    assert fuel["receivables"] == [{"payer": c, "points": 80, "value_minor": 80, "fee_minor": 1}]
    assert fuel["payables"] == [
        {"payee": c, "points": 100, "value_minor": 100},
        {"payee": f, "points": 100, "value_minor": 100},
    ]
    assert fuel["reversals"] == {
        "earn_reversal_count": 1,
        "earn_reversed_points": 100,
        "redemption_reversal_count": 0,
        "redemption_reversed_points": 0,
    }
    assert fuel["net_position"] == {"amount_minor": -121, "instruction": "pay_in"}
    assert fuel["liability"] == {
        "opening_points": 300,
        "issued_points": 300,
        "earn_reversed_points": 0,
        "redeemed_points": 300,
        "redemption_reversed_points": 100,
        "expired_points": 300,
        "closing_points": 100,
        "closing_value_minor": 100,
    }

    summary = await statement(day, OPERATOR)
    ours = [pair for pair in summary["pairs"] if {pair["payer"], pair["payee"]} <= {c, f, u}]
    assert sum(pair["fee_minor"] for pair in ours) == 10
    assert summary["zero_sum"]["sum"] == 0
    assert summary["zero_sum"]["fees_total_minor"] == summary["fees_total_minor"]
    mine = {p["partner_id"]: p for p in summary["partners"] if p["partner_id"] in (c, f, u)}
    assert {
        p: (
            mine[p]["net_position"]["amount_minor"],
            mine[p]["fees_paid_minor"],
            mine[p]["outstanding_points"],
        )
        for p in mine
    } == {c: (264, 6, 750), f: (-153, 3, 0), u: (-121, 1, 100)}
    # Coalition-wide: 850 of it is this example's (750 + 0 + 100); other tests' partners share
    # the run database, so the total is checked against the partner lines it sums.
    assert sum(mine[p]["outstanding_points"] for p in mine) == 850
    total = summary["outstanding_liability"]
    assert total["points"] == sum(p["outstanding_points"] for p in summary["partners"])
    assert total["value_minor"] == total["points"]  # 0.01 EUR per point
    assert ours == [
        {"payer": c, "payee": f, "points": 250, "value_minor": 250, "fee_minor": 2},
        {"payer": c, "payee": u, "points": 80, "value_minor": 80, "fee_minor": 1},
        {"payer": f, "payee": c, "points": 500, "value_minor": 500, "fee_minor": 5},
        {"payer": u, "payee": c, "points": 100, "value_minor": 100, "fee_minor": 1},
        {"payer": u, "payee": f, "points": 100, "value_minor": 100, "fee_minor": 1},
    ]


async def test_settling_again_changes_nothing_and_documents_are_deterministic(
    world: Coalition,
) -> None:
    day = fresh_date()
    await build_worked_example(world, day)
    settler = settler_for(world)
    await settler.settle(day)
    before = await db.fetch(
        "SELECT * FROM statements WHERE business_date = {} ORDER BY id", day.isoformat()
    )
    again = await settler.settle(day)
    assert again.status == "published"
    after = await db.fetch(
        "SELECT * FROM statements WHERE business_date = {} ORDER BY id", day.isoformat()
    )
    assert before == after
    # Re-rendering from the stored statement gives the same bytes.
    keyid, key = statement_key.load(STATEMENT_KEY)
    for row in after:
        inner = json.loads(row["signed_json"])["statement"]
        assert documents.sign_json(inner, keyid, key).decode() == row["signed_json"]
    pairs = await db.fetch("SELECT COUNT(*) AS n FROM cleared_pairs")
    assert pairs[0]["n"] >= 5


async def test_a_statement_that_fails_to_sign_stops_the_run_with_its_own_error(
    world: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statements are signed concurrently; a failure surfaces as itself (not wrapped in an
    exception group), nothing is published, and the next attempt finishes the run."""
    day = fresh_date()
    await build_worked_example(world, day)
    settler = settler_for(world)
    sign = settler.sign_statement

    async def sign_but_fuel(business_date: date, partner_id: str) -> None:
        if partner_id == world.fuel:
            raise OSError("disk full")
        await sign(business_date, partner_id)

    monkeypatch.setattr(settler, "sign_statement", sign_but_fuel)
    with pytest.raises(OSError, match="disk full"):
        await settler.settle(day)
    run = await db.fetch_one(
        "SELECT status FROM settlement_runs WHERE business_date = {}", day.isoformat()
    )
    assert run is not None and run["status"] == "running"
    monkeypatch.undo()
    assert (await settler.settle(day)).status == "published"


async def test_statements_verify_and_tampering_fails(world: Coalition) -> None:
    day = fresh_date()
    await build_worked_example(world, day)
    await settler_for(world).settle(day)
    jwks = statement_key.jwks(STATEMENT_KEY)
    row = await db.fetch_one("SELECT * FROM statements WHERE id = {}", f"{day}:{world.cafe}")
    assert row is not None
    signed_json, signed_csv = row["signed_json"].encode(), row["signed_csv"].encode()
    assert verify_json(signed_json, jwks)["partner_id"] == world.cafe
    assert verify_csv(signed_csv, jwks) == row["statement_digest"]
    assert signed_csv.decode().count("\n") == 1 + 3 + 4  # header, 3 cafe transactions, trailer
    with pytest.raises(VerificationFailed):
        verify_json(signed_json.replace(b'"amount_minor":264', b'"amount_minor":265'), jwks)
    with pytest.raises(VerificationFailed):
        verify_csv(signed_csv.replace(b",80,", b",90,", 1), jwks)
    with pytest.raises(VerificationFailed):
        verify_json(signed_json, {"keys": []})


async def test_a_corrupted_row_fails_reconciliation_and_publishes_nothing(
    world: Coalition,
) -> None:
    day = fresh_date()
    await build_worked_example(world, day)
    lot = await db.fetch_one(
        "SELECT id FROM lots WHERE issuer_id = {} AND remaining > 0", world.cafe
    )
    assert lot is not None
    async with db.write_transaction():
        await db.execute("UPDATE lots SET remaining = remaining - 7 WHERE id = {}", lot["id"])
    outcome = await settler_for(world).settle(day)
    assert outcome.status == "failed"
    checks = {(b["check"], b["subject"]) for b in outcome.breaks}
    assert ("liability-vs-lots", f"issuer:{world.cafe}") in checks
    assert any(
        b["check"] == "lot-remaining-vs-movements" and str(lot["id"]) in b["detail"]
        for b in outcome.breaks
    )
    published = await db.fetch(
        "SELECT id FROM statements WHERE business_date = {}", day.isoformat()
    )
    assert published == []
    async with db.write_transaction():
        await db.execute("UPDATE lots SET remaining = remaining + 7 WHERE id = {}", lot["id"])
    retried = await settler_for(world).settle(day)  # fixed: the operator retries the same date
    assert retried.status == "published" and retried.run_id == outcome.run_id


async def test_liability_on_a_movement_kind_outside_its_line_breaks_the_roll_forward(
    world: Coalition,
) -> None:
    """The roll-forward builds the closing from the period's kinds; the closing from the raw
    movements must agree. Liability moved by a hold (no line of its own) and taken back as an
    earn nets to zero in the ledger but not in the roll-forward."""
    day = fresh_date()
    await build_worked_example(world, day)
    start, _ = period_bounds(day, world.ledger.settings.zone)
    lot = await db.fetch_one("SELECT * FROM lots WHERE issuer_id = {} LIMIT 1", world.cafe)
    assert lot is not None
    async with db.write_transaction():
        for kind, liability in (("hold", 5), ("earn", -5)):
            await db.execute(
                "INSERT INTO lot_movements (entry_id, lot_id, issuer_id, member_id, kind,"
                " lot_points, liability_points, cleared_points, posted_at_us)"
                " VALUES ({}, {}, {}, {}, {}, 0, {}, 0, {})",
                lot["entry_id"],
                lot["id"],
                world.cafe,
                lot["member_id"],
                kind,
                liability,
                start + 1,
            )
    outcome = await settler_for(world).settle(day)
    assert outcome.status == "failed"
    # the statement's closing (from the lines) then also differs from the lots
    assert {(b["check"], b["subject"]) for b in outcome.breaks} == {
        ("roll-forward", f"issuer:{world.cafe}"),
        ("liability-vs-lots", f"issuer:{world.cafe}"),
    }


async def test_a_date_is_not_settled_before_its_grace_period(world: Coalition) -> None:
    day = fresh_date()
    world.clock.at = at(day, 1, 0, 4)
    with pytest.raises(Exception, match="not closed yet"):
        await settler_for(world).settle(day)


async def test_an_order_ref_cannot_forge_the_csv_trailer(world: Coalition) -> None:
    day = fresh_date()
    world.clock.at = at(day, 0, 10)
    member = await world.member()
    await world.ledger.earn(
        world.cause(world.cafe),
        member_id=member,
        order_ref="x\n# keyid: forged",
        points=5,
        reason="r",
    )
    world.clock.at = at(day, 1, 0, 30)
    await settler_for(world).settle(day)
    row = await db.fetch_one(
        "SELECT signed_csv, statement_digest FROM statements WHERE id = {}", f"{day}:{world.cafe}"
    )
    assert row is not None
    jwks = statement_key.jwks(STATEMENT_KEY)
    assert verify_csv(row["signed_csv"].encode(), jwks) == row["statement_digest"]


def test_the_statement_jwk_beside_the_key_carries_the_signing_kid(tmp_path: Path) -> None:
    path = tmp_path / "statement.private.pem"
    jwk = statement_key.generate(path)
    beside = json.loads((tmp_path / "statement.jwk.json").read_text())
    assert beside["kid"] == jwk["kid"] == statement_key.load(path)[0]
    (tmp_path / "old.retired.jwk.json").write_text("")
    with pytest.raises(Exception, match="not an Ed25519 public JWK"):
        statement_key.jwks(path)


async def test_an_entry_committing_during_reconciliation_is_no_false_break(
    world: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconciliation compares reads taken at different moments; they come from one snapshot,
    so a concurrent earn between two of them cannot fail a correct run."""
    import asyncio
    import contextvars

    from settlement import repository

    day = fresh_date()
    await build_worked_example(world, day)
    member = await world.member()
    original = repository.outstanding_now

    async def earn_meanwhile() -> dict[str, int]:
        # Commits after liability_from was read and before the lots are: without one snapshot,
        # the lots would hold 9 more points than the movements read a moment earlier.
        loop = asyncio.get_running_loop()  # a fresh context: its own transaction, not ours
        await loop.create_task(
            world.ledger.earn(
                world.cause(world.cafe),
                member_id=member,
                order_ref="meanwhile",
                points=9,
                reason="r",
            ),
            context=contextvars.Context(),
        )
        return await original()

    monkeypatch.setattr(repository, "outstanding_now", earn_meanwhile)
    outcome = await settler_for(world).settle(day)
    assert outcome.status == "published", outcome.breaks


async def test_csv_pages_meet_exactly_whatever_the_page_size(
    world: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyset paging: pages of 1 and 2 rows give the same lines as one page, in time order
    (entries sharing a posted_at_us are ordered by id)."""
    from settlement import repository

    day = fresh_date()
    await build_worked_example(world, day)
    run = await settler_for(world).prepare(day)
    assert run[0].status == "running"
    row = await db.fetch_one(
        "SELECT period_start_us, period_end_us FROM settlement_runs WHERE business_date = {}",
        day.isoformat(),
    )
    assert row is not None

    async def lines(partner: str) -> list[str]:
        found = repository.partner_transactions(
            partner, row["period_start_us"], row["period_end_us"]
        )
        return [entry["id"] async for entry in found]

    for partner in (world.cafe, world.fashion, world.fuel):
        whole = await lines(partner)
        assert whole, partner
        for size in (1, 2):
            monkeypatch.setattr(repository, "BATCH_ROWS", size)
            assert await lines(partner) == whole
        monkeypatch.undo()


# Order refs are any text but NUL (which PostgreSQL text cannot hold); CSV's special characters
# are drawn often enough to meet every quoting rule in 20 examples.
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # a Unicode category, as hypothesis types them
_text = st.text(
    st.one_of(
        st.sampled_from(',"\r\n# é'),
        st.characters(blacklist_categories=_SURROGATES, blacklist_characters="\x00"),
    )
)
_year_1_us, _year_9999_us = -62_135_596_800_000_000, 253_402_300_799_999_999


@pytest.mark.skipif(
    BACKEND != "postgres", reason="COPY is PostgreSQL's; SQLite has the Python rows"
)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    earns=st.lists(
        st.tuples(
            _text.filter(bool).map(lambda t: t[:128]),
            st.one_of(st.none(), st.just(0), st.integers(_year_1_us, _year_9999_us)),
        ),
        min_size=1,
        max_size=4,
    )
)
@example(  # each quoting rule and the edges of the timestamp range, whatever is drawn
    earns=[
        ("cr\ronly", None),
        ("lf\nonly", None),
        ('a "quote"', None),
        ("a,comma", None),
        ("# not a trailer", 0),
        (" plain é ", _year_1_us),
        ("x", _year_9999_us),
        ("before 1970", -1),
    ]
)
async def test_copy_csv_is_byte_identical_to_python_rows(
    world: Coalition, earns: list[tuple[str, int | None]]
) -> None:
    """PostgreSQL writes the statement lines with COPY; they must be the very bytes the Python
    rows give (quotes, commas, CR and LF in order refs, years 1 to 9999, no occurred_at)."""
    from settlement import repository

    member = await world.member()
    for order_ref, occurred_at_us in earns:
        world.clock.advance(microseconds=secrets.randbelow(10**6) + 1)
        await world.ledger.earn(
            world.cause(world.cafe),
            member_id=member,
            order_ref=order_ref,
            points=5,
            reason="r",
            occurred_at_us=occurred_at_us,
        )
    end = 2**62
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await repository.partner_transactions_csv(world.cafe, 0, end, sink)
    by_python = [
        documents.csv_line(documents.transaction_row(entry))
        async for entry in repository.partner_transactions(world.cafe, 0, end)
    ]
    assert b"".join(chunks) == "".join(by_python).encode()
    assert len(by_python) >= len(earns)
