"""Reading published statements: only runs that published are ever served or exported."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from coalition import db
from coalition.errors import InvalidInput, NotFound

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "pdf": "application/pdf",
}


async def _published(day: date, partner_id: str) -> dict[str, Any]:
    row = await db.fetch_one(
        "SELECT s.signed_json, s.signed_csv FROM statements s JOIN settlement_runs r"
        " ON r.id = s.run_id WHERE s.id = {} AND r.status = 'published'",
        f"{day.isoformat()}:{partner_id}",
    )
    if row is None:
        raise NotFound(f"no published statement for {partner_id} on {day}")
    return row


async def statement_bytes(day: date, partner_id: str, fmt: str) -> bytes:
    row = await _published(day, partner_id)
    if fmt == "json":
        return str(row["signed_json"]).encode()
    if fmt == "csv":
        return str(row["signed_csv"]).encode()
    if fmt == "pdf":
        from settlement.pdf import render_pdf

        return render_pdf(str(row["signed_json"]).encode())
    raise InvalidInput(f"unknown statement format {fmt!r}")


async def statement_partners(day: date) -> list[str]:
    rows = await db.fetch(
        "SELECT s.partner_id FROM statements s JOIN settlement_runs r ON r.id = s.run_id"
        " WHERE s.business_date = {} AND r.status = 'published' ORDER BY s.partner_id",
        day.isoformat(),
    )
    if not rows:
        raise NotFound(f"{day} has no published settlement")
    return [r["partner_id"] for r in rows]


async def settled_dates(partner_id: str, start: date, end: date) -> list[dict[str, Any]]:
    """Published dates in ``[start, end]`` with the partner's net position."""
    rows = await db.fetch(
        "SELECT s.business_date, s.signed_json, s.statement_digest FROM statements s"
        " JOIN settlement_runs r ON r.id = s.run_id WHERE s.partner_id = {}"
        " AND r.status = 'published' AND s.business_date >= {} AND s.business_date <= {}"
        " ORDER BY s.business_date",
        partner_id,
        start.isoformat(),
        end.isoformat(),
    )

    result = []
    for row in rows:
        statement = json.loads(row["signed_json"])["statement"]
        result.append(
            {
                "business_date": row["business_date"],
                "net_position": statement["net_position"],
                "statement_digest": row["statement_digest"],
                "statement": f"/v1/settlements/{row['business_date']}/statement",
            }
        )
    return result
