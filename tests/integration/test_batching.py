"""Group commit (PostgreSQL, coalition/batching.py): concurrent keyed earns and redemptions of
different members share one transaction, and batching never changes an answer.

Which requests shared a transaction is read from PostgreSQL itself: rows written by one
transaction carry the same ``xmin``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coalition import batching, db, journal, queries
from coalition.audit import audit
from coalition.errors import CoalitionError, InsufficientPoints
from coalition.journal import Cause
from coalition.ledger import to_us
from coalition.service import Ledger
from coalition.settings import Settings
from tests.conftest import DATABASE_URL
from tests.databases import BACKEND
from tests.support import (
    Coalition,
    ManualClock,
    finish,
    make_coalition,
    until_a_session_waits_on_a_lock,
)

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="batches are PostgreSQL's")


@pytest.fixture
async def batched(clock: ManualClock) -> AsyncIterator[Coalition]:
    """A coalition whose ledger runs one batch at a time, so every request queued while it
    runs goes into the next one: which requests share a batch is then deterministic."""
    ledger = Ledger(Settings(database_url=DATABASE_URL, write_batches=1), clock)
    yield await make_coalition(ledger, clock)
    report = await audit()
    assert report.ok, "\n".join(f"{v.check}: {v.detail}" for v in report.violations)


async def cause(world: Coalition, partner_id: str, key: str, fingerprint: str = "f") -> Cause:
    """A partner request's cause as the API builds it: with the partner's row, so the use case
    reaches the queue without a database read of its own."""
    partner = await journal.load_partner(partner_id)
    return dataclasses.replace(world.cause(partner_id, key, fingerprint), partner=partner)


async def transaction_of(entry_ids: list[str]) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT id, xmin::text AS tx FROM entries WHERE id = ANY({}::text[])", entry_ids
    )
    return {row["id"]: row["tx"] for row in rows}


async def test_concurrent_earns_of_different_members_commit_in_one_transaction(
    batched: Coalition,
) -> None:
    members = [await batched.member() for _ in range(20)]
    causes = [await cause(batched, batched.cafe, f"e-{i}") for i in range(20)]
    results = await asyncio.gather(
        *(
            batched.ledger.earn(c, member_id=m, order_ref="o", points=10 + i, reason="bonus")
            for i, (c, m) in enumerate(zip(causes, members, strict=True))
        )
    )
    assert [replayed for _, replayed in results] == [False] * 20
    assert [earned.available_points for earned, _ in results] == [10 + i for i in range(20)]
    transactions = await transaction_of([earned.transaction_id for earned, _ in results])
    assert len(transactions) == 20
    assert len(set(transactions.values())) == 1
    now = to_us(batched.clock())
    for i, member in enumerate(members):
        assert (await queries.balance(member, now)).available_points == 10 + i


async def test_one_member_is_never_twice_in_a_batch(batched: Coalition) -> None:
    hot, other = await batched.member(100), await batched.member(100)
    calls: list[Awaitable[Any]] = []
    for i in range(5):
        for member in (hot, other):
            c = await cause(batched, batched.fashion, f"r-{member}-{i}")
            calls.append(batched.ledger.redeem(c, member_id=member, order_ref="o", points=7))
    results = await asyncio.gather(*calls)
    ids = [redemption.redemption_id for redemption, _ in results]
    transactions = await transaction_of(ids)
    hot_txs = [transactions[i] for i in ids[0::2]]
    other_txs = [transactions[i] for i in ids[1::2]]
    assert len(set(hot_txs)) == 5  # each of the hot member's redemptions in its own batch ...
    assert hot_txs == other_txs  # ... shared with one of the other member's
    now = to_us(batched.clock())
    for member in (hot, other):
        assert (await queries.balance(member, now)).available_points == 100 - 5 * 7


async def test_a_rejected_request_leaves_its_batch_and_is_remembered(batched: Coalition) -> None:
    poor, rich, earner = await batched.member(5), await batched.member(1000), await batched.member()
    poor_cause = await cause(batched, batched.fuel, "poor")
    results = await asyncio.gather(
        batched.ledger.redeem(poor_cause, member_id=poor, order_ref="o", points=10),
        batched.ledger.redeem(
            await cause(batched, batched.fuel, "rich"), member_id=rich, order_ref="o", points=10
        ),
        batched.ledger.earn(
            await cause(batched, batched.cafe, "earn"),
            member_id=earner,
            order_ref="o",
            points=3,
            reason="bonus",
        ),
        return_exceptions=True,
    )
    rejection, redeemed_result, earned_result = results
    assert isinstance(rejection, InsufficientPoints)
    assert not isinstance(redeemed_result, BaseException)
    assert not isinstance(earned_result, BaseException)
    (redeemed, _), (earned, _) = redeemed_result, earned_result
    transactions = await transaction_of([redeemed.redemption_id, earned.transaction_id])
    assert len(set(transactions.values())) == 1
    record = await db.fetch_one(
        "SELECT outcome FROM idempotency_records WHERE partner_id = {} AND idempotency_key = {}",
        batched.fuel,
        "poor",
    )
    assert record == {"outcome": "error"}
    with pytest.raises(InsufficientPoints):  # the retry is answered from the record
        await batched.ledger.redeem(poor_cause, member_id=poor, order_ref="o", points=10)


async def test_a_batch_refused_by_postgresql_runs_each_request_alone(batched: Coalition) -> None:
    # The ledger is called without the API's replay lookup, so a request already answered
    # reaches the batch, whose INSERT of its record then breaks the unique key.
    first = await batched.member()
    done = await cause(batched, batched.cafe, "done")
    (answered, _) = await batched.ledger.earn(
        done, member_id=first, order_ref="o", points=5, reason="bonus"
    )
    others = [await batched.member() for _ in range(3)]
    calls: list[Awaitable[Any]] = [
        batched.ledger.earn(done, member_id=first, order_ref="o", points=5, reason="bonus")
    ]
    for i, member in enumerate(others):
        c = await cause(batched, batched.cafe, f"other-{i}")
        calls.append(
            batched.ledger.earn(c, member_id=member, order_ref="o", points=4, reason="bonus")
        )
    (again, replayed), *rest = await asyncio.gather(*calls)
    assert replayed and again == answered
    batcher = batched.ledger.write_batcher
    assert batcher is not None and batcher.refused == 1
    assert [r for _, r in rest] == [False] * 3
    transactions = await transaction_of([earned.transaction_id for earned, _ in rest])
    assert len(set(transactions.values())) == 3  # the refused batch's requests ran alone
    now = to_us(batched.clock())
    assert (await queries.balance(first, now)).available_points == 5
    for member in others:
        assert (await queries.balance(member, now)).available_points == 4


async def test_a_member_locked_elsewhere_waits_alone_and_holds_up_no_one(
    batched: Coalition,
) -> None:
    busy, free = await batched.member(), await batched.member()
    holder = await asyncpg.connect(DATABASE_URL)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", busy)
        waiting = asyncio.ensure_future(
            batched.ledger.earn(
                await cause(batched, batched.cafe, "busy"),
                member_id=busy,
                order_ref="o",
                points=2,
                reason="bonus",
            )
        )
        free_cause = await cause(batched, batched.cafe, "free")
        (earned, _) = await asyncio.wait_for(  # a batch stuck on the busy row never returns
            batched.ledger.earn(
                free_cause, member_id=free, order_ref="o", points=3, reason="bonus"
            ),
            timeout=20,
        )
        assert earned.available_points == 3
        assert not waiting.done()  # it waits for the lock, alone
        await transaction.commit()
        (late, replayed) = await waiting
        assert late.available_points == 2 and not replayed
    finally:
        await holder.close()


async def test_a_busy_members_next_requests_run_alone_without_trying_a_batch(
    batched: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a batch found a member's row busy, the member's next requests go straight to the
    lone path (a hot member's would otherwise each try a batch in vain), in arrival order."""
    monkeypatch.setattr(batching, "BUSY_MEMBER_SECONDS", 3600.0)  # not the test's pace
    busy = await batched.member()
    tried: list[list[str]] = []  # the members each batch tried to lock
    lock_members = journal.lock_members

    async def batch_locking(members: dict[str, bool], now: int) -> dict[str, journal.Locked]:
        tried.append(list(members))
        return await lock_members(members, now)

    monkeypatch.setattr(journal, "lock_members", batch_locking)
    causes = [await cause(batched, batched.cafe, f"busy-{i}") for i in range(4)]
    holder = await asyncpg.connect(DATABASE_URL)
    queued: list[asyncio.Task[Any]] = []
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM members WHERE id = $1 FOR UPDATE", busy)
        queued += [
            asyncio.create_task(
                batched.ledger.earn(c, member_id=busy, order_ref="o", points=1, reason="bonus")
            )
            for c in causes
        ]
        await until_a_session_waits_on_a_lock(DATABASE_URL)  # the first, alone
        assert tried == [[busy]]
        await transaction.commit()
        results = await asyncio.gather(*queued)
        assert [earned.available_points for earned, _ in results] == [1, 2, 3, 4]
        assert tried == [[busy]]  # the row was free for the other three: no batch tried it
    finally:
        await finish(queued)
        await holder.close()


