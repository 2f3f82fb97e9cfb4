"""PostgreSQL: lock a hold's member and read the hold and what it took from each lot, in one call.

A capture, a void or a hold's timeout finds the hold's member, locks the member row, reads the
hold again under the lock (another resolution may have committed while it waited), then reads
what the hold took from each lot. That was four round trips, three of them under the lock.
``lock_hold`` does it in one call: as in ``lock_member_lots`` (migration 2026-12-02T19), the
reads after the lock are statements of their own, so their snapshot is taken with it held.

Its rows: the hold, repeated on each lot it took points from (``lot_points``, negative: what
the hold moved out of the lot), ordered by lot; none if the hold does not exist.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lock a hold's member and read the hold and its lots, in one call"

LOCK_HOLD = """
CREATE OR REPLACE FUNCTION lock_hold(p_hold text)
RETURNS TABLE (
    id text, member_id text, partner_id text, points bigint, status text, expires_at_us bigint,
    lot_id bigint, issuer_id text, remaining bigint, earned_at_us bigint,
    lot_expires_at_us bigint, lot_points bigint
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_member text;
BEGIN
    SELECT h.member_id INTO v_member FROM holds h WHERE h.id = p_hold;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM FROM members m WHERE m.id = v_member FOR UPDATE;
    -- A statement of its own, so a snapshot taken with the lock held.
    RETURN QUERY
    SELECT h.id::text, h.member_id::text, h.partner_id::text, h.points::bigint, h.status::text,
           h.expires_at_us, l.id, l.issuer_id::text, l.remaining, l.earned_at_us,
           l.expires_at_us, t.lot_points
    FROM holds h
    LEFT JOIN (
        SELECT mv.lot_id, SUM(mv.lot_points)::bigint AS lot_points
        FROM lot_movements mv WHERE mv.entry_id = p_hold GROUP BY mv.lot_id
    ) t ON true
    LEFT JOIN lots l ON l.id = t.lot_id
    WHERE h.id = p_hold
    ORDER BY l.id;
END
$$
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type == "postgres":
            await engine.run_ddl(LOCK_HOLD)

    manager.add_raw(run)
    return manager
