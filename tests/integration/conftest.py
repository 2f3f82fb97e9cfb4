"""Integration fixtures: one real database per run (SQLite file or PostgreSQL), migrated once;
the auditor runs after every test and fails it on any violation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coalition import db
from coalition.audit import audit
from coalition.migrate import migrate
from coalition.service import Ledger
from coalition.settings import Settings
from tests import databases
from tests.conftest import DATABASE_URL
from tests.integration.api_support import api  # noqa: F401 - a fixture for the API tests
from tests.support import Coalition, ManualClock, make_coalition


@pytest.fixture(scope="session", autouse=True)
async def database() -> AsyncIterator[str]:
    await databases.create(DATABASE_URL)
    try:
        await migrate()
        await db.start()
        yield DATABASE_URL
        await db.stop()
    finally:
        await databases.drop(DATABASE_URL)


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url=DATABASE_URL)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(settings: Settings, clock: ManualClock) -> Ledger:
    return Ledger(settings, clock)


@pytest.fixture
async def world(ledger: Ledger, clock: ManualClock) -> AsyncIterator[Coalition]:
    yield await make_coalition(ledger, clock)
    report = await audit()
    assert report.ok, "\n".join(f"{v.check}: {v.detail}" for v in report.violations)