async def test_a_batch_that_fails_before_its_commit_runs_each_request_alone(
    batched: Coalition, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [await batched.member() for _ in range(3)]
    real = journal.run_together
    failures: list[int] = []

    async def lose_the_connection_once(batch: Any) -> None:
        if not failures:
            failures.append(len(batch))
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")
        await real(batch)

    monkeypatch.setattr(journal, "run_together", lose_the_connection_once)
    causes = [await cause(batched, batched.cafe, f"lost-{i}") for i in range(3)]
    results = await asyncio.gather(
        *(
            batched.ledger.earn(c, member_id=m, order_ref="o", points=6, reason="bonus")
            for c, m in zip(causes, members, strict=True)
        )
    )
    assert failures == [3]
    assert [(earned.available_points, replayed) for earned, replayed in results] == [(6, False)] * 3
    batcher = batched.ledger.write_batcher
    assert batcher is not None and batcher.refused == 1 and batcher.committed == 0
    (after, _) = await batched.ledger.earn(  # the next batch commits on a sound connection
        await cause(batched, batched.cafe, "after"),
        member_id=members[0],
        order_ref="o",
        points=1,
        reason="bonus",
    )
    assert after.available_points == 7 and batcher.committed == 1


# A burst: (member, earn or redeem, points, how many identical copies of the request).
BURST = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["earn", "redeem"]),
        st.integers(1, 300),
        st.integers(1, 3),
    ),
    min_size=1,
    max_size=12,
)

