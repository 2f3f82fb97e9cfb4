"""A partner's statement lines come from the index alone (PostgreSQL).

The partner-and-time index found a partner's entries in order but fetched every line from the
table, whose pages hold the whole coalition's entries in time order: a 50,000-line statement
read about 50,000 pages (0.37 s of a 10M-posting day's 100 statements each). Carrying the CSV's
columns in the index makes it an index-only scan (0.11 s). SQLite keeps its index: its
statements are small and built page by page.

On a large ledger, build the index first without blocking writes (the migration then keeps it):
CREATE INDEX CONCURRENTLY entries_partner_statement ON entries (partner_id, posted_at_us, id)
INCLUDE (kind, member_id, order_ref, points, occurred_at_us)
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-02T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "statement lines from a covering index"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type != "postgres":
            return
        await engine.run_ddl(
            "CREATE INDEX IF NOT EXISTS entries_partner_statement"
            " ON entries (partner_id, posted_at_us, id)"
            " INCLUDE (kind, member_id, order_ref, points, occurred_at_us)"
        )
        await engine.run_ddl("DROP INDEX IF EXISTS entries_partner_posted")

    manager.add_raw(run)
    return manager
