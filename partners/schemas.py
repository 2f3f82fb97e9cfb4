"""Wire structs for request bodies: unknown fields are refused, every number and string bounded.

Bodies are decoded strictly (``"10"`` is not a number, ``1.5`` is not an integer) by
:class:`StrictJSON`, which also lets Litestar document each body in the OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from litestar._openapi.schema_generation import SchemaCreator
from litestar.dto import MsgspecDTO
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

from coalition.errors import InvalidInput

T = TypeVar("T", bound=msgspec.Struct)

POINTS_MAX = 1_000_000_000
AMOUNT_MINOR_MAX = 10**13

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
OrderRef = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Points = Annotated[int, msgspec.Meta(ge=1, le=POINTS_MAX)]
AmountMinor = Annotated[int, msgspec.Meta(ge=1, le=AMOUNT_MINOR_MAX)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8,19}$")]
PartnerRef = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
TtlSeconds = Annotated[int, msgspec.Meta(ge=1, le=30 * 24 * 3600)]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class MoneyIn(Strict):
    amount_minor: AmountMinor
    currency: Currency


class EnrolRequest(Strict):
    card_number: CardNumber | None = None
    partner_member_ref: PartnerRef | None = None


class EarnRequest(Strict):
    """Either ``amount`` (points from the earn rate) or ``points`` with a ``reason`` (bonus)."""

    member_id: Id
    order_ref: OrderRef
    amount: MoneyIn | None = None
    points: Points | None = None
    reason: Reason | None = None
    occurred_at: Timestamp | None = None


class RedemptionRequest(Strict):
    member_id: Id
    order_ref: OrderRef
    points: Points
    mode: Literal["capture", "hold"] = "capture"
    hold_ttl_seconds: TtlSeconds | None = None
    occurred_at: Timestamp | None = None


class CaptureRequest(Strict):
    points: Points | None = None


class VoidRequest(Strict):
    pass


class ReversalRequest(Strict):
    reason: Reason
    points: Points | None = None
    order_ref: OrderRef | None = None


class StrictJSON(MsgspecDTO[T], Generic[T]):
    """Decode the body straight into the struct, strictly; an empty body counts as ``{}``."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        # Document the struct itself (the DTO's generated transfer model mishandles optional
        # constrained strings).
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return msgspec.json.decode(value or b"{}", type=self.model_type, strict=True)
        except (msgspec.ValidationError, msgspec.DecodeError) as bad:
            raise InvalidInput(f"invalid body: {bad}") from None
