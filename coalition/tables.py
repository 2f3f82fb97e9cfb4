"""The coalition schema. Piccolo owns it; the invariants Piccolo cannot express (CHECKs,
composite UNIQUEs, append-only guards) are added by raw DDL in the migrations.

Times are integer microseconds since the Unix epoch, UTC (``*_at_us``): exact, comparable
and identical on SQLite and PostgreSQL. Points and money are integers.
"""

from piccolo.columns import BigInt, BigSerial, Integer, Text, Varchar
from piccolo.table import Table


class Partner(Table, tablename="partners"):
    """A merchant brand in the coalition, with the terms it earns and redeems under."""

    id = Varchar(length=64, primary_key=True)
    name = Varchar(length=200)
    roles = Varchar(length=32)  # comma-separated subset of "earn,redeem"
    status = Varchar(length=16, default="active")  # active | suspended
    currency = Varchar(length=3)
    earn_rate = Varchar(length=32)  # exact decimal text: points per major currency unit
    bonus_cap_points = BigInt(default=0)
    created_at_us = BigInt()


class Member(Table, tablename="members"):
    """A coalition member and the balances the hot path locks and updates."""

    id = Varchar(length=40, primary_key=True)
    card_number = Varchar(length=19, null=True, default=None, unique=True)
    status = Varchar(length=16, default="active")
    available_points = BigInt(default=0)  # unexpired-or-unswept lots minus debt (journal balance)
    held_points = BigInt(default=0)
    debt_points = BigInt(default=0)
    created_at_us = BigInt()


class MemberRef(Table, tablename="member_refs"):
    """A partner's own reference for a member (unique per partner)."""

    id = BigSerial(primary_key=True)
    partner_id = Varchar(length=64)
    member_id = Varchar(length=40)
    partner_ref = Varchar(length=128)


class Entry(Table, tablename="entries"):
    """A journal entry: one business transaction, with its cause. Append-only."""

    id = Varchar(length=40, primary_key=True)
    kind = Varchar(length=24)
    partner_id = Varchar(length=64, null=True, default=None)
    member_id = Varchar(length=40, null=True, default=None)
    points = BigInt()
    amount_minor = BigInt(null=True, default=None)
    currency = Varchar(length=3, null=True, default=None)
    order_ref = Varchar(length=128, null=True, default=None)
    reason = Varchar(length=200, null=True, default=None)
    original_id = Varchar(length=40, null=True, default=None)
    resolves_hold_id = Varchar(length=40, null=True, default=None, unique=True)
    key_id = Varchar(length=128, null=True, default=None)
    idempotency_key = Varchar(length=255, null=True, default=None)
    job = Varchar(length=32, null=True, default=None)
    run_id = Varchar(length=64, null=True, default=None)
    occurred_at_us = BigInt(null=True, default=None)
    posted_at_us = BigInt()
    posting_count = Integer()


class Posting(Table, tablename="postings"):
    """One leg of an entry. Append-only; an entry's postings sum to zero."""

    id = BigSerial(primary_key=True)
    entry_id = Varchar(length=40)
    account = Varchar(length=120)
    points = BigInt()
    posted_at_us = BigInt()


class Lot(Table, tablename="lots"):
    """Points one earn created; the issuer owes ``remaining`` until spent, expired or reversed."""

    id = BigSerial(primary_key=True)
    member_id = Varchar(length=40)
    issuer_id = Varchar(length=64)
    entry_id = Varchar(length=40)
    points = BigInt()
    remaining = BigInt()
    earned_at_us = BigInt()
    expires_at_us = BigInt()


class LotMovement(Table, tablename="lot_movements"):
    """Every change to a lot, with its effect on the issuer's liability and on clearing.

    ``cleared_points`` are owed by the lot's issuer to ``payee_id`` (negative for a redemption
    reversal). Settlement aggregates this table. Append-only.
    """

    id = BigSerial(primary_key=True)
    entry_id = Varchar(length=40)
    lot_id = BigInt()
    issuer_id = Varchar(length=64)
    member_id = Varchar(length=40)
    payee_id = Varchar(length=64, null=True, default=None)
    kind = Varchar(length=24)
    lot_points = BigInt()  # change to the lot's remaining
    liability_points = BigInt()  # change to the issuer's outstanding liability
    cleared_points = BigInt()
    posted_at_us = BigInt()


class Hold(Table, tablename="holds"):
    """An authorisation: points taken from lots, awaiting capture, void or timeout."""

    id = Varchar(length=40, primary_key=True)  # the hold's entry id (= redemption_id)
    member_id = Varchar(length=40)
    partner_id = Varchar(length=64)
    points = BigInt()
    captured_points = BigInt(default=0)
    status = Varchar(length=16)  # held | captured | voided | expired
    expires_at_us = BigInt()
    resolved_by = Varchar(length=40, null=True, default=None)


class Debt(Table, tablename="debts"):
    """Points a member owes to ``creditor_id`` after an earn reversal the lots could not cover."""

    id = BigSerial(primary_key=True)
    member_id = Varchar(length=40)
    creditor_id = Varchar(length=64)
    entry_id = Varchar(length=40)
    points = BigInt()
    remaining = BigInt()


class IdempotencyRecord(Table, tablename="idempotency_records"):
    """The outcome of a keyed request, stored in the same transaction as its entry."""

    id = BigSerial(primary_key=True)
    partner_id = Varchar(length=64)
    idempotency_key = Varchar(length=255)
    fingerprint = Varchar(length=64)
    outcome = Varchar(length=8)  # ok | error
    result = Text()  # JSON of the result or of the error
    entry_id = Varchar(length=40, null=True, default=None)
    created_at_us = BigInt()


ALL_TABLES: list[type[Table]] = [
    Partner,
    Member,
    MemberRef,
    Entry,
    Posting,
    Lot,
    LotMovement,
    Hold,
    Debt,
    IdempotencyRecord,
]

APPEND_ONLY_TABLES = ("entries", "postings", "lot_movements")
