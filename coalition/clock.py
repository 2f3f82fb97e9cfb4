"""Ledger time. Domain code takes a clock so tests can freeze it (freezegun patches ``now``)."""

from collections.abc import Callable
from datetime import UTC, datetime

from coalition.ledger import to_us

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def now_us(clock: Clock) -> int:
    return to_us(clock())
