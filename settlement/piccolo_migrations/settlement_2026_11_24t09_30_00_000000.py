"""The application's database role on PostgreSQL: the journal is INSERT and SELECT only.

The append-only triggers already refuse UPDATE and DELETE on journal rows; the grants are a
second, independent wall (an owner can disable a trigger, a role without the privilege cannot
touch the row). The migration creates the group role ``coalition_app`` (NOLOGIN) if it is
missing; deployments log in as a role that is a member of it, never as the owner. Runs last
(the settlement app follows coalition and partners), so every table exists. SQLite has no roles.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-24T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "grant the application role only what it needs"

APP_ROLE = "coalition_app"
# Rows that are never changed once written.
INSERT_ONLY = (
    "entries",
    "postings",
    "lot_movements",
    "idempotency_records",
    "member_refs",
    "cleared_pairs",
)
# Rows the use cases change (SELECT ... FOR UPDATE needs UPDATE too).
CHANGING = (
    "members",
    "lots",
    "holds",
    "debts",
    "partners",
    "partner_keys",
    "settlement_runs",
    "statements",
)

# Roles are shared by the whole cluster; two databases migrating at once may race to create it.
CREATE_ROLE = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    CREATE ROLE {APP_ROLE} NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="settlement", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type != "postgres":
            return
        await engine.run_ddl(CREATE_ROLE)
        await engine.run_ddl(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
        await engine.run_ddl(f"GRANT SELECT, INSERT ON {', '.join(INSERT_ONLY)} TO {APP_ROLE}")
        await engine.run_ddl(
            f"GRANT SELECT, INSERT, UPDATE ON {', '.join(CHANGING)} TO {APP_ROLE}"
        )
        await engine.run_ddl(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")

    manager.add_raw(run)
    return manager
