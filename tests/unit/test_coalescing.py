"""The coalescer on its own: which calls share a batch, and that every caller gets its own
answer (or error) whatever happens to the others. The real batches (PostgreSQL key lookups,
Redis admissions) are tested in tests/integration/test_coalesced_lookups.py."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from partners.coalescing import Coalescer

REQUEST = contextvars.ContextVar[str]("REQUEST", default="none")


class Recorder:
    """A batch call that answers each key with its double (a negative key is an error) and can
    be held open, so the test decides what arrives while a batch is in flight."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.contexts: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, keys: list[int]) -> list[int | Exception]:
        self.batches.append(keys)
        self.contexts.append(REQUEST.get())
        self.started.set()
        await self.release.wait()
        return [ValueError(f"bad {k}") if k < 0 else 2 * k for k in keys]


async def test_calls_arriving_while_a_batch_is_in_flight_go_together_in_the_next() -> None:
    batch = Recorder()
    batch.release.clear()
    coalesce = Coalescer(batch, max_in_flight=1, max_keys=10)
    first = asyncio.create_task(coalesce(1))
    await batch.started.wait()  # the first batch is in flight, holding key 1 alone
    rest = [asyncio.create_task(coalesce(k)) for k in (2, 3, 4)]
    await asyncio.sleep(0)  # let them queue (no timing: the batch stays held until released)
    batch.release.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8]
    assert batch.batches == [[1], [2, 3, 4]]
    assert (coalesce.batches, coalesce.calls) == (2, 4)


async def test_one_calls_error_is_its_own() -> None:
    coalesce = Coalescer(Recorder(), max_in_flight=1, max_keys=10)
    answers = await asyncio.gather(coalesce(5), coalesce(-1), coalesce(7), return_exceptions=True)
    assert answers[0] == 10 and answers[2] == 14
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "bad -1"


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(keys: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("lost")
        return [*keys]

    coalesce = Coalescer(flaky, max_in_flight=1, max_keys=10)
    failed = await asyncio.gather(coalesce(1), coalesce(2), return_exceptions=True)
    assert all(isinstance(f, ConnectionError) for f in failed)
    assert await coalesce(3) == 3


async def test_a_batch_answering_the_wrong_number_of_values_fails_every_caller() -> None:
    async def short(keys: list[int]) -> list[int | Exception]:
        return [*keys[:-1]]

    coalesce = Coalescer(short, max_in_flight=1, max_keys=10)
    answers = await asyncio.gather(coalesce(1), coalesce(2), return_exceptions=True)
    assert all(isinstance(a, RuntimeError) for a in answers)


async def test_batches_hold_at_most_max_keys() -> None:
    batch = Recorder()
    coalesce = Coalescer(batch, max_in_flight=1, max_keys=3)
    assert await asyncio.gather(*(coalesce(k) for k in range(7))) == [2 * k for k in range(7)]
    assert [len(b) for b in batch.batches] == [3, 3, 1]


async def test_a_cancelled_caller_is_skipped_and_the_others_answered() -> None:
    batch = Recorder()
    batch.release.clear()
    coalesce = Coalescer(batch, max_in_flight=1, max_keys=10)
    first = asyncio.create_task(coalesce(1))
    await batch.started.wait()
    gone, kept = asyncio.create_task(coalesce(2)), asyncio.create_task(coalesce(3))
    await asyncio.sleep(0)
    gone.cancel()
    batch.release.set()
    assert await first == 2 and await kept == 6
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batch.batches == [[1], [3]]  # the cancelled call was never sent


async def test_a_batch_runs_in_a_fresh_context_not_its_first_callers() -> None:
    batch = Recorder()
    coalesce = Coalescer(batch, max_in_flight=1, max_keys=10)

    async def as_request(name: str, key: int) -> int:
        REQUEST.set(name)
        return await coalesce(key)

    assert await as_request("first", 1) == 2
    assert batch.contexts == ["none"]


async def test_several_batches_may_be_in_flight() -> None:
    batch = Recorder()
    batch.release.clear()
    coalesce = Coalescer(batch, max_in_flight=2, max_keys=10)
    first = asyncio.create_task(coalesce(1))
    await batch.started.wait()
    batch.started.clear()
    second = asyncio.create_task(coalesce(2))
    # A second batch starts while the first is held; were it queued, this fails, not hangs.
    await asyncio.wait_for(batch.started.wait(), timeout=10)
    batch.release.set()
    assert (await first, await second) == (2, 4)
    assert batch.batches == [[1], [2]]


async def test_callers_of_a_failed_batch_each_get_their_own_copy_of_the_error() -> None:
    async def broken(keys: list[int]) -> list[int | Exception]:
        raise ConnectionError("lost", 7)

    coalesce = Coalescer(broken, max_in_flight=1, max_keys=10)
    first, second = await asyncio.gather(coalesce(1), coalesce(2), return_exceptions=True)
    assert isinstance(first, ConnectionError) and isinstance(second, ConnectionError)
    assert first is not second and first.args == second.args == ("lost", 7)


def test_each_event_loop_has_its_own_queue() -> None:
    """A coalescer shared by two running loops (two threads) keeps their calls apart: a batch
    held in one loop does not hold up the other's calls, and each gets its own answers."""
    held, gate = threading.Event(), threading.Event()

    async def batch_call(keys: list[int]) -> list[int | Exception]:
        if keys[0] < 10:  # the first loop's batch: held until the test lets it go
            held.set()
            await asyncio.to_thread(gate.wait, 10)
        return [2 * k for k in keys]

    coalesce = Coalescer(batch_call, max_in_flight=1, max_keys=10)
    answers: dict[str, list[int]] = {}

    async def calls(*keys: int) -> list[int]:
        both = asyncio.gather(*(coalesce(k) for k in keys))
        return list(await asyncio.wait_for(both, timeout=10))  # a guard, not a timing

    first = threading.Thread(target=lambda: answers.update(first=asyncio.run(calls(1, 2))))
    first.start()
    try:
        assert held.wait(10)
        assert asyncio.run(calls(11, 12)) == [22, 24]
    finally:
        gate.set()
        first.join(10)
    assert answers["first"] == [2, 4]
