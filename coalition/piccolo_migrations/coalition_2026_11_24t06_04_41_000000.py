"""Invariants the ORM cannot express: CHECKs, composite UNIQUEs, indexes, append-only guards.

SQLite cannot add a CHECK to an existing table, so there each CHECK is a trigger that aborts
the INSERT or UPDATE breaking it; PostgreSQL gets real constraints. Both dialects refuse any
UPDATE or DELETE on the journal tables.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-24T06:04:41:000000"
VERSION = "1.38.0"
DESCRIPTION = "ledger invariants"

APPEND_ONLY = ("entries", "postings", "lot_movements")

CHECKS = {
    "partners": [
        ("partners_status", "status IN ('active', 'suspended')"),
        ("partners_bonus_cap", "bonus_cap_points >= 0"),
    ],
    "members": [
        ("members_held", "held_points >= 0"),
        ("members_debt", "debt_points >= 0"),
        ("members_available", "available_points >= -debt_points"),
    ],
    "lots": [("lots_remaining", "points > 0 AND remaining >= 0 AND remaining <= points")],
    "postings": [("postings_nonzero", "points <> 0")],
    "entries": [("entries_points", "points >= 0 AND posting_count >= 2")],
    "holds": [
        ("holds_points", "points > 0 AND captured_points >= 0 AND captured_points <= points"),
        ("holds_status", "status IN ('held', 'captured', 'voided', 'expired')"),
    ],
    "debts": [("debts_remaining", "points > 0 AND remaining >= 0 AND remaining <= points")],
}

UNIQUE_INDEXES = [
    ("member_refs_partner_ref", "member_refs (partner_id, partner_ref)"),
    ("idempotency_partner_key", "idempotency_records (partner_id, idempotency_key)"),
    ("entries_partner_key", "entries (partner_id, idempotency_key)"),
]

INDEXES = [
    ("lots_member_expiry", "lots (member_id, expires_at_us)"),
    ("lots_expiry", "lots (expires_at_us)"),
    ("lot_movements_posted", "lot_movements (posted_at_us)"),
    ("lot_movements_entry", "lot_movements (entry_id)"),
    ("lot_movements_lot", "lot_movements (lot_id)"),
    ("postings_entry", "postings (entry_id)"),
    ("postings_account", "postings (account)"),
    ("entries_member_partner", "entries (member_id, partner_id, posted_at_us)"),
    ("entries_original", "entries (original_id)"),
    ("entries_posted", "entries (posted_at_us)"),
    ("holds_open", "holds (status, expires_at_us)"),
    ("debts_member", "debts (member_id)"),
]


def postgres_statements() -> list[str]:
    statements = [
        f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition})"
        for table, checks in CHECKS.items()
        for name, condition in checks
    ]
    statements.append(
        "CREATE OR REPLACE FUNCTION coalition_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'append-only table %: % refused', TG_TABLE_NAME, TG_OP; END $$"
    )
    for table in APPEND_ONLY:
        statements.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION coalition_append_only()"
        )
        statements.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION coalition_append_only()"
        )
    return statements


def sqlite_statements() -> list[str]:
    statements = []
    for table, checks in CHECKS.items():
        for name, condition in checks:
            for event in ("INSERT", "UPDATE"):
                statements.append(
                    f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON {table}"
                    f" WHEN NOT ({_new(condition, table)})"
                    f" BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END"
                )
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER {table}_append_only_{event.lower()} BEFORE {event} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, 'append-only table {table}: {event} refused'); END"
            )
    return statements


def _new(condition: str, table: str) -> str:
    """Qualify the columns a CHECK names with NEW. for a SQLite trigger."""
    import re

    columns = {
        "partners": ["status", "bonus_cap_points"],
        "members": ["held_points", "debt_points", "available_points"],
        "lots": ["points", "remaining"],
        "postings": ["points"],
        "entries": ["points", "posting_count"],
        "holds": ["points", "captured_points", "status"],
        "debts": ["points", "remaining"],
    }[table]
    pattern = r"\b(" + "|".join(sorted(columns, key=len, reverse=True)) + r")\b"
    return re.sub(pattern, r"NEW.\1", condition)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        statements = postgres_statements() if engine.engine_type == "postgres" else sqlite_statements()
        statements += [f"CREATE UNIQUE INDEX {name} ON {spec}" for name, spec in UNIQUE_INDEXES]
        statements += [f"CREATE INDEX {name} ON {spec}" for name, spec in INDEXES]
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
