"""Program rules and membership: partners and their terms, member enrolment and lookup."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from coalition import db, journal
from coalition.clock import Clock, now_us, system_clock
from coalition.errors import AlreadyExists, Forbidden, InvalidInput, NotFound
from coalition.idempotency import UNIQUE_VIOLATIONS, run_keyed
from coalition.journal import Cause
from coalition.ledger import luhn_valid, new_id, rfc3339
from coalition.results import Enrolled
from coalition.tables import Member, MemberRef, Partner

PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
ROLES = ("earn", "redeem")
EARN_RATE_MAX = Decimal(10_000)


def parse_roles(roles: str) -> str:
    parts = {r.strip() for r in roles.split(",") if r.strip()}
    if not parts or not parts <= set(ROLES):
        raise InvalidInput(
            f"roles must be a comma-separated subset of {','.join(ROLES)}: {roles!r}"
        )
    return ",".join(r for r in ROLES if r in parts)


def parse_earn_rate(text: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"earn rate must be a decimal number: {text!r}") from None
    if not rate.is_finite() or rate < 0 or rate > EARN_RATE_MAX:
        raise InvalidInput(f"earn rate must be within 0..{EARN_RATE_MAX}: {text!r}")
    return rate


async def add_partner(
    partner_id: str,
    name: str,
    *,
    roles: str,
    currency: str,
    earn_rate: str,
    bonus_cap_points: int,
    clock: Clock = system_clock,
) -> dict[str, Any]:
    if not PARTNER_ID.match(partner_id):
        raise InvalidInput(f"partner id must match {PARTNER_ID.pattern}: {partner_id!r}")
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise InvalidInput(f"currency must be an ISO 4217 code: {currency!r}")
    if bonus_cap_points < 0:
        raise InvalidInput("bonus cap must not be negative")
    if not name.strip():
        raise InvalidInput("partner name must not be empty")
    rate = parse_earn_rate(earn_rate)
    if await Partner.exists().where(Partner.id == partner_id):
        raise AlreadyExists(f"partner {partner_id} already exists", partner_id=partner_id)
    await Partner.insert(
        Partner(
            id=partner_id,
            name=name.strip(),
            roles=parse_roles(roles),
            status="active",
            currency=currency,
            earn_rate=str(rate),
            bonus_cap_points=bonus_cap_points,
            created_at_us=now_us(clock),
        )
    )
    return await get_partner(partner_id)


async def get_partner(partner_id: str) -> dict[str, Any]:
    row: dict[str, Any] | None = await Partner.select().where(Partner.id == partner_id).first()
    if row is None:
        raise NotFound(f"partner {partner_id} not found", partner_id=partner_id)
    return row


async def list_partners() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await Partner.select().order_by(Partner.id)
    return rows


async def set_partner_status(partner_id: str, status: str) -> dict[str, Any]:
    await get_partner(partner_id)
    await Partner.update({Partner.status: status}).where(Partner.id == partner_id)
    return await get_partner(partner_id)


async def enrol_member(
    cause: Cause,
    *,
    card_number: str | None = None,
    partner_member_ref: str | None = None,
    clock: Clock = system_clock,
) -> tuple[Enrolled, bool]:
    """Enrol a member, optionally with a card (Luhn-checked) and the partner's own reference."""
    if card_number is not None and not luhn_valid(card_number):
        raise InvalidInput("card_number is not a valid card number (Luhn check failed)")

    async def operation() -> Enrolled:
        if cause.partner_id is not None:
            partner = await journal.load_partner(cause.partner_id)
            if partner["status"] != "active":
                raise Forbidden(f"partner {partner['id']} is suspended")
        if card_number is not None and await db.fetch_one(
            "SELECT id FROM members WHERE card_number = {}", card_number
        ):
            raise AlreadyExists("a member with this card number already exists")
        if partner_member_ref is not None and await db.fetch_one(
            "SELECT id FROM member_refs WHERE partner_id = {} AND partner_ref = {}",
            cause.partner_id,
            partner_member_ref,
        ):
            raise AlreadyExists("a member with this partner_member_ref already exists")
        member_id, created = new_id("mem"), now_us(clock)
        try:
            await db.execute(
                "INSERT INTO members (id, card_number, status, available_points, held_points,"
                " debt_points, created_at_us) VALUES ({}, {}, 'active', 0, 0, 0, {})",
                member_id,
                card_number,
                created,
            )
            if partner_member_ref is not None and cause.partner_id is not None:
                await db.execute(
                    "INSERT INTO member_refs (partner_id, member_id, partner_ref)"
                    " VALUES ({}, {}, {})",
                    cause.partner_id,
                    member_id,
                    partner_member_ref,
                )
        except UNIQUE_VIOLATIONS:
            # A concurrent enrolment took the card or reference between our check and insert.
            raise AlreadyExists(
                "a member with this card number or reference already exists"
            ) from None
        return Enrolled(member_id, card_number, rfc3339(created))

    return await run_keyed(cause, Enrolled, operation, lambda: now_us(clock))


async def member_by_card(card_number: str) -> str:
    row = await Member.select(Member.id).where(Member.card_number == card_number).first()
    if row is None:
        raise NotFound("no member with this card number")
    return str(row["id"])


async def member_refs(member_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await MemberRef.select(
        MemberRef.partner_id, MemberRef.partner_ref
    ).where(MemberRef.member_id == member_id)
    return rows
