"""The demo coalition ``coalition up`` creates on first start: a cafe, a fashion store and a fuel
station with key pairs, a few members, and yesterday's history, settled so that a statement can
be downloaded at once. Everything goes through the real ledger and settlement code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coalition import program
from coalition.clock import now_us, system_clock
from coalition.journal import Cause
from coalition.service import Ledger
from coalition.settings import Settings
from partners import keys
from settlement.calc import last_closed_date, period_bounds
from settlement.service import Settler

PARTNERS = [  # id, name, earn rate (points per EUR), bonus cap
    ("cafe", "Corner Cafe", "1", 500),
    ("fashion", "Fashion Store", "2", 1000),
    ("fuel", "Fuel Station", "1", 300),
]
CARDS = ["4000000000000002", "4000000000000010", "4000000000000028", "4000000000000036"]


@dataclass
class Steps:
    """A clock for building history: each call is a few minutes after the previous one."""

    at: datetime

    def __call__(self) -> datetime:
        self.at += timedelta(minutes=7)
        return self.at


async def seed(settings: Settings, home: Path) -> dict[str, Any]:
    """Create the demo coalition and settle its first day; return what the tour needs."""
    demo: dict[str, Any] = {"partners": {}, "members": []}
    for partner_id, name, rate, cap in PARTNERS:
        await program.add_partner(
            partner_id,
            name,
            roles="earn,redeem",
            currency="EUR",
            earn_rate=rate,
            bonus_cap_points=cap,
        )
        keyid = f"{partner_id}-demo"
        jwk = keys.generate_key_pair(home / "keys", keyid)
        await keys.add_key(
            partner_id,
            keys.load_public_key(json.dumps(jwk)),
            keyid=keyid,
            now_us=now_us(system_clock) - 86_400 * 2 * 10**6,
        )
        demo["partners"][partner_id] = {
            "keyid": keyid,
            "private_key": str(home / "keys" / f"{keyid}.private.pem"),
        }
    day = last_closed_date(system_clock(), settings.zone, settings.settlement_grace_seconds)
    start_us, _ = period_bounds(day, settings.zone)
    clock = Steps(datetime.fromtimestamp(start_us / 10**6, tz=UTC) + timedelta(hours=8))
    ledger = Ledger(settings, clock)
    for card in CARDS:
        enrolled, _ = await program.enrol_member(
            Cause(partner_id="cafe"), card_number=card, clock=clock
        )
        demo["members"].append(enrolled.member_id)
    for step in _history(demo["members"]):
        await step(ledger)
    await Settler(settings).settle(day)
    demo["settled_date"] = day.isoformat()
    (home / "demo.json").write_text(json.dumps(demo, indent=2) + "\n")
    return demo


def _history(members: list[str]) -> Iterator[Any]:
    """A day of coalition life: purchases, cross-brand redemptions, a hold, a refund."""
    a, b, c, d = members

    def cause(partner: str) -> Cause:
        return Cause(partner_id=partner, key_id=f"{partner}-demo")

    def earn(partner: str, member: str, cents: int) -> Any:
        return lambda ledger: ledger.earn(
            cause(partner), member_id=member, order_ref="demo", amount_minor=cents, currency="EUR"
        )

    def redeem(partner: str, member: str, points: int, hold: bool = False) -> Any:
        return lambda ledger: ledger.redeem(
            cause(partner), member_id=member, order_ref="demo", points=points, hold=hold
        )

    yield earn("cafe", a, 4_250)
    yield earn("fashion", a, 12_999)
    yield earn("fuel", b, 6_480)
    yield earn("cafe", b, 1_890)
    yield earn("fashion", c, 8_900)
    yield earn("fuel", d, 5_500)
    yield redeem("cafe", a, 120)  # fashion's points spent at the cafe
    yield redeem("fashion", b, 60)
    yield redeem("fuel", c, 100)

    async def hold_and_capture(ledger: Ledger) -> None:
        held, _ = await ledger.redeem(
            cause("fashion"), member_id=d, order_ref="demo-hold", points=40, hold=True
        )
        await ledger.capture(cause("fashion"), held.redemption_id, 30)

    async def refund(ledger: Ledger) -> None:
        spent, _ = await ledger.redeem(
            cause("cafe"), member_id=c, order_ref="demo-refund", points=50
        )
        await ledger.reverse(cause("cafe"), spent.redemption_id, points=20, reason="refund")

    yield hold_and_capture
    yield refund
