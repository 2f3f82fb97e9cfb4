"""Group commit (PostgreSQL): the partner API's earns and redemptions share transactions.

A write request costs the server and PostgreSQL mostly per round trip, not per row
(docs/performance.md). So the requests that arrive while earlier ones are being written wait in
a queue, and the next transaction takes them all: one ``BEGIN``, one call locking every member
(``journal.lock_members``, in id order), each use case deciding on what it read, one statement
with all their writes and idempotency records, one ``COMMIT``. At low load a batch holds one
request and costs what a lone transaction does; under load the four round trips are shared.

A batch never changes an answer, because the lone transaction remains the source of truth:
* a batch holds at most one request per member and per idempotency key (the rest wait for the
  next), so no request reads what another in its batch is about to write;
* a request whose use case raises (a rejection to be remembered, a member not found) leaves the
  batch and runs alone (``RunAlone``), exactly as it would have without batching;
* if PostgreSQL refuses the batch (a twin's unique key, a check), nothing was committed and
  every request in it runs alone.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec

from coalition import db, journal
from coalition.idempotency import add_record
from coalition.journal import Cause, Locked, Pending

T = TypeVar("T")

Decide = Callable[[Locked, int], Awaitable[Pending[T]]]


class RunAlone(Exception):
    """This request was not committed in a batch: run it in a transaction of its own."""


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    cause: Cause
    member_id: str
    lots: bool  # what the use case decides on: lots (a redemption) or the earn's figures
    decide: Decide[T]
    future: asyncio.Future[T]


class WriteBatcher:
    """One event loop's queue of keyed writes and the batches that commit them.

    ``max_batches`` transactions run at once (so the pool keeps connections for the rest);
    each takes up to ``max_jobs`` requests.
    """

    def __init__(self, now_us: Callable[[], int], max_batches: int, max_jobs: int) -> None:
        self._now_us = now_us
        self.max_batches = max_batches
        self.max_jobs = max_jobs
        self._queue: deque[_Job[Any]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()
        self.batches = 0  # committed batches, and the requests they held (for tests and logs)
        self.committed = 0

    async def submit(self, cause: Cause, member_id: str, lots: bool, decide: Decide[T]) -> T:
        """The request's result once its batch committed; raises ``RunAlone`` if it was not."""
        job: _Job[T] = _Job(cause, member_id, lots, decide, self.loop.create_future())
        self._queue.append(job)
        if self._running < self.max_batches:
            self._running += 1
            # A fresh context: the driver serves many requests and must not inherit the
            # first one's (a transaction of Piccolo's lives in a context variable).
            task = self.loop.create_task(self._drive(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await job.future

    async def _drive(self) -> None:
        try:
            while jobs := self._take():
                await self._commit(jobs)
        except BaseException:  # cancelled (the loop is closing): nobody will take the rest
            while self._queue:
                self._queue.popleft().future.cancel()
            raise
        finally:
            self._running -= 1  # at once, not in a callback: a submit may look right after

    def _take(self) -> list[_Job[Any]]:
        """The next batch, in arrival order: one request per member and per key."""
        taken: list[_Job[Any]] = []
        members: set[str] = set()
        keys: set[tuple[str | None, str | None]] = set()
        later: list[_Job[Any]] = []
        while self._queue and len(taken) < self.max_jobs:
            job = self._queue.popleft()
            if job.future.done():
                continue  # its request was cancelled while it waited
            key = (job.cause.partner_id, job.cause.idempotency_key)
            if job.member_id in members or key in keys:
                later.append(job)
                continue
            members.add(job.member_id)
            keys.add(key)
            taken.append(job)
        self._queue.extendleft(reversed(later))
        return taken

    async def _commit(self, jobs: list[_Job[Any]]) -> None:
        decided: list[tuple[_Job[Any], Pending[Any]]] = []
        alone: list[_Job[Any]] = []
        try:
            async with db.write_transaction():
                now = self._now_us()
                locked = await journal.lock_members({j.member_id: j.lots for j in jobs}, now)
                for job in jobs:
                    member = locked.get(job.member_id)
                    if member is None:
                        alone.append(job)  # NotFound, answered (and remembered) alone
                        continue
                    try:
                        pending = await job.decide(member, now)
                    except Exception:  # a rejection to remember, or a bug: both alone
                        alone.append(job)
                        continue
                    encoded = msgspec.json.encode(pending.result)
                    add_record(pending.writes, job.cause, "ok", encoded, now)
                    decided.append((job, pending))
                await journal.run_together([pending.writes for _, pending in decided])
        except asyncpg.PostgresError:
            alone, decided = jobs, []  # refused as a whole: nothing was committed
        except BaseException as error:  # the write deadline, a lost connection; or cancelled
            for job in jobs:
                _fail(job, error)
            if isinstance(error, Exception):
                return
            raise
        if decided:
            self.batches += 1
            self.committed += len(decided)
        for job, pending in decided:
            if not job.future.done():
                job.future.set_result(pending.result)
        for job in alone:
            _fail(job, RunAlone())


def _fail(job: _Job[Any], error: BaseException) -> None:
    if job.future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        job.future.cancel()
    else:
        job.future.set_exception(error)
