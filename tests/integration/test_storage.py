"""How PostgreSQL stores what settlement writes (the migrations' physical choices)."""

from __future__ import annotations

import pytest

from coalition import db
from tests.databases import BACKEND


@pytest.mark.skipif(BACKEND != "postgres", reason="TOAST compression is PostgreSQL's")
async def test_signed_statements_are_compressed_with_lz4() -> None:
    """pglz took most of the time to store a big day's CSVs (docs/performance.md)."""
    available = await db.fetch(
        "SELECT 1 AS ok FROM pg_settings"
        " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    )
    rows = await db.fetch(
        "SELECT attname, attcompression::text AS attcompression FROM pg_attribute"
        " WHERE attrelid = 'statements'::regclass AND attname IN ('signed_json', 'signed_csv')"
        " ORDER BY attname"
    )
    compression = {r["attname"]: r["attcompression"] for r in rows}
    if available:
        assert compression == {"signed_csv": "l", "signed_json": "l"}
    else:  # the migration leaves the server's default
        assert set(compression) == {"signed_csv", "signed_json"}
        assert "l" not in compression.values()
