"""Ledger work done by jobs rather than partners: lot expiry and the hold-timeout sweep.

Both are safe to run again and concurrently (arq runs jobs at least once): each member is
handled in its own transaction under the member lock, and re-reads what is still due.
"""

from __future__ import annotations

from collections import defaultdict

from coalition import db, journal
from coalition.errors import CoalitionError
from coalition.journal import Cause, Movement, NewEntry
from coalition.ledger import expired_account, member_account, new_id
from coalition.service import Ledger

BATCH_MEMBERS = 500


async def expire_lots(ledger: Ledger, run_id: str) -> int:
    """Expire every lot whose ``expires_at`` has passed; the points become breakage.

    Returns the number of points expired.
    """
    cause = Cause(job="expiry", run_id=run_id)
    total = 0
    while True:
        now = ledger.now_us()
        rows = await db.fetch(
            "SELECT DISTINCT member_id FROM lots WHERE remaining > 0 AND expires_at_us <= {}"
            " ORDER BY member_id LIMIT {}",
            now,
            BATCH_MEMBERS,
        )
        if not rows:
            return total
        for row in rows:
            async with db.write_transaction():
                # posted_at is read inside the transaction: the write deadline bounds it.
                total += await _expire_member(cause, row["member_id"], ledger.now_us())


async def _expire_member(cause: Cause, member_id: str, now_us: int) -> int:
    await journal.lock_member(member_id)
    lots = [
        journal.lot_of(r)
        for r in await db.fetch(
            "SELECT id, issuer_id, remaining, earned_at_us, expires_at_us FROM lots"
            " WHERE member_id = {} AND remaining > 0 AND expires_at_us <= {} ORDER BY id",
            member_id,
            now_us,
        )
    ]
    if not lots:
        return 0  # another run got here first
    points = sum(lot.remaining for lot in lots)
    by_issuer: dict[str, int] = defaultdict(int)
    for lot in lots:
        by_issuer[lot.issuer_id] += lot.remaining
    entry = NewEntry(new_id("txn"), "expiry", cause, now_us, points, member_id=member_id)
    postings = [(member_account(member_id), -points)]
    postings += [(expired_account(issuer), n) for issuer, n in sorted(by_issuer.items())]
    writes = journal.Writes()
    journal.insert_entry(writes, entry, postings)
    movements = [Movement(lot, "expire", -lot.remaining, -lot.remaining) for lot in lots]
    journal.insert_movements(writes, entry, member_id, movements)
    journal.update_member(writes, member_id, available=-points)
    await writes.run()
    return points


async def sweep_expired_holds(ledger: Ledger, run_id: str, limit: int = 1000) -> int:
    """Void every open hold past its ``hold_expires_at``. Returns how many it resolved."""
    cause = Cause(job="hold-timeout", run_id=run_id)
    rows = await db.fetch(
        "SELECT id FROM holds WHERE status = 'held' AND expires_at_us <= {}"
        " ORDER BY expires_at_us LIMIT {}",
        ledger.now_us(),
        limit,
    )
    resolved = 0
    for row in rows:
        try:
            async with db.write_transaction():
                resolved_hold = await ledger.resolve_hold(cause, row["id"], "hold_expiry", None)
                await resolved_hold.writes.run()
            resolved += 1
        except CoalitionError:
            pass  # captured or voided between our read and the member lock: nothing to do
    return resolved
