"""The partner API's resources. Controllers only translate HTTP to the ledger's use cases and
back; every rule lives in ``coalition``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from redis.exceptions import RedisError

from coalition import program, queries
from coalition.clock import now_us
from coalition.errors import InvalidInput
from coalition.idempotency import answer
from coalition.journal import Cause
from coalition.ledger import to_us
from coalition.results import Earned, Enrolled, Redemption, Reversal
from coalition.service import Ledger
from partners.auth import Caller
from partners.guards import Claim, Guards
from partners.schemas import (
    CaptureRequest,
    EarnRequest,
    EnrolRequest,
    RedemptionRequest,
    ReversalRequest,
    StrictJSON,
    VoidRequest,
)

log = logging.getLogger("coalition.api")
T = TypeVar("T", bound=msgspec.Struct)
REPLAYED = {"Idempotent-Replayed": "true"}

PathId = Annotated[str, PathParameter(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]


class InFlight(Exception):
    """Another request with this Idempotency-Key is still running."""


@dataclass(frozen=True)
class Api:
    """What handlers need, built once per app."""

    ledger: Ledger
    guards: Guards
    in_flight_seconds: int


@dataclass(frozen=True, slots=True)
class Call:
    """A signed write's caller and the app's services, as one dependency: Litestar resolves two
    dependencies of one handler in an anyio task group, 5% of a server's CPU in a profile."""

    caller: Caller
    api: Api


def cause_of(caller: Caller) -> Cause:
    return Cause(
        caller.partner_id,
        caller.key_id,
        caller.idempotency_key,
        caller.fingerprint,
        partner=caller.partner,
    )


async def keyed(
    signed: Call,
    result_type: type[T],
    status_code: int,
    call: Callable[[Cause], Awaitable[tuple[T, bool]]],
) -> Response[T]:
    """Replay a completed key; refuse a key still in flight; else run the use case once."""
    api, caller = signed.api, signed.caller
    cause = cause_of(caller)
    stored = answer(cause, caller.record, result_type)  # the record came with the signing key
    if stored is not None:
        return Response(stored, status_code=status_code, headers=REPLAYED)
    assert caller.idempotency_key is not None
    # Admitted here rather than before the body was parsed, so the rate count and the marker
    # take one Redis round trip, and a request refused before it runs leaves no marker behind.
    claim = api.guards.in_flight(caller.partner_id, caller.idempotency_key, api.in_flight_seconds)
    if not await api.guards.admit(caller.partner_id, claim):
        raise InFlight
    try:
        result, replayed = await call(cause)
    except BaseException:
        # Perhaps nothing was stored (a 5xx): free the key at once for the retry.
        await _release(api, claim)
        raise
    # The record is committed: every later request with this key is answered from it (it comes
    # with the signing key) and never looks at the marker, which expires by itself. Leaving it
    # saves a Redis round trip (7% of a server worker's CPU in a profile of the API bench).
    return Response(result, status_code=status_code, headers=REPLAYED if replayed else None)


async def _release(api: Api, claim: Claim) -> None:
    try:
        await api.guards.release(claim)
    except RedisError:
        log.warning("could not release an in-flight marker; it expires by itself")


def _occurred(value: Any) -> int | None:
    return to_us(value) if value is not None else None


class MemberController(Controller):
    path = "/v1/members"
    tags = ["members"]

    @post("/", dto=StrictJSON[EnrolRequest], return_dto=None, status_code=201)
    async def enrol(
        self,
        signed: NamedDependency[Call],
        data: JSONBody[EnrolRequest | None] = None,  # an empty body counts as {}
    ) -> Response[Enrolled]:
        """Enrol a member, optionally with a card number (Luhn-checked) and your reference."""
        return await keyed(
            signed,
            Enrolled,
            201,
            lambda cause: program.enrol_member(
                cause,
                card_number=data.card_number if data else None,
                partner_member_ref=data.partner_member_ref if data else None,
                clock=signed.api.ledger.clock,
            ),
        )

    @get("/{member_id:str}")
    async def balance(self, member_id: PathId, api: NamedDependency[Api]) -> queries.Balance:
        """Available, held and debt points, and the next expiring points."""
        return await queries.balance(member_id, now_us(api.ledger.clock))

    @get("/by-card/{card_number:str}")
    async def by_card(
        self,
        card_number: Annotated[str, PathParameter(pattern=r"^[0-9]{8,19}$")],
        api: NamedDependency[Api],
    ) -> queries.Balance:
        """Find a member by card number."""
        member_id = await program.member_by_card(card_number)
        return await queries.balance(member_id, now_us(api.ledger.clock))

    @get("/{member_id:str}/transactions")
    async def transactions(
        self,
        member_id: PathId,
        caller: NamedDependency[Caller],
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=queries.HISTORY_LIMIT_MAX)] = 50,
    ) -> queries.History:
        """The member's history with the calling partner only, newest first."""
        return await queries.history(member_id, caller.partner_id, cursor=cursor, limit=limit)


