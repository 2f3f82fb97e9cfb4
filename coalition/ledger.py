"""Pure ledger rules: lots, consumption order, restoration, debt, rounding. No I/O.

Consumption takes from the earliest-expiring lot first (ties: older ``earned_at``, then lot
id); restoration gives back to the latest-expiring lot first, never more than a lot gave.
"""

from __future__ import annotations

import calendar
import functools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext

from coalition.errors import InsufficientPoints, LedgerInvariantError

# ISO 4217 minor-unit exponents that differ from 2 (the common case).
_CURRENCY_EXPONENTS = {
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LotView:
    id: int
    issuer_id: str
    remaining: int
    earned_at_us: int
    expires_at_us: int


@dataclass(frozen=True, slots=True)
class Take:
    """``points`` moved out of (or back into) one lot."""

    lot: LotView
    points: int


@dataclass(frozen=True, slots=True)
class DebtView:
    id: int
    creditor_id: str
    remaining: int


def consumption_key(lot: LotView) -> tuple[int, int, int]:
    return (lot.expires_at_us, lot.earned_at_us, lot.id)


def take_points(lots: Iterable[LotView], points: int) -> list[Take]:
    """Take ``points`` from the lots, earliest-expiring first; raise if they do not cover it."""
    if points <= 0:
        raise LedgerInvariantError(f"take_points needs a positive amount, got {points}")
    takes: list[Take] = []
    left = points
    for lot in sorted(lots, key=consumption_key):
        if left == 0:
            break
        n = min(lot.remaining, left)
        if n > 0:
            takes.append(Take(lot, n))
            left -= n
    if left:
        raise InsufficientPoints(
            f"{points} points requested, {points - left} available", available_points=points - left
        )
    return takes


def take_up_to(lots: Iterable[LotView], points: int) -> list[Take]:
    """Like :func:`take_points` but takes what there is when the lots fall short."""
    available = sum(lot.remaining for lot in lots)
    n = min(points, available)
    return take_points(lots, n) if n > 0 else []


def give_back(given: Sequence[Take], points: int) -> list[Take]:
    """Return ``points`` to the lots in ``given`` (each capped at what it gave), latest-expiring
    first. ``given`` lists per lot how many points may still come back to it."""
    if points < 0 or points > sum(t.points for t in given):
        raise LedgerInvariantError(f"cannot give back {points} points to {given}")
    back: list[Take] = []
    left = points
    for take in sorted(given, key=lambda t: consumption_key(t.lot), reverse=True):
        if left == 0:
            break
        n = min(take.points, left)
        if n > 0:
            back.append(Take(take.lot, n))
            left -= n
    return back


def repay_debts(points: int, debts: Sequence[DebtView]) -> list[tuple[DebtView, int]]:
    """Pay the oldest debts first out of ``points`` newly earned."""
    paid: list[tuple[DebtView, int]] = []
    left = points
    for debt in sorted(debts, key=lambda d: d.id):
        n = min(debt.remaining, left)
        if n > 0:
            paid.append((debt, n))
            left -= n
    return paid


def currency_exponent(currency: str) -> int:
    return _CURRENCY_EXPONENTS.get(currency, 2)


def points_for_amount(amount_minor: int, currency: str, earn_rate: Decimal) -> int:
    """``floor(amount in major units * earn rate)``, exactly (25.99 EUR at rate 1 earns 25)."""
    with localcontext() as ctx:
        ctx.prec = 60
        major = Decimal(amount_minor).scaleb(-currency_exponent(currency))
        return int((major * earn_rate).to_integral_value(rounding=ROUND_FLOOR))


def points_value_minor(points: int, point_value: Decimal, currency: str) -> int:
    """Money for ``points`` at ``point_value`` (major units per point), rounded half-even once."""
    with localcontext() as ctx:
        ctx.prec = 60
        minor = Decimal(points) * point_value * (Decimal(10) ** currency_exponent(currency))
        return int(minor.to_integral_value(rounding=ROUND_HALF_EVEN))


def fee_minor(value_minor: int, fee_bps: int) -> int:
    with localcontext() as ctx:
        ctx.prec = 60
        fee = Decimal(value_minor) * fee_bps / Decimal(10_000)
        return int(fee.to_integral_value(rounding=ROUND_HALF_EVEN))


def add_months_us(at_us: int, months: int) -> int:
    """Calendar months later (the 31st becomes the month's last day), in epoch microseconds."""
    at = from_us(at_us)
    month_index = at.month - 1 + months
    year, month = at.year + month_index // 12, month_index % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return to_us(at.replace(year=year, month=month, day=day))


def to_us(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("naive datetime: ledger time is always timezone-aware")
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(at_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=at_us)


_DAY_US = 86_400 * 1_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=64)
def _day_text(day: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


def rfc3339(at_us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``; integer arithmetic, because statements format millions."""
    day, rest = divmod(at_us, _DAY_US)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    return f"{_day_text(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}Z"


def luhn_valid(number: str) -> bool:
    if not (number.isdigit() and 8 <= len(number) <= 19):
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def new_id(prefix: str) -> str:
    """Opaque, URL-safe, unguessable ids."""
    return f"{prefix}_{secrets.token_hex(10)}"


def check_balanced(postings: Sequence[tuple[str, int]]) -> None:
    if len(postings) < 2 or sum(points for _, points in postings) != 0:
        raise LedgerInvariantError(f"entry does not balance: {postings}")
    if any(points == 0 for _, points in postings):
        raise LedgerInvariantError(f"zero posting in {postings}")


# Journal accounts. A member's account holds available points (lots minus debt); "held" holds
# authorised points; each partner has an issuance source, a redemption sink and a breakage sink.
def member_account(member_id: str) -> str:
    return f"member:{member_id}"


def held_account(member_id: str) -> str:
    return f"held:{member_id}"


def issued_account(partner_id: str) -> str:
    return f"issued:{partner_id}"


def redeemed_account(partner_id: str) -> str:
    return f"redeemed:{partner_id}"


def expired_account(issuer_id: str) -> str:
    return f"expired:{issuer_id}"
