"""The arq worker: nightly lot expiry and settlement, the hold-timeout sweeper, and the
per-statement jobs settlement fans out. Run with ``coalition worker``."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import msgspec
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Function, Worker, func

from coalition import db
from coalition.clock import Clock, system_clock
from coalition.service import Ledger
from coalition.settings import Settings
from settlement import tasks
from settlement.service import Settler

SWEEP_SECONDS = set(range(0, 60, 5))  # holds past their deadline are voided within ~5 s
EXPIRY_BEFORE_SETTLEMENT = timedelta(minutes=15)  # lots expire before the day is settled


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}queue"


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis_url)


def functions() -> list[Function]:
    return [
        func(tasks.settle_due, max_tries=5, timeout=1800),
        func(tasks.sign_statement, max_tries=5, timeout=600),
        func(tasks.expire, max_tries=3, timeout=1800),
        func(tasks.sweep_holds, max_tries=1, timeout=60),
    ]


def build_worker(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    burst: bool = False,
    with_cron: bool = True,
    manage_database: bool = True,
    **overrides: Any,
) -> Worker:
    hour, minute = (int(part) for part in settings.settlement_time.split(":"))
    ledger, settler = Ledger(settings, clock), Settler(settings, clock)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx.update(tasks.context(ledger, settler))
        if manage_database:
            db.configure(settings.database_url)
            await db.start(settings.db_pool_max_size)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if manage_database:
            await db.stop()

    expiry = datetime.combine(date.today(), time(hour, minute)) - EXPIRY_BEFORE_SETTLEMENT
    cron_jobs = (
        [
            cron(
                tasks.expire, hour={expiry.hour}, minute={expiry.minute}, max_tries=3, timeout=1800
            ),
            cron(
                tasks.settle_due,
                hour={hour},
                minute={minute},
                run_at_startup=True,
                max_tries=3,
                timeout=1800,
            ),
            cron(tasks.sweep_holds, second=SWEEP_SECONDS, microsecond=0, max_tries=1, timeout=60),
        ]
        if with_cron
        else []
    )
    return Worker(
        functions=functions(),
        cron_jobs=cron_jobs,
        redis_settings=redis_settings(settings),
        queue_name=queue_name(settings),
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
        on_startup=startup,
        on_shutdown=shutdown,
        timezone=settings.zone,  # type: ignore[arg-type]  # any tzinfo works
        burst=burst,
        max_tries=5,
        job_timeout=1800,
        keep_result=3600,
        **overrides,
    )
