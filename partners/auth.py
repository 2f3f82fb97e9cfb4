"""Who is calling: verify the RFC 9421 signature of a partner request before anything else.

Runs as Litestar's ``before_request`` hook on the signed routes, i.e. before the body is decoded,
so an unsigned or forged request gets its 401 and never a validation error. (A middleware
could not read the body; a dependency would run after body decoding.)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from litestar import Request

from coalition.clock import Clock
from coalition.errors import InvalidInput
from coalition.ledger import to_us
from coalition.settings import Settings
from partners import signing
from partners.keys import verification_key

IDEMPOTENCY_KEY = re.compile(r'^"?([A-Za-z0-9._:~-]{8,255})"?$')
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class IdempotencyKeyInvalid(Exception):
    """Missing or malformed Idempotency-Key header on a POST."""


class Replayed(Exception):
    """A nonce seen before within the window."""


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified partner request."""

    partner_id: str
    key_id: str
    idempotency_key: str | None
    fingerprint: str | None
    partner: dict[str, Any] | None = None  # the partner's row, read with the key
    # the idempotency record stored under ``idempotency_key`` when the key was read, if any
    record: dict[str, Any] | None = None
    nonce: str | None = None  # a request without a body: single use, claimed on admission


def idempotency_key(header: str | None) -> str:
    """The key from an sf-string (``"..."``) or a bare value."""
    match = IDEMPOTENCY_KEY.match(header.strip()) if header else None
    if not match or header.strip().count('"') not in (0, 2):  # type: ignore[union-attr]
        raise IdempotencyKeyInvalid("Idempotency-Key must be 8-255 characters of [A-Za-z0-9._:~-]")
    return match.group(1)


def fingerprint(method: str, raw_path: str, raw_query: str, body: bytes) -> str:
    """Method, raw path and query, and SHA-256 of the body: what makes two requests the same."""
    digest = hashlib.sha256()
    for part in (
        method.encode(),
        raw_path.encode(),
        raw_query.encode(),
        hashlib.sha256(body).digest(),
    ):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


async def verify(request: Request[Any, Any, Any], settings: Settings, clock: Clock) -> Caller:
    """The verified caller; its nonce is claimed when it is admitted (``partners.app``)."""
    method = request.method
    raw_path = request.scope["raw_path"].decode("latin-1")
    raw_query = request.scope["query_string"].decode("latin-1")
    headers = request.headers
    parsed = signing.parse_signature(headers.get("signature-input"), headers.get("signature"))
    # A missing or malformed key is its own 400, not a coverage failure of an absent header.
    key = idempotency_key(headers.get("idempotency-key")) if method in BODY_METHODS else None
    signing.check_coverage(parsed, method)
    now = clock()
    signing.check_window(
        parsed,
        int(now.timestamp()),
        max_age_seconds=settings.signature_max_age_seconds,
        clock_skew_seconds=settings.signature_clock_skew_seconds,
    )
    found = await verification_key(parsed.keyid, to_us(now), key)
    partner, public_key = found.partner, found.public_key
    partner_id = partner["id"]
    covered = {
        name: ", ".join(headers.getall(name))
        for name in parsed.components
        if not name.startswith("@") and name in headers
    }
    base = signing.signature_base(
        parsed,
        method=method,
        authority=settings.public_authority,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=covered,
    )
    signing.verify_signature(parsed, base, public_key)
    body = await request.body()
    if method in BODY_METHODS or body:
        signing.check_content_digest(headers.get("content-digest"), body)
    if method in BODY_METHODS:
        if headers.get("content-encoding"):
            raise UnsupportedMediaType("request bodies must not be Content-Encoded")
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        request_fingerprint = fingerprint(method, raw_path, raw_query, body)
        return Caller(partner_id, parsed.keyid, key, request_fingerprint, partner, found.record)
    return Caller(partner_id, parsed.keyid, None, None, partner, nonce=parsed.nonce)


class UnsupportedMediaType(InvalidInput):
    slug = "unsupported-media-type"
