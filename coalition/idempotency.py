"""Keyed execution: a partner's retry with the same Idempotency-Key gets the first answer.

The record is written in the same transaction as the entry it describes, so an entry never
exists without its record nor a record without its entry. A business rejection rolls the
transaction back and is then remembered in a transaction of its own; a concurrent twin that
loses the race on the unique ``(partner_id, idempotency_key)`` index reads the winner's record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import msgspec

from coalition import db
from coalition.errors import CoalitionError, IdempotencyKeyReused
from coalition.journal import Cause, Pending, Writes

T = TypeVar("T", bound=msgspec.Struct)

UNIQUE_VIOLATIONS = (asyncpg.UniqueViolationError, sqlite3.IntegrityError)


async def run_keyed(
    cause: Cause,
    result_type: type[T],
    operation: Callable[[], Awaitable[T | Pending[T]]],
    now_us: Callable[[], int],
) -> tuple[T, bool]:
    """Run ``operation`` in one write transaction, at most once per (partner, key).

    Returns ``(result, replayed)``; raises the (possibly remembered) ``CoalitionError``.
    Callers look for a stored answer first (``replay``), outside the transaction; a twin that
    completes after that look is caught here by the unique index on the record. An operation
    that answers ``Pending`` leaves its writes to be sent here, with the record among them.
    """
    if cause.idempotency_key is None:
        async with db.write_transaction():
            outcome = await operation()
            if isinstance(outcome, Pending):
                await outcome.writes.run()
                return outcome.result, False
            return outcome, False
    try:
        async with db.write_transaction():
            outcome = await operation()
            if isinstance(outcome, Pending):
                result, writes = outcome.result, outcome.writes
            else:
                result, writes = outcome, Writes()
            add_record(writes, cause, "ok", msgspec.json.encode(result), now_us())
            await writes.run()
        return result, False
    except CoalitionError as rejection:
        failure: Exception = rejection
        try:
            async with db.write_transaction():
                writes = Writes()
                add_record(writes, cause, "error", rejection.to_record(), now_us())
                await writes.run()
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


# What ``answer`` needs of a stored record (partners.keys reads them with the signing key).
RECORD_COLUMNS = ("fingerprint", "outcome", "result")


async def replay(cause: Cause, result_type: type[T]) -> T | None:
    """The stored result for this key, or None; raises a stored rejection or a key reuse."""
    record = await db.fetch_one(
        f"SELECT {', '.join(RECORD_COLUMNS)} FROM idempotency_records"
        " WHERE partner_id = {} AND idempotency_key = {}",
        cause.partner_id,
        cause.idempotency_key,
    )
    return answer(cause, record, result_type)


def answer(cause: Cause, record: dict[str, Any] | None, result_type: type[T]) -> T | None:
    """``replay`` given the record (None: there is none): the stored result, a stored
    rejection raised again, or ``IdempotencyKeyReused`` for a different request."""
    if record is None:
        return None
    if record["fingerprint"] != cause.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request",
            idempotency_key=cause.idempotency_key,
        )
    if record["outcome"] == "error":
        raise CoalitionError.from_record(record["result"])
    return msgspec.json.decode(record["result"], type=result_type)


def add_record(writes: Writes, cause: Cause, outcome: str, result: bytes, now_us: int) -> None:
    """Add the record of ``cause``'s outcome to ``writes``."""
    # The entry this key produced, if any: named by the writes that post it (the same statement
    # cannot see that row), else found by the same (partner, key) pair.
    entry: tuple[Any, ...] = (writes.entry_id,)
    entry_sql = "{}"
    if writes.entry_id is None:
        entry = (cause.partner_id, cause.idempotency_key)
        entry_sql = "(SELECT id FROM entries WHERE partner_id = {} AND idempotency_key = {})"
    writes.add(
        "INSERT INTO idempotency_records (partner_id, idempotency_key, fingerprint, outcome,"
        " result, entry_id, created_at_us)"
        f" VALUES ({{}}, {{}}, {{}}, {{}}, {{}}, {entry_sql}, {{}})",
        cause.partner_id,
        cause.idempotency_key,
        cause.fingerprint or "",
        outcome,
        result.decode(),
        *entry,
        now_us,
    )
