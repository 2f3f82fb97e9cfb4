"""Concurrent requests' lookups share round trips.

Every signed request reads its signing key (with its idempotency record) from PostgreSQL and
is admitted by Redis, one round trip each; in a profile of the API bench the client side of
those two round trips (pool checkout, protocol, socket write) was 28% of a server worker's CPU.
A :class:`Coalescer` sends the calls that arrive while it is busy as one batch: one query or one
pipeline for several requests. Alone, a call is sent at once and costs what it did before.

aiodataloader does the same for GraphQL, but its batch task inherits the first caller's context
(Piccolo keeps its transaction in a context variable), it keeps no reference to that task, and
a cancelled batch leaves its callers waiting forever; this one does none of that.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# What a batch answers per call, in order: a value, or the exception that call raises.
BatchCall = Callable[[list[K]], Awaitable[Sequence[V | Exception]]]


class Coalescer(Generic[K, V]):
    """Calls of ``batch_call`` on lists of keys, ``max_in_flight`` at a time per event loop;
    the calls that arrive meanwhile wait and go together in the next (up to ``max_keys``)."""

    def __init__(self, batch_call: BatchCall[K, V], max_in_flight: int, max_keys: int) -> None:
        self.batch_call = batch_call
        self.max_in_flight = max_in_flight
        self.max_keys = max_keys
        self._waiting: _Waiting[K, V] | None = None
        # Batches sent and the calls they answered (tests and the bench read them).
        self.batches = 0
        self.calls = 0

    async def __call__(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        if waiting is None or waiting.loop is not loop:  # futures belong to one loop
            waiting = self._waiting = _Waiting(loop)
        future: asyncio.Future[V] = loop.create_future()
        waiting.queue.append((key, future))
        if waiting.drivers < self.max_in_flight:
            # A fresh context: the batch serves many requests and must not run in the first
            # one's (its transaction, if it had one).
            task = loop.create_task(self._drive(waiting), context=contextvars.Context())
            waiting.drivers += 1
            waiting.tasks.add(task)
            task.add_done_callback(waiting.tasks.discard)
        return await future

    async def _drive(self, waiting: _Waiting[K, V]) -> None:
        try:
            while waiting.queue:
                batch = waiting.queue[: self.max_keys]
                del waiting.queue[: self.max_keys]
                await self._send([(key, f) for key, f in batch if not f.done()])
        except BaseException:  # cancelled (the loop is closing): nobody will send the rest
            for _, future in waiting.queue:
                future.cancel()
            waiting.queue.clear()
            raise
        finally:
            waiting.drivers -= 1

    async def _send(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        if not batch:
            return
        try:
            answers = await self.batch_call([key for key, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} calls")
        except Exception as error:
            for _, future in batch:  # each its own copy: callers re-raise it concurrently
                _settle(future, _own_copy(error))
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        self.batches += 1
        self.calls += len(batch)
        for (_, future), answer in zip(batch, answers, strict=True):
            _settle(future, answer)


@dataclass(eq=False)
class _Waiting(Generic[K, V]):
    """One event loop's calls waiting for a batch, and the tasks sending batches."""

    loop: asyncio.AbstractEventLoop
    queue: list[tuple[K, asyncio.Future[V]]] = field(default_factory=list)
    drivers: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _own_copy(error: Exception) -> Exception:
    """A copy of ``error`` of the same type, so the app still maps it to the same answer."""
    try:
        duplicate = copy.copy(error)
    except Exception:
        return error
    duplicate.__cause__ = error.__cause__
    return duplicate.with_traceback(error.__traceback__)


def _settle(future: asyncio.Future[Any], answer: Any) -> None:
    if future.done():  # its caller was cancelled while it waited
        return
    if isinstance(answer, Exception):
        future.set_exception(answer)
    else:
        future.set_result(answer)
