"""Exit 0 when the test PostgreSQL server answers, 1 otherwise (used by ``make test``)."""

import asyncio
import sys

import asyncpg

from tests.databases import admin_dsn


async def main() -> int:
    try:
        connection = await asyncpg.connect(admin_dsn(), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return 1
    await connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
