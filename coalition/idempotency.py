"""Keyed execution: a partner's retry with the same Idempotency-Key gets the first answer.

The record is written in the same transaction as the entry it describes, so an entry never
exists without its record nor a record without its entry. A business rejection rolls the
transaction back and is then remembered in a transaction of its own; a concurrent twin that
loses the race on the unique ``(partner_id, idempotency_key)`` index reads the winner's record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import msgspec

from coalition import db
from coalition.errors import CoalitionError, IdempotencyKeyReused
from coalition.journal import Cause

T = TypeVar("T", bound=msgspec.Struct)

UNIQUE_VIOLATIONS = (asyncpg.UniqueViolationError, sqlite3.IntegrityError)


async def run_keyed(
    cause: Cause,
    result_type: type[T],
    operation: Callable[[], Awaitable[T]],
    now_us: Callable[[], int],
) -> tuple[T, bool]:
    """Run ``operation`` in one write transaction, at most once per (partner, key).

    Returns ``(result, replayed)``; raises the (possibly remembered) ``CoalitionError``.
    Callers look for a stored answer first (``replay``), outside the transaction; a twin that
    completes after that look is caught here by the unique index on the record.
    """
    if cause.idempotency_key is None:
        async with db.write_transaction():
            return await operation(), False
    try:
        async with db.write_transaction():
            result = await operation()
            await _insert_record(cause, "ok", msgspec.json.encode(result), now_us())
        return result, False
    except CoalitionError as rejection:
        failure: Exception = rejection
        try:
            async with db.write_transaction():
                await _insert_record(cause, "error", rejection.to_record(), now_us())
        except UNIQUE_VIOLATIONS:
            pass  # a concurrent twin stored its outcome first: answer with that one
        else:
            raise  # remembered now; this first answer is not a replay
    except UNIQUE_VIOLATIONS as conflict:
        failure = conflict  # a twin won the race, or another unique index refused the write
    stored = await replay(cause, result_type)  # raises a remembered rejection
    if stored is None:
        raise failure
    return stored, True


async def replay(cause: Cause, result_type: type[T]) -> T | None:
    """The stored result for this key, or None; raises a stored rejection or a key reuse."""
    row = await db.fetch_one(
        "SELECT fingerprint, outcome, result FROM idempotency_records"
        " WHERE partner_id = {} AND idempotency_key = {}",
        cause.partner_id,
        cause.idempotency_key,
    )
    if row is None:
        return None
    if row["fingerprint"] != cause.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request",
            idempotency_key=cause.idempotency_key,
        )
    if row["outcome"] == "error":
        raise CoalitionError.from_record(row["result"])
    return msgspec.json.decode(row["result"], type=result_type)


async def _insert_record(cause: Cause, outcome: str, result: bytes, now_us: int) -> None:
    # The entry this key produced, if any, is found by the same (partner, key) pair.
    await db.execute(
        "INSERT INTO idempotency_records (partner_id, idempotency_key, fingerprint, outcome,"
        " result, entry_id, created_at_us) VALUES ({}, {}, {}, {}, {},"
        " (SELECT id FROM entries WHERE partner_id = {} AND idempotency_key = {}), {})",
        cause.partner_id,
        cause.idempotency_key,
        cause.fingerprint or "",
        outcome,
        result.decode(),
        cause.partner_id,
        cause.idempotency_key,
        now_us,
    )
