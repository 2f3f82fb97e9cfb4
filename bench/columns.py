"""The columns the bulk loaders COPY into, in the order their rows are built."""

from __future__ import annotations

ENTRY_COLUMNS = (
    "id",
    "kind",
    "partner_id",
    "member_id",
    "points",
    "amount_minor",
    "currency",
    "order_ref",
    "reason",
    "original_id",
    "resolves_hold_id",
    "key_id",
    "idempotency_key",
    "job",
    "run_id",
    "occurred_at_us",
    "posted_at_us",
    "posting_count",
)
POSTING_COLUMNS = ("id", "entry_id", "account", "points", "posted_at_us")
LOT_COLUMNS = (
    "id",
    "member_id",
    "issuer_id",
    "entry_id",
    "points",
    "remaining",
    "earned_at_us",
    "expires_at_us",
)
MOVEMENT_COLUMNS = (
    "id",
    "entry_id",
    "lot_id",
    "issuer_id",
    "member_id",
    "payee_id",
    "kind",
    "lot_points",
    "liability_points",
    "cleared_points",
    "posted_at_us",
)
MEMBER_COLUMNS = (
    "id",
    "card_number",
    "status",
    "available_points",
    "held_points",
    "debt_points",
    "created_at_us",
)
PARTNER_COLUMNS = (
    "id",
    "name",
    "roles",
    "status",
    "currency",
    "earn_rate",
    "bonus_cap_points",
    "created_at_us",
)

HOLD_COLUMNS = (
    "id",
    "member_id",
    "partner_id",
    "points",
    "captured_points",
    "status",
    "expires_at_us",
    "resolved_by",
)

TABLE_COLUMNS = {
    "members": MEMBER_COLUMNS,
    "holds": HOLD_COLUMNS,
    "entries": ENTRY_COLUMNS,
    "postings": POSTING_COLUMNS,
    "lots": LOT_COLUMNS,
    "lot_movements": MOVEMENT_COLUMNS,
}