LOOP: asyncio.AbstractEventLoop
WORLD: Coalition


async def test_bursts_of_concurrent_requests_conserve_every_point(batched: Coalition) -> None:
    """Whatever shares a batch, each key makes at most one entry, identical requests get one
    answer, and every balance is its start plus the earns less the redemptions answered ok."""
    global LOOP, WORLD
    LOOP, WORLD = asyncio.get_running_loop(), batched

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(burst=BURST)
    def check(burst: list[tuple[int, str, int, int]]) -> None:
        asyncio.run_coroutine_threadsafe(run_burst(burst), LOOP).result(timeout=120)

    await asyncio.to_thread(check)
    batcher = batched.ledger.write_batcher
    assert batcher is not None
    assert batcher.batches < batcher.committed  # requests did share batches


async def run_burst(burst: list[tuple[int, str, int, int]]) -> None:
    world = WORLD
    start = [200, 0, 500, 50]
    members = [await world.member(points) for points in start]
    calls: list[Awaitable[Any]] = []
    requests = []
    for n, (member, kind, points, copies) in enumerate(burst):
        c = await cause(world, world.fashion, f"burst-{members[member]}-{n}", f"{kind}{points}")
        for _ in range(copies):
            requests.append((n, member, kind, points))
            member_id = members[member]
            calls.append(
                world.ledger.earn(c, member_id=member_id, order_ref="o", points=points, reason="b")
                if kind == "earn"
                else world.ledger.redeem(c, member_id=member_id, order_ref="o", points=points)
            )
    results = await asyncio.gather(*calls, return_exceptions=True)
    answers: dict[int, set[str]] = defaultdict(set)
    firsts: Counter[int] = Counter()
    for (n, _, _, _), result in zip(requests, results, strict=True):
        if isinstance(result, CoalitionError):
            assert isinstance(result, InsufficientPoints), result
            answers[n].add("insufficient")
        else:
            assert not isinstance(result, BaseException), result
            answer, replayed = result
            answers[n].add(getattr(answer, "transaction_id", None) or answer.redemption_id)
            firsts[n] += not replayed
    assert all(len(a) == 1 for a in answers.values()), answers  # copies agree
    expected = list(start)
    for n, (member, kind, points, _) in enumerate(burst):
        if answers[n] != {"insufficient"}:
            assert firsts[n] == 1  # one copy made the entry, the others replayed it
            expected[member] += points if kind == "earn" else -points
    now = to_us(world.clock())
    for member_id, points in zip(members, expected, strict=True):
        assert (await queries.balance(member_id, now)).available_points == points
    report = await audit()
    assert report.ok, report.violations
