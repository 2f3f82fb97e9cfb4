"""Pure settlement rules: periods, clearing, netting, rounding, the liability roll-forward.

No I/O. Money is in minor units; one half-even rounding per (payer, payee) pair, never per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from coalition.ledger import fee_minor, points_value_minor, to_us

# Liability movement kinds, by the roll-forward line they belong to.
ISSUED_KINDS = ("earn",)
EARN_REVERSED_KINDS = ("earn_reversal",)
REDEEMED_KINDS = ("redeem", "capture", "clawback", "debt_repayment")
REDEMPTION_REVERSED_KINDS = ("redemption_reversal",)
EXPIRED_KINDS = ("expire",)
NO_LIABILITY_KINDS = ("hold", "release")  # a hold moves no liability until captured


def period_bounds(business_date: date, zone: ZoneInfo) -> tuple[int, int]:
    """``[D 00:00, D+1 00:00)`` local, in epoch microseconds UTC (23 or 25 hours across DST)."""
    start = datetime(business_date.year, business_date.month, business_date.day, tzinfo=zone)
    following = business_date + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return to_us(start.astimezone(UTC)), to_us(end.astimezone(UTC))


def last_closed_date(now: datetime, zone: ZoneInfo, grace_seconds: int) -> date:
    """The latest business date whose period ended at least ``grace_seconds`` ago."""
    candidate = now.astimezone(zone).date()
    while True:
        _, end_us = period_bounds(candidate, zone)
        if end_us + grace_seconds * 1_000_000 <= to_us(now):
            return candidate
        candidate -= timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ClearedLine:
    payer: str
    payee: str
    points: int
    value_minor: int
    fee_minor: int


def clear(
    cleared_points: Mapping[tuple[str, str], int], point_value: Decimal, currency: str, fee_bps: int
) -> list[ClearedLine]:
    """Value each (payer, payee) pair once; the issuer's own points (X == Y) move no money."""
    lines = []
    for (payer, payee), points in sorted(cleared_points.items()):
        if payer == payee or points == 0:
            continue
        value = points_value_minor(points, point_value, currency)
        lines.append(ClearedLine(payer, payee, points, value, fee_minor(value, fee_bps)))
    return lines


def net_positions(lines: Iterable[ClearedLine], partners: Iterable[str]) -> dict[str, int]:
    """``N_A = sum_Y (V_YA - F_YA) - sum_Y V_AY``: positive, the clearinghouse pays A."""
    net = dict.fromkeys(partners, 0)
    for line in lines:
        net[line.payee] = net.get(line.payee, 0) + line.value_minor - line.fee_minor
        net[line.payer] = net.get(line.payer, 0) - line.value_minor
    return net


def zero_sum(net: Mapping[str, int], lines: Iterable[ClearedLine]) -> int:
    """``sum_A N_A + sum F``: exactly 0 on every correct run."""
    return sum(net.values()) + sum(line.fee_minor for line in lines)


def instruction(amount_minor: int) -> str:
    return "pay_out" if amount_minor > 0 else "pay_in" if amount_minor < 0 else "none"


@dataclass(frozen=True, slots=True)
class RollForward:
    """One issuer's liability over a period, in points."""

    opening_points: int
    issued_points: int
    earn_reversed_points: int
    redeemed_points: int
    redemption_reversed_points: int
    expired_points: int

    @property
    def closing_points(self) -> int:
        return (
            self.opening_points
            + self.issued_points
            - self.earn_reversed_points
            - self.redeemed_points
            + self.redemption_reversed_points
            - self.expired_points
        )


def roll_forward(opening_points: int, liability_by_kind: Mapping[str, int]) -> RollForward:
    """Build the roll-forward from the period's liability changes, summed per movement kind.
    Unknown kinds are a bug: they would silently fall out of the statement."""
    unknown = set(liability_by_kind) - set(
        ISSUED_KINDS
        + EARN_REVERSED_KINDS
        + REDEEMED_KINDS
        + REDEMPTION_REVERSED_KINDS
        + EXPIRED_KINDS
        + NO_LIABILITY_KINDS
    )
    if unknown:
        raise ValueError(f"unclassified lot movement kinds: {sorted(unknown)}")

    def total(kinds: tuple[str, ...]) -> int:
        return sum(liability_by_kind.get(kind, 0) for kind in kinds)

    return RollForward(
        opening_points=opening_points,
        issued_points=total(ISSUED_KINDS),
        earn_reversed_points=-total(EARN_REVERSED_KINDS),
        redeemed_points=-total(REDEEMED_KINDS),
        redemption_reversed_points=total(REDEMPTION_REVERSED_KINDS),
        expired_points=-total(EXPIRED_KINDS),
    )
