"""Settings: one frozen struct, read from ``COALITION_*`` environment variables at entry points."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

ENV_PREFIX = "COALITION_"
GRACE_MIN_SECONDS = 60  # twice coalition.db.WRITE_DEADLINE_SECONDS


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything configurable. Money and rates are exact; units are last in the names."""

    database_url: str = "sqlite:///.coalition/coalition.sqlite3"
    redis_url: str = "redis://127.0.0.1:6379/0"
    db_pool_max_size: int = 20  # PostgreSQL connections per process
    # PostgreSQL: earns and redemptions committed together (coalition/batching.py), in up to
    # this many transactions at once per process (0: each request in its own transaction),
    # each holding up to write_batch_max_requests requests.
    write_batches: int = 1
    write_batch_max_requests: int = 32
    time_zone: str = "UTC"
    settlement_currency: str = "EUR"
    point_value: Decimal = Decimal("0.01")  # money per point, in major units of the currency
    clearing_fee_bps: int = 100
    lot_validity_months: int = 24
    hold_ttl_default_seconds: int = 900
    hold_ttl_max_seconds: int = 7 * 24 * 3600
    # The partner API
    public_authority: str = "127.0.0.1:8000"  # what partners sign as @authority; never Host
    signature_max_age_seconds: int = 300
    signature_clock_skew_seconds: int = 30
    request_max_body_bytes: int = 64 * 1024
    rate_limit_per_second: int = 2000  # per partner
    redis_key_prefix: str = "coalition:"
    idempotency_in_flight_seconds: int = 60
    # Settlement
    settlement_time: str = "00:30"  # local time of the nightly run
    settlement_grace_seconds: int = 300  # a period is settled no earlier than its end + grace
    statement_key_path: str = ".coalition/keys/statement.private.pem"
    settlement_start_date: str = ""  # YYYY-MM-DD go-live date; default: the first ledger activity

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.time_zone!r}") from None
        if not (len(self.settlement_currency) == 3 and self.settlement_currency.isupper()):
            raise ValueError(
                f"settlement_currency must be an ISO 4217 code: {self.settlement_currency!r}"
            )
        if self.point_value <= 0:
            raise ValueError("point_value must be positive")
        if not 0 <= self.clearing_fee_bps <= 10_000:
            raise ValueError("clearing_fee_bps must be within 0..10000")
        if self.lot_validity_months < 1:
            raise ValueError("lot_validity_months must be at least 1")
        if self.settlement_grace_seconds < GRACE_MIN_SECONDS:
            # Entries commit within the write deadline (30 s) of their posted_at; the grace
            # must be longer, or a late commit could miss its period's run.
            raise ValueError(f"settlement_grace_seconds must be at least {GRACE_MIN_SECONDS}")
        if self.write_batches < 0 or self.write_batch_max_requests < 1:
            raise ValueError("need write_batches >= 0 and write_batch_max_requests >= 1")
        if not 1 <= self.hold_ttl_default_seconds <= self.hold_ttl_max_seconds:
            raise ValueError("need 1 <= hold_ttl_default_seconds <= hold_ttl_max_seconds")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``COALITION_<FIELD>`` variables, converted and validated."""
        env = os.environ if environ is None else environ
        fields = set(cls.__struct_fields__)
        values: dict[str, str] = {}
        for name, value in env.items():
            if not name.startswith(ENV_PREFIX) or name.startswith(ENV_PREFIX + "TEST_"):
                continue
            field = name[len(ENV_PREFIX) :].lower()
            if field not in fields:
                # A misspelt variable would silently fall back to a default (a fresh SQLite file
                # instead of the production database): refuse it.
                raise ValueError(f"unknown setting {name}")
            values[field] = value
        return msgspec.convert(values, cls, strict=False)
