"""Signed statements are compressed with LZ4 rather than PostgreSQL's default pglz.

A 10M-posting day writes 100 CSVs of about 6 MB each; compressing them with pglz took most of
the 12 s that storing them cost (docs/performance.md). LZ4 compresses several times faster for
a little more space. Only values written from now on change. PostgreSQL 14+ built with LZ4;
elsewhere (and on SQLite) nothing changes.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-02T06:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "compress signed statements with lz4"

LZ4_AVAILABLE = (
    "SELECT 1 AS ok FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="settlement", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type != "postgres" or not await engine.run_ddl(LZ4_AVAILABLE):
            return
        await engine.run_ddl(
            "ALTER TABLE statements ALTER COLUMN signed_json SET COMPRESSION lz4,"
            " ALTER COLUMN signed_csv SET COMPRESSION lz4"
        )

    manager.add_raw(run)
    return manager
