"""The cached placeholder compilation gives the very text Piccolo's QueryString compiles to."""

from __future__ import annotations

from piccolo.querystring import QueryString

from coalition import audit, db, journal


def test_numbered_matches_piccolo_for_the_hot_path_sql() -> None:
    writes = journal.Writes()
    entry = journal.NewEntry("txn_1", "earn", journal.Cause("p"), 10, 5, member_id="m")
    journal.insert_entry(writes, entry, [("issued:p", -5), ("member:m", 5)])
    journal.update_member(writes, "m", available=5)
    statements = [(sql, args) for sql, args in writes._parts]
    statements.append((audit.CHECKS["entry-balances"], ()))
    for sql, args in statements:
        expected, _ = QueryString(sql, *args).compile_string(engine_type="postgres")
        assert db.numbered(sql) == expected
    assert db.numbered("SELECT {} + {}") == "SELECT $1 + $2"
