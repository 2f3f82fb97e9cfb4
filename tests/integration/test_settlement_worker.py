"""Settlement by the real arq worker on real Redis: in burst mode in-process, and as a separate
process SIGKILLed in the middle of a run and restarted."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from datetime import date

import msgspec
import pytest
from arq import create_pool
from redis.asyncio import Redis

from coalition import db
from coalition.settings import Settings
from settlement import documents, statement_key
from settlement.service import OPERATOR
from settlement.worker import build_worker, queue_name, redis_settings
from tests.conftest import DATABASE_URL
from tests.integration.api_support import api_settings
from tests.integration.settlement_support import STATEMENT_KEY
from tests.integration.test_settlement import at, build_worked_example, fresh_date
from tests.support import Coalition


def worker_settings(world: Coalition, day: date) -> Settings:
    return msgspec.structs.replace(
        api_settings(DATABASE_URL),
        statement_key_path=str(STATEMENT_KEY),
        settlement_start_date=day.isoformat(),
    )


async def run_rows(day: date) -> list[dict[str, object]]:
    return await db.fetch("SELECT * FROM settlement_runs WHERE business_date = {}", day.isoformat())


@pytest.fixture
async def day() -> AsyncIterator[date]:
    """A business date of this test's own. Afterwards the stored results of its jobs (their ids
    carry the date) leave the shared Redis, where arq would keep them for an hour."""
    day = fresh_date()
    yield day
    redis = Redis.from_url(api_settings(DATABASE_URL).redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"arq:result:*:{day.isoformat()}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def test_the_worker_settles_a_closed_date_in_burst_mode(world: Coalition, day: date) -> None:
    await build_worked_example(world, day)
    settings = worker_settings(world, day)
    pool = await create_pool(
        redis_settings(settings),
        default_queue_name=queue_name(settings),
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
    )
    await pool.enqueue_job("settle_due", _job_id=f"settle-due:{day}")
    worker = build_worker(
        settings,
        clock=world.clock,
        burst=True,
        with_cron=False,
        manage_database=False,
        poll_delay=0,
        handle_signals=False,
    )
    await worker.main()
    await worker.close()
    await pool.aclose()
    [run] = await run_rows(day)
    assert run["status"] == "published"
    assert worker.jobs_complete >= 2 and worker.jobs_failed == 0
    statements = await db.fetch(
        "SELECT * FROM statements WHERE business_date = {}", day.isoformat()
    )
    assert {s["partner_id"] for s in statements} >= {
        world.cafe,
        world.fashion,
        world.fuel,
        OPERATOR,
    }
    assert all(s["statement_digest"] for s in statements)


@pytest.fixture
async def worker_env(world: Coalition, day: date) -> AsyncIterator[tuple[date, dict[str, str]]]:
    await build_worked_example(world, day)
    settings = worker_settings(world, day)
    env = {
        **os.environ,
        "COALITION_DATABASE_URL": DATABASE_URL,
        "COALITION_REDIS_URL": settings.redis_url,
        "COALITION_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "COALITION_STATEMENT_KEY_PATH": str(STATEMENT_KEY),
        "COALITION_SETTLEMENT_START_DATE": day.isoformat(),
        "COALITION_TEST_NOW": at(day, 1, 0, 31).isoformat(),
    }
    yield day, env


async def start_worker(env: dict[str, str], crash_at: str | None = None) -> int:
    """``coalition worker --burst`` in its own process, at the test's moment in time; returns
    its exit code (negative: killed by that signal)."""
    code = (
        "import os, sys\nfrom freezegun import freeze_time\nfrom coalition.cli import main\n"
        "with freeze_time(os.environ['COALITION_TEST_NOW'], tick=True, real_asyncio=True):\n"
        "    sys.exit(main(['worker', '--burst', '--no-cron']))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**env, **({"COALITION_TEST_CRASH_AT": crash_at} if crash_at else {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        _, stderr = await process.communicate()
        pytest.fail("worker did not finish:\n" + stderr.decode()[-4000:])
    assert process.returncode is not None
    if process.returncode not in (0, -signal.SIGKILL):
        pytest.fail(stderr.decode()[-3000:])
    return process.returncode


async def expire_in_progress_markers(env: dict[str, str]) -> int:
    """A killed job keeps arq's in-progress marker until its timeout (30 min) passes; then arq
    runs it again. Expire the markers of our queue's jobs now instead of waiting."""

    redis = Redis.from_url(env["COALITION_REDIS_URL"])
    job_ids = await redis.zrange(f"{env['COALITION_REDIS_KEY_PREFIX']}queue", 0, -1)
    deleted = 0
    for job_id in job_ids:
        deleted += await redis.delete(b"arq:in-progress:" + job_id)
    await redis.aclose()
    return int(deleted)


async def enqueue_settle_due(env: dict[str, str]) -> None:
    from arq.connections import RedisSettings

    pool = await create_pool(
        RedisSettings.from_dsn(env["COALITION_REDIS_URL"]),
        default_queue_name=f"{env['COALITION_REDIS_KEY_PREFIX']}queue",
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
    )
    day, run = env["COALITION_SETTLEMENT_START_DATE"], secrets.token_hex(4)
    await pool.enqueue_job("settle_due", _job_id=f"settle-due:{day}:{run}")  # the nightly cron
    await pool.aclose()


@pytest.mark.parametrize("crash_at", ["after-prepare", "after-sign:FASHION"])
async def test_a_worker_killed_mid_run_restarts_into_one_identical_run(
    world: Coalition, worker_env: tuple[date, dict[str, str]], crash_at: str
) -> None:
    day, env = worker_env
    crash_at = crash_at.replace("FASHION", world.fashion)
    await enqueue_settle_due(env)
    assert await start_worker(env, crash_at) == -signal.SIGKILL
    [run] = await run_rows(day)
    assert run["status"] == "running"  # killed before publishing: nothing is served yet
    assert await expire_in_progress_markers(env) >= 1  # the jobs running when it was killed
    await enqueue_settle_due(env)  # the next night's cron (or an operator) runs it again
    assert await start_worker(env) == 0
    runs = await run_rows(day)
    assert len(runs) == 1 and runs[0]["status"] == "published" and runs[0]["id"] == run["id"]
    pairs = await db.fetch(
        "SELECT payer_id, payee_id, points FROM cleared_pairs WHERE run_id = {}"
        " ORDER BY payer_id, payee_id",
        run["id"],
    )
    expected = {
        (world.cafe, world.fashion, 250),
        (world.fashion, world.cafe, 500),
        (world.fuel, world.cafe, 100),
        (world.fuel, world.fashion, 100),
        (world.cafe, world.fuel, 80),
    }
    mine = {
        (p["payer_id"], p["payee_id"], p["points"])
        for p in pairs
        if {p["payer_id"], p["payee_id"]} <= {world.cafe, world.fashion, world.fuel}
    }
    assert mine == expected  # each cleared point in exactly one pair row: nothing twice
    keyid, key = statement_key.load(STATEMENT_KEY)
    for row in await db.fetch("SELECT * FROM statements WHERE run_id = {}", run["id"]):
        inner = json.loads(row["signed_json"])["statement"]
        assert documents.sign_json(inner, keyid, key).decode() == row["signed_json"]
    await enqueue_settle_due(env)
    assert await start_worker(env) == 0  # a third time: nothing new
    assert len(await run_rows(day)) == 1
