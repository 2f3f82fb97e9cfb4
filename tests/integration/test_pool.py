"""The PostgreSQL pool: no reset round trip as connections go back, transactions still end,
and the API's connections plan each statement once."""

from __future__ import annotations

import secrets

import asyncpg
import pytest
from redis.asyncio import Redis

from coalition import db
from partners.app import create_app
from tests.conftest import DATABASE_URL
from tests.databases import BACKEND
from tests.integration.api_support import api_settings

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="the pool is PostgreSQL's")


async def _backends() -> list[dict[str, str]]:
    """Every other session on the test database: its state and the last query it ran."""
    inspector = await asyncpg.connect(DATABASE_URL)
    try:
        rows = await inspector.fetch(
            "SELECT state, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await inspector.close()
    return [dict(r) for r in rows]


async def test_a_released_connection_runs_no_reset_query() -> None:
    """asyncpg's default reset is one more round trip on every release (three per request);
    the last statement a pooled session ran is ours, not the reset."""
    marker = f"pool-{secrets.token_hex(4)}"
    await db.fetch(f"SELECT '{marker}' AS marker")
    last = [b["query"] for b in await _backends()]
    assert any(marker in q for q in last), last
    assert not any("pg_advisory_unlock_all" in q for q in last), last


async def test_a_transaction_left_open_is_rolled_back_on_release() -> None:
    """Skipping the reset query must not keep an abandoned transaction (or its locks) open."""
    pool = db.engine().pool  # type: ignore[attr-defined]
    async with pool.acquire() as connection:
        await connection.execute("BEGIN")
        await connection.execute("SELECT id FROM members LIMIT 1 FOR UPDATE")
    states = [b["state"] for b in await _backends()]
    assert "idle in transaction" not in states, states


async def test_the_apis_connections_plan_each_statement_once() -> None:
    """The API's pool reuses one generic plan per prepared statement from its first call;
    PostgreSQL's default plans the first five calls of every statement afresh."""
    await db.stop()  # the test session's pool: the app opens its own
    try:
        settings = api_settings(DATABASE_URL)
        app = create_app(settings, redis=Redis.from_url(settings.redis_url))
        async with app.lifespan():  # the app's startup and shutdown, in this event loop
            pool = db.engine().pool  # type: ignore[attr-defined]
            query = f"SELECT id FROM members WHERE id = $1 -- {secrets.token_hex(4)}"
            async with pool.acquire() as connection:
                for _ in range(3):
                    await connection.fetch(query, "nobody")
                plans = await connection.fetchrow(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement = $1",
                    query,
                )
                mode = await connection.fetchval("SHOW plan_cache_mode")
        assert mode == "force_generic_plan"
        assert plans is not None
        assert (plans["generic_plans"], plans["custom_plans"]) == (3, 0)
    finally:
        await db.start()
