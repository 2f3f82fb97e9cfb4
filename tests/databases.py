"""Each test run gets its own database: a fresh SQLite file, or a uniquely named PostgreSQL
database created at the start of the run and dropped at the end."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BACKEND = os.environ.get("COALITION_TEST_DB", "sqlite")


def admin_dsn() -> str:
    return os.environ.get("COALITION_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def new_database_url() -> str:
    if BACKEND == "sqlite":
        directory = tempfile.mkdtemp(prefix="coalition-test-")
        return f"sqlite:///{directory}/coalition.sqlite3"
    if BACKEND == "postgres":
        name = f"coalition_test_{os.getpid()}_{secrets.token_hex(4)}"
        parts = urlsplit(admin_dsn())
        return urlunsplit(parts._replace(path=f"/{name}"))
    raise ValueError(f"COALITION_TEST_DB must be sqlite or postgres, not {BACKEND!r}")


async def create(url: str) -> None:
    if BACKEND == "postgres":
        connection = await asyncpg.connect(admin_dsn())
        try:
            await connection.execute(f'CREATE DATABASE "{urlsplit(url).path[1:]}"')
        finally:
            await connection.close()


async def drop(url: str) -> None:
    if BACKEND == "postgres":
        connection = await asyncpg.connect(admin_dsn())
        try:
            await connection.execute(
                f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)'
            )
        finally:
            await connection.close()
    else:
        shutil.rmtree(os.path.dirname(url.removeprefix("sqlite:///")), ignore_errors=True)
