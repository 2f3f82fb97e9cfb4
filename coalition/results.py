"""What the ledger's use cases return. The partner API sends these as its response bodies, and
an idempotency record stores them, so a replay is byte-identical to the first answer."""

from __future__ import annotations

import msgspec


class Money(msgspec.Struct, frozen=True):
    amount_minor: int
    currency: str


class Enrolled(msgspec.Struct, frozen=True):
    member_id: str
    card_number: str | None
    created_at: str


class Earned(msgspec.Struct, frozen=True):
    transaction_id: str
    points: int
    available_points: int
    expires_at: str
    debt_repaid_points: int
    posted_at: str


class Redemption(msgspec.Struct, frozen=True):
    redemption_id: str
    status: str  # captured | held | voided | expired
    points: int
    value: Money
    hold_expires_at: str | None
    posted_at: str


class Reversal(msgspec.Struct, frozen=True):
    reversal_id: str
    transaction_id: str
    points: int
    debt_points: int  # what the member's lots could not cover (earn reversals only)
    posted_at: str
