"""The reliability suite (``make reliability``): scenarios from the spec's reliability-scenarios.md
run against ``coalition serve`` as its own process, on a fresh database (PostgreSQL or SQLite, by
``COALITION_TEST_DB``) and a private Redis, with many signed clients over real sockets.

Each scenario records its figures (``figures`` fixture) and the auditor runs after it
(``audited``). ``--long`` turns the load scenarios into soak runs."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from coalition import db
from coalition.audit import audit
from coalition.migrate import migrate
from tests import databases
from tests.conftest import DATABASE_URL
from tests.reliability import figures as results
from tests.reliability.client import Partner, Tally, onboard
from tests.reliability.figures import Figures
from tests.reliability.stack import Stack

APP_ROLE = "coalition_app"  # created and granted by the migrations (settlement app)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="soak: longer load scenarios")
    parser.addoption("--s8-seconds", type=float, default=120.0, help="S8's duration (spec: 120)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(id): the spec's reliability scenario id")
    config.addinivalue_line("markers", "sqlite: also runs when the suite targets SQLite (S16)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if databases.BACKEND == "sqlite":
        # S16: on SQLite only S1, S2 and S5 (the spec) plus what is marked for it.
        items[:] = [item for item in items if item.get_closest_marker("sqlite")]
    # S9 first: its machine moves its clock by months and runs the real expiry job, which
    # would otherwise also expire (in one long transaction) every lot S7 and S8 left behind.
    items.sort(key=lambda item: not _is_scenario(item, "S9"))


def _is_scenario(item: pytest.Item, name: str) -> bool:
    marker = item.get_closest_marker("scenario")
    return marker is not None and marker.args[0] == name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    figures = getattr(item, "figures", None)
    if figures is not None and report.when == "call":
        figures.passed = report.passed
    elif figures is not None and report.failed:
        figures.passed = False
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if results.RESULTS:
        terminalreporter.write_sep("=", "reliability figures")
        for line in results.summary_lines():
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"written to {results.write(databases.BACKEND)}")


@pytest.fixture(scope="session")
def long_mode(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="session")
def s8_seconds(request: pytest.FixtureRequest, long_mode: bool) -> float:
    return 600.0 if long_mode else float(request.config.getoption("--s8-seconds"))


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


@pytest.fixture(scope="session")
async def app_database_url(database: str) -> AsyncIterator[str]:
    """On PostgreSQL the API logs in as a member of the application role, as in production:
    the suite then proves every use case works with only the grants the migration gives."""
    if databases.BACKEND != "postgres":
        yield database
        return
    login = f"coalition_rel_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(databases.admin_dsn())
    try:
        await admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE {APP_ROLE}")
        parts = urlsplit(database)
        yield urlunsplit(parts._replace(netloc=f"{login}@{parts.hostname}:{parts.port}"))
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()


@pytest.fixture(scope="session")
def stack(app_database_url: str) -> Iterator[Stack]:
    served = Stack(app_database_url, settings={"COALITION_RATE_LIMIT_PER_SECOND": "1000000"})
    served.start()
    yield served
    logs = served.api.logs()
    served.close()
    # Whatever the scenarios did, the server never crashed on a request nor let SQLite's
    # "database is locked" through (S16).
    assert "unhandled error" not in logs and "database is locked" not in logs, logs[-3000:]


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=stack.url, limits=limits, timeout=60) as client:
        yield client


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    marker = request.node.get_closest_marker("scenario")
    name = marker.args[0] if marker else request.node.name
    recorded = Figures(scenario=name, backend=databases.BACKEND)
    results.RESULTS.append(recorded)
    request.node.figures = recorded
    return recorded


@pytest.fixture
async def audited(figures: Figures, tally: Tally) -> AsyncIterator[None]:
    """After the scenario: the auditor over the whole ledger must find nothing."""
    yield
    figures.record(tally.statuses)
    report = await audit()
    figures.audit = "OK" if report.ok else f"{len(report.violations)} violations"
    assert report.ok, "\n".join(f"{v.check}: {v.detail}" for v in report.violations)


Onboard = Callable[..., Awaitable[Partner]]


@pytest.fixture
def partner(http: httpx.AsyncClient, tally: Tally, audited: None) -> Onboard:
    async def make(name: str = "shop", roles: str = "earn,redeem") -> Partner:
        return await onboard(http, tally, name, roles)

    return make
