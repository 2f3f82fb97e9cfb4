"""Ledger fingerprints: the auditor's per-row checks as one pass over each table (PostgreSQL).

A check such as "every member's balance equals the sum of their postings" says two functions
keyed by member are equal. The auditor groups both sides and compares them key by key, which on
a 10M-posting day means hash tables of five million entries and a million members: most of a
settlement run. Here each side is a single sum over its table, every row weighted by a keyed
hash of its key: sum over members of w(m) * balance(m) = sum over postings of w(member) * points.
Equal functions give equal sums. Unequal ones give equal sums only if the weights happen to
cancel: each side carries two independent 31-bit weights from a key drawn fresh for every run,
so a break goes unseen with probability about 2^-62 per check, and no one can aim for it in
advance. A mismatch is not the end: the caller then runs the auditor's exact query, which names
the rows. ``coalition audit`` always runs the exact queries.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import NamedTuple

from coalition import db

MASK = 2**31 - 1


class Side(NamedTuple):
    """One side of an equality: SUM(value) over ``table``, weighted by the hash of ``key``
    (or a plain total when ``key`` is None), over the rows ``where`` selects."""

    table: str
    value: str
    key: str | None = None
    where: str | None = None
    int_key: bool = False


ZERO = None  # the other side of "sums to zero"
MEMBER_ACCOUNT = ("substr(account, 8)", "account LIKE 'member:%'")
HELD_ACCOUNT = ("substr(account, 6)", "account LIKE 'held:%'")

# Each check: equalities that hold exactly when the auditor's query of the same name finds no row.
EQUALITIES: dict[str, list[tuple[Side | None, ...]]] = {
    "journal-sums-to-zero": [(Side("postings", "points"), ZERO)],
    "entry-balances": [
        (Side("postings", "points", "entry_id"), ZERO),
        (Side("postings", "1", "entry_id"), Side("entries", "posting_count", "id")),
    ],
    "member-balance-vs-journal": [
        (Side("members", "available_points", "id"), Side("postings", "points", *MEMBER_ACCOUNT))
    ],
    "member-held-vs-journal-and-holds": [
        (
            Side("members", "held_points", "id"),
            Side("postings", "points", *HELD_ACCOUNT),
            Side("holds", "points", "member_id", "status = 'held'"),
        )
    ],
    "member-balance-vs-lots": [
        (
            Side("members", "available_points + debt_points", "id"),
            Side("lots", "remaining", "member_id"),
        )
    ],
    "member-debt-vs-debts": [
        (Side("members", "debt_points", "id"), Side("debts", "remaining", "member_id"))
    ],
    "hold-resolved-once": [  # resolves_hold_id is UNIQUE: at most one entry per hold
        (
            Side("entries", "1", "resolves_hold_id", "resolves_hold_id IS NOT NULL"),
            Side("holds", "1", "id", "status <> 'held'"),
        )
    ],
    "lot-remaining-vs-movements": [
        (
            Side("lots", "remaining", "id", int_key=True),
            Side("lot_movements", "lot_points", "lot_id", int_key=True),
        ),
        (Side("lots", "1", where="remaining < 0 OR remaining > points"), ZERO),
    ],
}


def new_seed() -> int:
    return secrets.randbits(63)


def _width(side: Side) -> int:
    """How many sums a side has: 1 for a plain total, 2 when weighted."""
    return 1 if side.key is None else 2


def _columns(side: Side, seed: int) -> list[str]:
    where = f" FILTER (WHERE {side.where})" if side.where else ""
    if side.key is None:
        return [f"COALESCE(SUM({side.value}){where}, 0)"]
    hashed = f"hash{'int8' if side.int_key else 'text'}extended({side.key}, {seed})"
    # Two weights from the two halves of one 64-bit hash; products stay within BIGINT for
    # amounts below 2^32, and SUM accumulates exactly (numeric).
    weights = (f"({hashed} & {MASK})", f"({hashed} >> 33)")
    return [f"COALESCE(SUM(({side.value}) * {w}){where}, 0)" for w in weights]


def _sides_by_table() -> dict[str, list[Side]]:
    by_table: dict[str, list[Side]] = defaultdict(list)
    for equalities in EQUALITIES.values():
        for equality in equalities:
            for side in equality:
                if side is not None and side not in by_table[side.table]:
                    by_table[side.table].append(side)
    return by_table


SIDES_BY_TABLE = _sides_by_table()


def queries(seed: int) -> dict[str, str]:
    """One query per table: every side's sums as columns c0, c1, ... in side order."""
    result = {}
    for table, sides in SIDES_BY_TABLE.items():
        columns = [c for side in sides for c in _columns(side, seed)]
        listed = ", ".join(f"{c} AS c{i}" for i, c in enumerate(columns))
        result[table] = f"SELECT {listed} FROM {table}"
    return result


async def sums(seed: int) -> dict[Side, tuple[int, ...]]:
    """Every side's weighted sums: one query (one sequential scan) per table."""
    result: dict[Side, tuple[int, ...]] = {}
    for table, sql in queries(seed).items():
        row = await db.fetch_one(sql)
        assert row is not None
        values = [int(v) for v in row.values()]  # c0, c1, ... in side order
        for side in SIDES_BY_TABLE[table]:
            result[side], values = tuple(values[: _width(side)]), values[_width(side) :]
    return result


async def failing_checks(seed: int | None = None) -> set[str]:
    """The checks whose fingerprints differ. Raises ``asyncpg`` NumericValueOutOfRangeError if
    an amount is too large for the weighted product (the caller falls back to exact checks)."""
    found = await sums(new_seed() if seed is None else seed)
    failing = set()
    for name, equalities in EQUALITIES.items():
        for equality in equalities:
            width = next(_width(s) for s in equality if s is not None)
            if len({found[s] if s is not None else (0,) * width for s in equality}) > 1:
                failing.add(name)
    return failing
