"""PostgreSQL: lock a transaction's member and read what its reversal decides on, in one call.

A reversal reads the original transaction, locks its member, and then, under the lock, reads
how much of it earlier reversals took back and, for a hold, how much was captured. That was
three or four round trips. ``lock_entry`` does it in one call: as in ``lock_member_lots``
(migration 2026-12-02T19), the reads after the lock are a statement of their own, so their
snapshot is taken with it held.

Its row: the entry's ``id``, ``kind``, ``partner_id``, ``member_id`` and ``points``;
``reversed_points``, what its reversals took back so far; and for a hold its ``hold_status``
and ``hold_captured_points`` (NULL otherwise). None if the entry does not exist.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lock a transaction's member and read what its reversal decides on, in one call"

LOCK_ENTRY = """
CREATE OR REPLACE FUNCTION lock_entry(p_entry text)
RETURNS TABLE (
    id text, kind text, partner_id text, member_id text, points bigint,
    reversed_points bigint, hold_status text, hold_captured_points bigint
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_member text;
BEGIN
    SELECT e.member_id INTO v_member FROM entries e WHERE e.id = p_entry;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM FROM members m WHERE m.id = v_member FOR UPDATE;
    -- A statement of its own, so a snapshot taken with the lock held.
    RETURN QUERY
    SELECT e.id::text, e.kind::text, e.partner_id::text, e.member_id::text, e.points::bigint,
           (SELECT COALESCE(SUM(r.points), 0) FROM entries r
            WHERE r.original_id = p_entry
              AND r.kind IN ('earn_reversal', 'redemption_reversal'))::bigint,
           h.status::text, h.captured_points::bigint
    FROM entries e LEFT JOIN holds h ON h.id = e.id
    WHERE e.id = p_entry;
END
$$
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type == "postgres":
            await engine.run_ddl(LOCK_ENTRY)

    manager.add_raw(run)
    return manager
