"""A hypothesis state machine drives the ledger on the real database and compares every answer,
every balance and every lot with an independent in-memory model; the auditor runs after every
step.

Hypothesis state machines are synchronous, so the machine runs in a worker thread and submits
each coroutine to the test's event loop (which owns the database connections).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from coalition import db, queries
from coalition.audit import audit
from coalition.errors import CoalitionError, IdempotencyKeyReused
from coalition.jobs import expire_lots, sweep_expired_holds
from coalition.ledger import add_months_us, to_us
from tests.support import Coalition

T = TypeVar("T")
HOLD_TTL_SECONDS = 3600
MEMBERS = 2
MINUTES = st.sampled_from([5, 30, 61, 24 * 60, 200 * 24 * 60, 500 * 24 * 60])


@dataclass
class ModelLot:
    seq: int
    issuer: str
    remaining: int
    earned_at: int
    expires_at: int

    def key(self) -> tuple[int, int, int]:
        return (self.expires_at, self.earned_at, self.seq)


@dataclass
class ModelMember:
    lots: list[ModelLot] = field(default_factory=list)
    held: int = 0
    debt: int = 0

    def unexpired(self, now: int) -> list[ModelLot]:
        return sorted((lot for lot in self.lots if lot.expires_at > now), key=ModelLot.key)

    def available(self, now: int) -> int:
        return sum(lot.remaining for lot in self.unexpired(now)) - self.debt


@dataclass
class ModelTxn:
    kind: str  # earn | redeem | hold
    partner: str
    member: int
    points: int
    lot_seq: int | None = None  # earns: the lot they created
    taken: dict[int, int] = field(default_factory=dict)  # per lot seq: points still reversible
    status: str = "captured"  # captured | held | voided | expired
    expires_at: int = 0
    reversed: int = 0


def take(lots: list[ModelLot], points: int) -> dict[int, int]:
    """Earliest-expiring first."""
    taken: dict[int, int] = {}
    for lot in sorted(lots, key=ModelLot.key):
        n = min(lot.remaining, points)
        if n:
            lot.remaining -= n
            taken[lot.seq] = n
            points -= n
    assert points == 0
    return taken


def give_back(member: ModelMember, given: dict[int, int], points: int) -> dict[int, int]:
    """Latest-expiring first, never more than a lot gave."""
    lots = {lot.seq: lot for lot in member.lots}
    back: dict[int, int] = {}
    for seq in sorted(given, key=lambda s: lots[s].key(), reverse=True):
        n = min(given[seq], points)
        if n:
            lots[seq].remaining += n
            back[seq] = n
            points -= n
    assert points == 0
    return back


def minus(given: dict[int, int], back: dict[int, int]) -> dict[int, int]:
    return {seq: n - back.get(seq, 0) for seq, n in given.items() if n - back.get(seq, 0)}


class LedgerMachine(RuleBasedStateMachine):
    earns = Bundle("earns")
    redemptions = Bundle("redemptions")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.world = WORLD
        self.members: list[str] = []
        self.model: list[ModelMember] = []
        self.txns: dict[str, ModelTxn] = {}
        self.seq_of_lot: dict[int, int] = {}  # server lot id -> model lot seq

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, LOOP).result(timeout=60)

    @property
    def now(self) -> int:
        return to_us(self.world.clock())

    def cause_for(self, partner: str, fingerprint: str = "f") -> Any:
        key = f"key-{secrets.token_hex(8)}"  # the partners outlive each example
        return self.world.cause(partner, key, fingerprint)

    @initialize()
    def setup(self) -> None:
        for _ in range(MEMBERS):
            self.members.append(self.run(self.world.member()))
            self.model.append(ModelMember())
        self.partners = [self.world.cafe, self.world.fashion, self.world.fuel]

    # -- earning ------------------------------------------------------------------------------

    def _model_earn(self, transaction_id: str, partner: str, member: int, points: int) -> int:
        m = self.model[member]
        repaid = min(m.debt, points)
        m.debt -= repaid
        row = self.run(db.fetch_one("SELECT id FROM lots WHERE entry_id = {}", transaction_id))
        assert row is not None
        seq = len(self.seq_of_lot)
        self.seq_of_lot[row["id"]] = seq
        months = self.world.ledger.settings.lot_validity_months
        expires = add_months_us(self.now, months)
        m.lots.append(ModelLot(seq, partner, points - repaid, self.now, expires))
        self.txns[transaction_id] = ModelTxn("earn", partner, member, points, lot_seq=seq)
        return repaid

    @rule(
        target=earns,
        member=st.integers(0, MEMBERS - 1),
        partner=st.integers(0, 2),
        points=st.integers(1, 300),
    )
    def earn(self, member: int, partner: int, points: int) -> str:
        p = self.partners[partner]
        result, _ = self.run(
            self.world.ledger.earn(
                self.cause_for(p),
                member_id=self.members[member],
                order_ref="e",
                points=points,
                reason="bonus",
            )
        )
        repaid = self._model_earn(result.transaction_id, p, member, points)
        assert (result.points, result.debt_repaid_points) == (points, repaid)
        # the answer's balance: after the earn, less unswept lots past expiry
        assert result.available_points == self.model[member].available(self.now)
        return result.transaction_id

    # -- redeeming ----------------------------------------------------------------------------

    @rule(
        target=redemptions,
        member=st.integers(0, MEMBERS - 1),
        partner=st.integers(0, 2),
        points=st.integers(1, 200),
    )
    def redeem(self, member: int, partner: int, points: int) -> MultipleResults[str]:
        return self._redeem(member, partner, points, hold=False)

    @rule(
        target=holds,
        member=st.integers(0, MEMBERS - 1),
        partner=st.integers(0, 2),
        points=st.integers(1, 200),
    )
    def hold(self, member: int, partner: int, points: int) -> MultipleResults[str]:
        return self._redeem(member, partner, points, hold=True)

    def _redeem(self, member: int, partner: int, points: int, hold: bool) -> MultipleResults[str]:
        p, m = self.partners[partner], self.model[member]
        expect_ok = m.available(self.now) >= points
        try:
            result, _ = self.run(
                self.world.ledger.redeem(
                    self.cause_for(p),
                    member_id=self.members[member],
                    order_ref="r",
                    points=points,
                    hold=hold,
                    hold_ttl_seconds=HOLD_TTL_SECONDS,
                )
            )
        except CoalitionError as refused:
            assert not expect_ok and refused.slug == "insufficient-points", refused
            return multiple()
        assert expect_ok
        taken = take(m.unexpired(self.now), points)
        m.held += points if hold else 0
        self.txns[result.redemption_id] = ModelTxn(
            "hold" if hold else "redeem",
            p,
            member,
            points,
            taken=taken,
            status="held" if hold else "captured",
            expires_at=self.now + HOLD_TTL_SECONDS * 10**6,
        )
        return multiple(result.redemption_id)

    @rule(txn=holds, quarters=st.integers(1, 4))
    def capture(self, txn: str, quarters: int) -> None:
        t = self.txns[txn]
        points = max(1, t.points * quarters // 4)
        expect_ok = t.status == "held" and self.now < t.expires_at
        try:
            self.run(self.world.ledger.capture(self.cause_for(t.partner), txn, points))
        except CoalitionError as refused:
            assert not expect_ok and refused.slug == "hold-state", refused
            return
        assert expect_ok
        m = self.model[t.member]
        m.held -= t.points
        t.taken = minus(t.taken, give_back(m, t.taken, t.points - points))
        t.status, t.points = "captured", points

    @rule(txn=holds)
    def void(self, txn: str) -> None:
        t = self.txns[txn]
        expect_ok = t.status == "held" and self.now < t.expires_at
        try:
            self.run(self.world.ledger.void(self.cause_for(t.partner), txn))
        except CoalitionError as refused:
            assert not expect_ok and refused.slug == "hold-state", refused
            return
        assert expect_ok
        self._release(t, "voided")

    def _release(self, t: ModelTxn, status: str) -> None:
        m = self.model[t.member]
        m.held -= t.points
        give_back(m, t.taken, t.points)
        t.status, t.taken = status, {}

    # -- reversing ----------------------------------------------------------------------------

    @rule(txn=earns | redemptions | holds, points=st.integers(1, 300) | st.none())
    def reverse(self, txn: str, points: int | None) -> None:
        t = self.txns[txn]
        reversible = t.points - t.reversed
        wanted = reversible if points is None else points
        try:
            result, _ = self.run(
                self.world.ledger.reverse(self.cause_for(t.partner), txn, points=points, reason="r")
            )
        except CoalitionError as refused:
            if t.status != "captured":
                assert refused.slug == "hold-state", refused
            else:
                assert not 0 < wanted <= reversible, refused
                assert refused.slug == "reversal-exceeds-original", refused
            return
        assert t.status == "captured" and 0 < wanted <= reversible
        t.reversed += wanted
        m = self.model[t.member]
        if t.kind != "earn":
            t.taken = minus(t.taken, give_back(m, t.taken, wanted))
            return
        # Earn reversal: the original lot first, then other unexpired lots, then debt.
        lot = next(lot for lot in m.lots if lot.seq == t.lot_seq)
        from_lot = min(lot.remaining, wanted)
        lot.remaining -= from_lot
        others = [o for o in m.unexpired(self.now) if o.seq != lot.seq]
        rest = wanted - from_lot
        clawed = min(rest, sum(o.remaining for o in others))
        if clawed:
            take(others, clawed)
        m.debt += rest - clawed
        assert result.debt_points == rest - clawed

    # -- time: hold deadlines, lot expiry -----------------------------------------------------

    @rule(minutes=MINUTES, nightly=st.booleans())
    def pass_time(self, minutes: int, nightly: bool) -> None:
        """Time moves; then the sweeper runs, and the nightly expiry has run or is still to come
        (until it runs, lots past expiry keep their points, which no one can spend)."""
        self.world.clock.advance(minutes=minutes)
        self.run(sweep_expired_holds(self.world.ledger, "sweep"))
        for t in self.txns.values():
            if t.kind == "hold" and t.status == "held" and t.expires_at <= self.now:
                self._release(t, "expired")
        if not nightly:
            return
        self.run(expire_lots(self.world.ledger, "expiry"))
        for m in self.model:
            for lot in m.lots:
                if lot.expires_at <= self.now:
                    lot.remaining = 0

    # -- idempotency --------------------------------------------------------------------------

    @rule(member=st.integers(0, MEMBERS - 1), points=st.integers(1, 50), change=st.booleans())
    def retry_or_reuse_key(self, member: int, points: int, change: bool) -> None:
        """An earn sent twice with one key: the same request replays, another is refused."""
        cause, ledger, p = self.cause_for(self.world.cafe), self.world.ledger, self.world.cafe
        first, replayed = self.run(
            ledger.earn(
                cause, member_id=self.members[member], order_ref="k", points=points, reason="r"
            )
        )
        assert not replayed
        self._model_earn(first.transaction_id, p, member, points)
        if change:
            cause = self.world.cause(p, cause.idempotency_key, "another request")
        try:
            again, replayed = self.run(
                ledger.earn(
                    cause,
                    member_id=self.members[member],
                    order_ref="k",
                    points=points + change,
                    reason="r",
                )
            )
        except IdempotencyKeyReused:
            assert change
            return
        assert not change and replayed and again == first

    # -- checks after every step --------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        for member_id, m in zip(self.members, self.model, strict=True):
            balance = self.run(queries.balance(member_id, self.now))
            got = (balance.available_points, balance.held_points, balance.debt_points)
            assert got == (m.available(self.now), m.held, m.debt), (member_id, got)

    @invariant()
    def lots_match_the_model(self) -> None:
        """Which lot gives or gets points back decides expiry and who pays whom."""
        if not self.members:
            return
        rows = self.run(
            db.fetch("SELECT id, remaining FROM lots WHERE member_id IN ({}, {})", *self.members)
        )
        server = {self.seq_of_lot[r["id"]]: r["remaining"] for r in rows}
        assert server == {lot.seq: lot.remaining for m in self.model for lot in m.lots}

    @invariant()
    def auditor_is_clean(self) -> None:
        report = self.run(audit())
        assert report.ok, report.violations


LOOP: asyncio.AbstractEventLoop
WORLD: Coalition


async def test_ledger_agrees_with_the_model(world: Coalition) -> None:
    global LOOP, WORLD
    LOOP, WORLD = asyncio.get_running_loop(), world
    start = world.clock.at

    def fresh_machine() -> LedgerMachine:
        world.clock.at = start  # every example starts at the same moment with new members
        return LedgerMachine()

    machine_settings = settings(
        max_examples=40,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # run_state_machine_as_test takes any factory (its docstring) but is annotated type[...]
    await asyncio.to_thread(
        run_state_machine_as_test,
        fresh_machine,  # type: ignore[arg-type]
        settings=machine_settings,
    )