class EarnController(Controller):
    path = "/v1/earn"
    tags = ["earn"]

    @post("/", dto=StrictJSON[EarnRequest], return_dto=None, status_code=201)
    async def earn(
        self,
        data: JSONBody[EarnRequest],
        signed: NamedDependency[Call],
    ) -> Response[Earned]:
        """Earn points from a purchase amount, or bonus points with a reason."""
        if (data.amount is None) == (data.points is None):
            raise InvalidInput("send either amount, or points with a reason")
        if data.points is not None and data.reason is None:
            raise InvalidInput("a bonus earn (points) needs a reason")
        amount = data.amount
        return await keyed(
            signed,
            Earned,
            201,
            lambda cause: signed.api.ledger.earn(
                cause,
                member_id=data.member_id,
                order_ref=data.order_ref,
                amount_minor=amount.amount_minor if amount else None,
                currency=amount.currency if amount else None,
                points=data.points,
                reason=data.reason,
                occurred_at_us=_occurred(data.occurred_at),
            ),
        )


class RedemptionController(Controller):
    path = "/v1/redemptions"
    tags = ["redemptions"]

    @post("/", dto=StrictJSON[RedemptionRequest], return_dto=None, status_code=201)
    async def redeem(
        self,
        data: JSONBody[RedemptionRequest],
        signed: NamedDependency[Call],
    ) -> Response[Redemption]:
        """Redeem points now (mode capture) or hold them for a later capture or void."""
        if data.hold_ttl_seconds is not None and data.mode != "hold":
            raise InvalidInput("hold_ttl_seconds is only for mode hold")
        return await keyed(
            signed,
            Redemption,
            201,
            lambda cause: signed.api.ledger.redeem(
                cause,
                member_id=data.member_id,
                order_ref=data.order_ref,
                points=data.points,
                hold=data.mode == "hold",
                hold_ttl_seconds=data.hold_ttl_seconds,
                occurred_at_us=_occurred(data.occurred_at),
            ),
        )

    @post(
        "/{redemption_id:str}/capture",
        dto=StrictJSON[CaptureRequest],
        return_dto=None,
        status_code=200,
    )
    async def capture(
        self,
        redemption_id: PathId,
        signed: NamedDependency[Call],
        data: JSONBody[CaptureRequest | None] = None,  # an empty body counts as {}
    ) -> Response[Redemption]:
        """Capture a hold, fully or in part; the rest goes back to the member."""
        return await keyed(
            signed,
            Redemption,
            200,
            lambda cause: signed.api.ledger.capture(
                cause, redemption_id, data.points if data else None
            ),
        )

    @post(
        "/{redemption_id:str}/void", dto=StrictJSON[VoidRequest], return_dto=None, status_code=200
    )
    async def void(
        self,
        redemption_id: PathId,
        signed: NamedDependency[Call],
        data: JSONBody[VoidRequest | None] = None,  # an empty body counts as {}
    ) -> Response[Redemption]:
        """Void a hold; the points go back to the member."""
        return await keyed(
            signed, Redemption, 200, lambda cause: signed.api.ledger.void(cause, redemption_id)
        )


class TransactionController(Controller):
    path = "/v1/transactions"
    tags = ["transactions"]

    @post(
        "/{transaction_id:str}/reversals",
        dto=StrictJSON[ReversalRequest],
        return_dto=None,
        status_code=201,
    )
    async def reverse(
        self,
        transaction_id: PathId,
        data: JSONBody[ReversalRequest],
        signed: NamedDependency[Call],
    ) -> Response[Reversal]:
        """Reverse an earn or a captured redemption, fully or in part, up to the original."""
        return await keyed(
            signed,
            Reversal,
            201,
            lambda cause: signed.api.ledger.reverse(
                cause,
                transaction_id,
                points=data.points,
                reason=data.reason,
                order_ref=data.order_ref,
            ),
        )

    @get("/{transaction_id:str}")
    async def one(
        self, transaction_id: PathId, caller: NamedDependency[Caller]
    ) -> queries.TransactionDetail:
        """One of your own transactions, with its reversals."""
        return await queries.transaction(caller.partner_id, transaction_id)


CONTROLLERS = [MemberController, EarnController, RedemptionController, TransactionController]
