"""Run the Piccolo migrations against the configured database."""

from __future__ import annotations

from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.engine.sqlite import SQLiteEngine

from coalition import db


async def migrate() -> None:
    engine = db.engine()
    if isinstance(engine, SQLiteEngine):
        # WAL lets readers (balance queries, settlement) run while a writer commits.
        await engine.run_ddl("PRAGMA journal_mode=WAL")
    result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}")
