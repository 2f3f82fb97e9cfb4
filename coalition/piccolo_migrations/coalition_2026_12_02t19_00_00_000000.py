"""PostgreSQL: lock a member and read what the use case decides on, in one round trip.

A use case locks the member row, then reads what it decides on: a redemption the lots it will
spend from, an earn the points past expiry that the nightly job has not swept (its answer
reports the spendable balance). Those reads must be statements that start after the lock is
granted: a single statement such as ``WITH m AS (SELECT ... FOR UPDATE) SELECT ... FROM lots``
reads with a snapshot taken before it waited for the lock, and would miss what the previous
holder of the lock wrote. So it took two statements, two round trips, both while holding the
lock that every request on the member queues on. A VOLATILE PL/pgSQL function takes a fresh
snapshot for each statement it runs (READ COMMITTED), so it runs both in one call.

``lock_member_lots``: the member's row, repeated on each of their unexpired lots (once, with
NULL lot columns, when they have none), in consumption order.
``lock_member_for_earn``: the member's row, the id of the lot the earn will write (from the
sequence) and ``spendable``, the balance less lots past expiry.

SQLite has no functions and needs none: its write transaction holds the database's lock from
its start, and its reads cost no network round trip.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-02T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "lock a member and read what a use case decides on, in one call"

LOCK_MEMBER_LOTS = """
CREATE OR REPLACE FUNCTION lock_member_lots(p_member text, p_now bigint)
RETURNS TABLE (
    id text, status text, available_points bigint, held_points bigint, debt_points bigint,
    lot_id bigint, issuer_id text, remaining bigint, earned_at_us bigint, expires_at_us bigint
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM FROM members m WHERE m.id = p_member FOR UPDATE;
    -- A second statement, so a second snapshot: taken with the lock held.
    RETURN QUERY
    SELECT m.id::text, m.status::text, m.available_points, m.held_points, m.debt_points,
           l.id, l.issuer_id::text, l.remaining, l.earned_at_us, l.expires_at_us
    FROM members m
    LEFT JOIN lots l ON l.member_id = m.id AND l.remaining > 0 AND l.expires_at_us > p_now
    WHERE m.id = p_member
    ORDER BY l.expires_at_us, l.earned_at_us, l.id;
END
$$
"""

LOCK_MEMBER_FOR_EARN = """
CREATE OR REPLACE FUNCTION lock_member_for_earn(p_member text, p_now bigint)
RETURNS TABLE (
    id text, status text, available_points bigint, held_points bigint, debt_points bigint,
    new_lot_id bigint, spendable bigint
)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM FROM members m WHERE m.id = p_member FOR UPDATE;
    RETURN QUERY
    SELECT m.id::text, m.status::text, m.available_points, m.held_points, m.debt_points,
           nextval(pg_get_serial_sequence('lots', 'id')),
           m.available_points - (
               SELECT COALESCE(SUM(l.remaining), 0) FROM lots l
               WHERE l.member_id = m.id AND l.remaining > 0 AND l.expires_at_us <= p_now
           )::bigint
    FROM members m
    WHERE m.id = p_member;
END
$$
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="coalition", description=DESCRIPTION)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type == "postgres":
            await engine.run_ddl(LOCK_MEMBER_LOTS)
            await engine.run_ddl(LOCK_MEMBER_FOR_EARN)

    manager.add_raw(run)
    return manager
