"""A lot found by the entry that created it, through an index.

Reversing an earn reads the earn's lot (``journal.lot_of_entry``). Without an index on
``lots.entry_id`` that was a sequential scan of every lot in the coalition, on every reversal:
a PostgreSQL profile of the API benchmark showed it (docs/performance.md).

On a large ledger, build the index first without blocking writes (the migration then keeps it):
CREATE INDEX CONCURRENTLY lots_entry ON lots (entry_id)
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-02T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "index lots by their entry"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl("CREATE INDEX IF NOT EXISTS lots_entry ON lots (entry_id)")

    manager.add_raw(run)
    return manager
