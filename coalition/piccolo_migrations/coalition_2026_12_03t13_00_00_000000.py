"""PostgreSQL: lock several members and read what each one's use case decides on, in one call.

The API's writes are committed in batches (``coalition.batching``): one transaction runs the
earns and redemptions of several members. ``lock_members`` locks the members it can at once
(``SKIP LOCKED``): a member whose row another transaction holds is left out, and its request
runs alone, waiting for the lock as it would without batching, so one busy member never holds
up the rest of a batch. Never waiting, a batch can close no lock cycle. Its second statement
then reads with a snapshot taken once every lock is held (see migration 2026-12-02T19 for why
that must be a second statement).

Per member locked, as ``lock_member_for_earn`` or ``lock_member_lots`` would answer: for a
member whose ``p_lots`` is false, one row with ``new_lot_id`` and ``spendable``; for one whose
``p_lots`` is true, one row per unexpired lot in consumption order (one with NULL lot columns if
none). A member that does not exist, or was left out, has no row.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lock several members and read what their use cases decide on, in one call"

LOCK_MEMBERS = """
CREATE OR REPLACE FUNCTION lock_members(p_members text[], p_lots boolean[], p_now bigint)
RETURNS TABLE (
    id text, status text, available_points bigint, held_points bigint, debt_points bigint,
    new_lot_id bigint, spendable bigint,
    lot_id bigint, issuer_id text, remaining bigint, earned_at_us bigint, expires_at_us bigint
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_locked text[];
BEGIN
    SELECT array_agg(s.id) INTO v_locked FROM (
        SELECT m.id FROM members m WHERE m.id = ANY (p_members) ORDER BY m.id
        FOR UPDATE SKIP LOCKED
    ) s;
    -- A second statement, so a second snapshot: taken with every lock held.
    RETURN QUERY
    SELECT m.id::text, m.status::text, m.available_points, m.held_points, m.debt_points,
           CASE WHEN NOT u.lots THEN nextval(pg_get_serial_sequence('lots', 'id')) END,
           CASE WHEN NOT u.lots THEN m.available_points - (
               SELECT COALESCE(SUM(x.remaining), 0) FROM lots x
               WHERE x.member_id = m.id AND x.remaining > 0 AND x.expires_at_us <= p_now
           )::bigint END,
           l.id, l.issuer_id::text, l.remaining, l.earned_at_us, l.expires_at_us
    FROM unnest(p_members, p_lots) AS u(member_id, lots)
    JOIN members m ON m.id = u.member_id AND m.id = ANY (v_locked)
    LEFT JOIN lots l ON u.lots AND l.member_id = m.id AND l.remaining > 0
                        AND l.expires_at_us > p_now
    ORDER BY m.id, l.expires_at_us, l.earned_at_us, l.id;
END
$$
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type == "postgres":
            await engine.run_ddl(LOCK_MEMBERS)

    manager.add_raw(run)
    return manager
