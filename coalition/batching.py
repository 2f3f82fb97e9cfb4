"""Group commit (PostgreSQL): the partner API's earns and redemptions share transactions.

A write request costs the server and PostgreSQL mostly per round trip, not per row
(docs/performance.md). So the requests that arrive while earlier ones are being written wait in
a queue, and the next transaction takes them all: one ``BEGIN``, one call locking the members
(``journal.lock_members``, never waiting for a row), each use case deciding on what it read, one
statement with all their writes and idempotency records, one ``COMMIT``. At low load a batch
holds one request and costs what a lone transaction does; under load the four round trips are
shared.

A batch never changes an answer, because the lone transaction remains the source of truth:
* a batch holds at most one request per member and per idempotency key (the rest wait for the
  next), so no request reads what another in its batch is about to write;
* a member whose row another transaction holds is left out (``SKIP LOCKED``) and its request
  runs alone, waiting for the lock as it would have: one busy member never stalls a batch;
* a request whose use case raises (a rejection to be remembered, a member not found) leaves the
  batch and runs alone (``RunAlone``), exactly as it would have without batching;
* if the batch fails before its ``COMMIT`` (PostgreSQL refuses a twin's unique key or a check,
  the write deadline passes, the connection drops), nothing was committed and every request in
  it runs alone; a failure during the ``COMMIT`` is every request's answer, as it would be alone.
A request cancelled (its client gone) once its batch has started is still committed; a retry
with its key is answered from the record.
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

# A member whose row was busy when a batch tried it sends its requests straight to the lone path
# for this long: a hot member's requests would otherwise each try a batch first, in vain.
BUSY_MEMBER_SECONDS = 0.5

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
        # Committed batches and the requests they held; batches that ran alone as a whole.
        self.batches = 0
        self.committed = 0
        self.refused = 0
        self._busy: dict[str, float] = {}  # member -> until when its requests run alone

    async def submit(self, cause: Cause, member_id: str, lots: bool, decide: Decide[T]) -> T:
        """The request's result once its batch committed; raises ``RunAlone`` if it was not."""
        until = self._busy.get(member_id)
        if until is not None:
            if self.loop.time() < until:
                raise RunAlone()
            del self._busy[member_id]
        job: _Job[T] = _Job(cause, member_id, lots, decide, self.loop.create_future())
        self._queue.append(job)
        if self._running < self.max_batches:
            self._running += 1
            # A fresh context: the driver serves many requests and must not inherit the
            # first one's.
            task = self.loop.create_task(self._drive(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await job.future

    def _mark_busy(self, member_id: str) -> None:
        now = self.loop.time()
        if len(self._busy) >= 10_000:  # unknown member ids must not grow it without bound
            self._busy = {m: until for m, until in self._busy.items() if until > now}
        self._busy[member_id] = now + BUSY_MEMBER_SECONDS

    async def _drive(self) -> None:
        try:
            while jobs := self._take():
                # Each batch in a fresh context: Piccolo keeps its transaction in a context
                # variable, which a transaction that failed to roll back can leave set.
                await self.loop.create_task(self._commit(jobs), context=contextvars.Context())
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
        written = False  # past this, a failure may be the COMMIT's: its outcome unknown
        try:
            async with db.write_transaction():
                now = self._now_us()
                locked = await journal.lock_members({j.member_id: j.lots for j in jobs}, now)
                for job in jobs:
                    member = locked.get(job.member_id)
                    if member is None:  # not found, or its row is busy: it waits alone
                        self._mark_busy(job.member_id)
                        alone.append(job)
                        continue
                    try:
                        pending = await job.decide(member, now)
                    except Exception:  # a rejection to remember, or a bug: both alone
                        alone.append(job)
                        continue
                    encoded = msgspec.json.encode(pending.result)
                    add_record(pending.writes, job.cause, "ok", encoded, now)
                    if pending.writes.arg_count > journal.MAX_STATEMENT_ARGS:
                        alone.append(job)  # too big to share a statement
                        continue
                    decided.append((job, pending))
                await journal.run_together([pending.writes for _, pending in decided])
                written = True
        except (asyncpg.PostgresError, db.WriteDeadlineExceeded):
            # Refused or rolled back (a COMMIT PostgreSQL refuses is rolled back too).
            alone, decided = jobs, []
            self.refused += 1
        except Exception as error:
            if written:
                for job in jobs:  # e.g. the connection lost during COMMIT: as it would be alone
                    _fail(job, error)
                return
            alone, decided = jobs, []  # nothing was committed
            self.refused += 1
        except BaseException as error:  # cancelled: the loop is closing
            for job in jobs:
                _fail(job, error)
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
