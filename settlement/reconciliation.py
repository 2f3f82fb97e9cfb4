"""Liability reconciliation: the breaks that stop a run from publishing.

Each break names the issuer or accounts and the amounts involved, so an operator can find it.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
import msgspec

from coalition import db, fingerprints
from coalition.audit import CHECKS
from settlement.calc import RollForward

# The auditor's checks that settlement depends on (the whole audit is `coalition audit`).
# Not `issuer-liability`: it is the all-time sum of roll-forward and liability-vs-lots, which
# every run checks per issuer from figures it reads anyway (docs/settlement.md).
LEDGER_CHECKS = (
    "member-debt-vs-debts",
    "member-held-vs-journal-and-holds",
    "hold-resolved-once",
    "journal-sums-to-zero",
    "entry-balances",
    "member-balance-vs-journal",
    "member-balance-vs-lots",
    "lot-remaining-vs-movements",
)


class Break(msgspec.Struct, frozen=True):
    check: str
    subject: str
    expected: int | None
    actual: int | None
    detail: str


def roll_forward_breaks(
    figures: Mapping[str, RollForward],
    closing_by_movements: Mapping[str, int],
    after_end: Mapping[str, int],
    outstanding_now: Mapping[str, int],
    previous_closing: Mapping[str, int] | None,
) -> list[Break]:
    breaks = []
    issuers = set(figures) | set(outstanding_now) | set(closing_by_movements)
    for issuer in sorted(issuers):
        rf = figures.get(issuer)
        closing = rf.closing_points if rf else 0
        if closing != closing_by_movements.get(issuer, 0):
            breaks.append(
                Break(
                    "roll-forward",
                    f"issuer:{issuer}",
                    closing_by_movements.get(issuer, 0),
                    closing,
                    "opening + issued - reversed - redeemed + refunded - expired "
                    "differs from the lot movements up to period end",
                )
            )
        now = closing + after_end.get(issuer, 0)
        if now != outstanding_now.get(issuer, 0):
            breaks.append(
                Break(
                    "liability-vs-lots",
                    f"issuer:{issuer}",
                    now,
                    outstanding_now.get(issuer, 0),
                    "closing liability plus later movements differs from the "
                    "issuer's lots remaining plus open holds",
                )
            )
        if (
            previous_closing is not None
            and rf
            and rf.opening_points != previous_closing.get(issuer, 0)
        ):
            breaks.append(
                Break(
                    "opening-vs-previous-closing",
                    f"issuer:{issuer}",
                    previous_closing.get(issuer, 0),
                    rf.opening_points,
                    "an entry of an already settled period appeared later",
                )
            )
    return breaks


def zero_sum_breaks(total: int) -> list[Break]:
    if total == 0:
        return []
    return [Break("zero-sum", "coalition", 0, total, "net positions plus fees do not sum to 0")]


async def ledger_breaks() -> list[Break]:
    """The breaks of ``LEDGER_CHECKS``. On PostgreSQL the fingerprints come first, and only the
    checks they cannot clear run the auditor's exact query (docs/settlement.md)."""
    flagged = await _fingerprint_flags() if db.is_postgres() else None
    breaks = []
    for name in LEDGER_CHECKS:
        if flagged is not None and name in fingerprints.EQUALITIES and name not in flagged:
            continue  # its sides are equal: the exact query would find no row
        rows = await db.fetch(CHECKS[name])
        for row in rows:
            subject = next((f"{k}={v}" for k, v in row.items() if k.endswith("_id")), name)
            detail = ", ".join(f"{k}={v}" for k, v in row.items())
            breaks.append(Break(name, subject, None, None, detail))
        if not rows and flagged and name in flagged:
            breaks.append(Break(name, "fingerprint", None, None, FINGERPRINT_ONLY))
    return breaks


FINGERPRINT_ONLY = (
    "the two sides of the check differ, but no row of the check's own query shows it "
    "(rows outside its join, such as postings to an unknown account): run `coalition audit`"
)


async def _fingerprint_flags() -> set[str] | None:
    """The fingerprinted checks whose sides differ, or None if an amount was too large to
    weight (then every check runs exactly)."""
    await db.execute("SAVEPOINT fingerprints")
    try:
        flagged = await fingerprints.failing_checks()
    except asyncpg.NumericValueOutOfRangeError:
        await db.execute("ROLLBACK TO SAVEPOINT fingerprints")
        return None
    await db.execute("RELEASE SAVEPOINT fingerprints")
    return flagged
