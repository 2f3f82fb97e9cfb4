"""The auditor: re-checks every ledger invariant over the whole database.

Each check is one SQL query that returns the rows breaking it, so a violation names the
accounts, lots, members or entries involved. ``coalition audit`` prints them and exits 1.
"""

from __future__ import annotations

import msgspec

from coalition import db
from coalition.tables import APPEND_ONLY_TABLES


class Violation(msgspec.Struct, frozen=True):
    check: str
    detail: str


class AuditReport(msgspec.Struct, frozen=True):
    violations: list[Violation]
    entries: int
    members: int

    @property
    def ok(self) -> bool:
        return not self.violations


# Each query returns the rows that break the invariant it is named after.
CHECKS: dict[str, str] = {
    "entry-balances": """
        SELECT e.id AS entry_id, COALESCE(SUM(p.points), 0) AS total, COUNT(p.id) AS legs,
               e.posting_count AS recorded_legs
        FROM entries e LEFT JOIN postings p ON p.entry_id = e.id
        GROUP BY e.id, e.posting_count
        HAVING COALESCE(SUM(p.points), 0) <> 0 OR COUNT(p.id) <> e.posting_count""",
    "orphan-postings": """
        SELECT p.id AS posting_id, p.entry_id, p.account, p.points FROM postings p
        WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = p.entry_id)""",
    "journal-sums-to-zero": """
        SELECT SUM(points) AS total FROM postings HAVING SUM(points) <> 0""",
    "member-balance-vs-journal": """
        SELECT m.id AS member_id, m.available_points,
               COALESCE((SELECT SUM(points) FROM postings WHERE account = 'member:' || m.id), 0)
                 AS journal_points
        FROM members m
        WHERE m.available_points <>
              COALESCE((SELECT SUM(points) FROM postings WHERE account = 'member:' || m.id), 0)""",
    "member-balance-vs-lots": """
        SELECT m.id AS member_id, m.available_points, m.debt_points,
               COALESCE((SELECT SUM(remaining) FROM lots WHERE member_id = m.id), 0) AS lot_points
        FROM members m
        WHERE m.available_points + m.debt_points <>
              COALESCE((SELECT SUM(remaining) FROM lots WHERE member_id = m.id), 0)""",
    "member-debt-vs-debts": """
        SELECT m.id AS member_id, m.debt_points,
               COALESCE((SELECT SUM(remaining) FROM debts WHERE member_id = m.id), 0) AS debt_rows
        FROM members m
        WHERE m.debt_points <>
              COALESCE((SELECT SUM(remaining) FROM debts WHERE member_id = m.id), 0)""",
    "member-held-vs-journal-and-holds": """
        SELECT x.* FROM (
          SELECT m.id AS member_id, m.held_points,
            COALESCE((SELECT SUM(points) FROM postings WHERE account = 'held:' || m.id), 0)
              AS journal_points,
            COALESCE((SELECT SUM(h.points) FROM holds h
                      WHERE h.member_id = m.id AND h.status = 'held'), 0) AS open_hold_points
          FROM members m) x
        WHERE x.held_points <> x.journal_points OR x.held_points <> x.open_hold_points""",
    "lot-remaining-vs-movements": """
        SELECT l.id AS lot_id, l.member_id, l.issuer_id, l.remaining,
               COALESCE((SELECT SUM(lot_points) FROM lot_movements WHERE lot_id = l.id), 0)
                 AS movement_points
        FROM lots l
        WHERE l.remaining <>
              COALESCE((SELECT SUM(lot_points) FROM lot_movements WHERE lot_id = l.id), 0)
           OR l.remaining < 0 OR l.remaining > l.points""",
    "issuer-liability": """
        SELECT i.issuer_id, i.liability_points, i.lot_points, i.open_hold_points FROM (
          SELECT p.id AS issuer_id,
            COALESCE((SELECT SUM(liability_points) FROM lot_movements WHERE issuer_id = p.id), 0)
              AS liability_points,
            COALESCE((SELECT SUM(remaining) FROM lots WHERE issuer_id = p.id), 0) AS lot_points,
            COALESCE((SELECT -SUM(m.lot_points) FROM lot_movements m JOIN holds h
                       ON h.id = m.entry_id AND h.status = 'held'
                      WHERE m.issuer_id = p.id), 0) AS open_hold_points
          FROM partners p) i
        WHERE i.liability_points <> i.lot_points + i.open_hold_points""",
    "hold-resolved-once": """
        SELECT h.id AS hold_id, h.status, COUNT(e.id) AS resolutions
        FROM holds h LEFT JOIN entries e ON e.resolves_hold_id = h.id
        GROUP BY h.id, h.status
        HAVING COUNT(e.id) > 1 OR (h.status = 'held' AND COUNT(e.id) <> 0)
            OR (h.status <> 'held' AND COUNT(e.id) <> 1)""",
    "one-entry-per-idempotency-key": """
        SELECT partner_id, idempotency_key, COUNT(*) AS entries FROM entries
        WHERE idempotency_key IS NOT NULL
        GROUP BY partner_id, idempotency_key HAVING COUNT(*) > 1""",
    "entry-has-its-idempotency-record": """
        SELECT e.id AS entry_id, e.partner_id, e.idempotency_key FROM entries e
        WHERE e.idempotency_key IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM idempotency_records r
          WHERE r.partner_id = e.partner_id AND r.idempotency_key = e.idempotency_key
            AND r.outcome = 'ok' AND r.entry_id = e.id)""",
    "entry-has-a-cause": """
        SELECT id AS entry_id, kind FROM entries
        WHERE NOT ((partner_id IS NOT NULL AND job IS NULL AND kind NOT IN ('expiry'))
                   OR (job IS NOT NULL AND run_id IS NOT NULL))""",
}


async def _guards_installed() -> list[Violation]:
    """Append-only is enforced by triggers; their absence means UPDATE/DELETE was possible."""
    if db.is_postgres():
        rows = await db.fetch(
            "SELECT c.relname AS table_name, COUNT(*) AS guards FROM pg_trigger t"
            " JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE '%append_only%'"
            " GROUP BY c.relname"
        )
    else:
        rows = await db.fetch(
            "SELECT tbl_name AS table_name, COUNT(*) AS guards FROM sqlite_master"
            " WHERE type = 'trigger' AND name LIKE '%append_only%' GROUP BY tbl_name"
        )
    guarded = {r["table_name"] for r in rows}
    return [
        Violation("append-only-guard", f"table {t} has no append-only trigger: rows could change")
        for t in APPEND_ONLY_TABLES
        if t not in guarded
    ]


async def audit() -> AuditReport:
    violations = await _guards_installed()
    for name, sql in CHECKS.items():
        for row in await db.fetch(sql):
            detail = ", ".join(f"{k}={v}" for k, v in row.items())
            violations.append(Violation(name, detail))
    counts = await db.fetch_one(
        "SELECT (SELECT COUNT(*) FROM entries) AS entries,"
        " (SELECT COUNT(*) FROM members) AS members"
    )
    assert counts is not None
    return AuditReport(violations, int(counts["entries"]), int(counts["members"]))
