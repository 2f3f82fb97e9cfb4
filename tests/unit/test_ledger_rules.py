"""Pure ledger rules: consumption order, restoration, debt, rounding, dates, cards."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coalition.errors import InsufficientPoints, LedgerInvariantError
from coalition.ledger import (
    DebtView,
    LotView,
    Take,
    add_months_us,
    check_balanced,
    fee_minor,
    from_us,
    give_back,
    luhn_valid,
    points_for_amount,
    points_value_minor,
    repay_debts,
    rfc3339,
    take_points,
    take_up_to,
    to_us,
)


def lot(id: int, remaining: int, expires: int, earned: int = 0, issuer: str = "a") -> LotView:
    return LotView(id, issuer, remaining, earned, expires)


def test_consumption_is_earliest_expiring_then_oldest_then_lowest_id() -> None:
    lots = [
        lot(1, 10, expires=300),
        lot(2, 10, expires=100, earned=5),
        lot(3, 10, expires=100),
        lot(4, 10, expires=100),
    ]
    takes = take_points(lots, 25)
    assert [(t.lot.id, t.points) for t in takes] == [(3, 10), (4, 10), (2, 5)]


def test_consumption_refuses_what_the_lots_cannot_cover() -> None:
    with pytest.raises(InsufficientPoints) as refused:
        take_points([lot(1, 5, 10)], 6)
    assert refused.value.fields == {"available_points": 5}
    assert take_up_to([lot(1, 5, 10)], 6) == [Take(lot(1, 5, 10), 5)]
    assert take_up_to([], 6) == []


def test_restoration_is_latest_expiring_first_and_capped_per_lot() -> None:
    given_ = [Take(lot(1, 0, 100), 30), Take(lot(2, 0, 200), 20)]
    assert [(t.lot.id, t.points) for t in give_back(given_, 25)] == [(2, 20), (1, 5)]
    with pytest.raises(LedgerInvariantError):
        give_back(given_, 51)


@given(
    remaining=st.lists(st.integers(0, 50), min_size=1, max_size=6),
    expiries=st.lists(st.integers(0, 5), min_size=6, max_size=6),
    data=st.data(),
)
def test_take_then_give_back_everything_restores_every_lot(
    remaining: list[int], expiries: list[int], data: st.DataObject
) -> None:
    lots = [lot(i, r, expiries[i]) for i, r in enumerate(remaining)]
    total = sum(remaining)
    points = data.draw(st.integers(1, total)) if total else 0
    if not points:
        return
    takes = take_points(lots, points)
    assert sum(t.points for t in takes) == points
    assert all(0 < t.points <= t.lot.remaining for t in takes)
    back = give_back(takes, points)
    assert sorted((t.lot.id, t.points) for t in back) == sorted((t.lot.id, t.points) for t in takes)


def test_debts_are_repaid_oldest_first() -> None:
    debts = [DebtView(2, "b", 30), DebtView(1, "a", 50)]
    assert repay_debts(60, debts) == [(debts[1], 50), (debts[0], 10)]
    assert repay_debts(0, debts) == []


@pytest.mark.parametrize(
    ("amount_minor", "currency", "rate", "points"),
    [
        (2599, "EUR", "1", 25),
        (1050, "EUR", "2", 21),
        (999, "EUR", "0.1", 0),
        (1000, "JPY", "0.01", 10),
        (12345, "KWD", "1", 12),
        (1, "EUR", "100", 1),
        (10**15, "EUR", "3.333", 33330000000000),
    ],
)
def test_points_for_amount_floor_exactly(
    amount_minor: int, currency: str, rate: str, points: int
) -> None:
    assert points_for_amount(amount_minor, currency, Decimal(rate)) == points


def test_money_rounds_half_even_once() -> None:
    assert fee_minor(250, 100) == 2  # 2.5 -> 2
    assert fee_minor(350, 100) == 4  # 3.5 -> 4
    assert points_value_minor(1, Decimal("0.005"), "EUR") == 0  # 0.5 cent -> 0
    assert points_value_minor(3, Decimal("0.005"), "EUR") == 2  # 1.5 cents -> 2
    assert points_value_minor(700, Decimal("0.01"), "EUR") == 700


def test_calendar_months_clamp_to_month_end() -> None:
    start = to_us(datetime(2024, 1, 31, 10, 30, tzinfo=UTC))
    assert from_us(add_months_us(start, 1)) == datetime(2024, 2, 29, 10, 30, tzinfo=UTC)
    assert from_us(add_months_us(start, 24)) == datetime(2026, 1, 31, 10, 30, tzinfo=UTC)


@given(st.integers(0, to_us(datetime(9999, 12, 31, tzinfo=UTC))))
def test_microsecond_times_round_trip(at_us: int) -> None:
    assert to_us(from_us(at_us)) == at_us


def test_luhn() -> None:
    assert luhn_valid("79927398713") and luhn_valid("4111111111111111")
    assert not luhn_valid("79927398710") and not luhn_valid("7992-7398713")
    assert not luhn_valid("0") and not luhn_valid("1" * 20)


def test_entries_must_balance() -> None:
    check_balanced([("a", 5), ("b", -5)])
    for bad in ([("a", 5), ("b", -4)], [("a", 0), ("b", 0)], [("a", 0)]):
        with pytest.raises(LedgerInvariantError):
            check_balanced(bad)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)))
def test_rfc3339_matches_the_datetime_library(at: datetime) -> None:
    at = at.replace(tzinfo=UTC)
    expected = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert rfc3339(to_us(at)) == expected
