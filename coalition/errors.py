"""Domain errors: facts about a refused request, with fields and no HTTP status.

    CoalitionError                      slug (stable; the API maps it to status + problem type)
     ├── InvalidInput                   invalid-request
     ├── NotFound                       not-found
     ├── Forbidden                      forbidden
     ├── AlreadyExists                  already-exists (card, partner ref or partner id taken)
     ├── InsufficientPoints             insufficient-points
     ├── EarnRejected                   earn-rejected
     ├── HoldStateError                 hold-state
     ├── ReversalExceedsOriginal        reversal-exceeds-original
     └── IdempotencyKeyReused           idempotency-key-reused

Rejections are stored with the idempotency key (``to_record``/``from_record``) so that a retry
gets the same answer. ``LedgerInvariantError`` is not a rejection: it means a bug, and aborts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class CoalitionError(Exception):
    slug: ClassVar[str] = "error"
    title: ClassVar[str] = "Request refused"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields
        self.replayed = False  # True when this is a remembered rejection, answered again

    def to_record(self) -> bytes:
        return msgspec.json.encode(
            {"slug": self.slug, "detail": self.detail, "fields": self.fields}
        )

    @staticmethod
    def from_record(data: bytes | str) -> CoalitionError:
        record = msgspec.json.decode(data)
        error = _BY_SLUG[record["slug"]](record["detail"], **record["fields"])
        error.replayed = True
        return error


class InvalidInput(CoalitionError):
    slug = "invalid-request"
    title = "The request is not valid"


class NotFound(CoalitionError):
    slug = "not-found"
    title = "Not found"


class Forbidden(CoalitionError):
    slug = "forbidden"
    title = "Not allowed for this partner"


class AlreadyExists(CoalitionError):
    slug = "already-exists"
    title = "Already exists"


class InsufficientPoints(CoalitionError):
    slug = "insufficient-points"
    title = "Not enough available points"


class EarnRejected(CoalitionError):
    slug = "earn-rejected"
    title = "Earn refused"


class HoldStateError(CoalitionError):
    slug = "hold-state"
    title = "The hold is not in a state that allows this"


class ReversalExceedsOriginal(CoalitionError):
    slug = "reversal-exceeds-original"
    title = "Reversal above what is left to reverse"


class IdempotencyKeyReused(CoalitionError):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with another request"


class LedgerInvariantError(AssertionError):
    """A write would break a ledger invariant: a bug, never a client error."""


_BY_SLUG: dict[str, type[CoalitionError]] = {
    cls.slug: cls
    for cls in (
        InvalidInput,
        NotFound,
        Forbidden,
        AlreadyExists,
        InsufficientPoints,
        EarnRejected,
        HoldStateError,
        ReversalExceedsOriginal,
        IdempotencyKeyReused,
    )
}
