"""RFC 9457 problem details: every refusal the API can give, with its stable type and status.

``type`` is ``/problems/<slug>``, a URI relative to the API's own origin where
``GET /problems/<slug>`` describes the problem (docs/partner-api.md lists them all).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"

# slug -> (status, title, what the partner should do)
PROBLEMS: dict[str, tuple[int, str, str]] = {
    "signature-missing": (401, "Signature missing", "Sign the request (RFC 9421, Ed25519)."),
    "signature-malformed": (
        401,
        "Signature malformed",
        "Send exactly one signature with only created, keyid, nonce, alg, expires, tag.",
    ),
    "signature-coverage": (
        401,
        "Required component not signed",
        "Cover the components named in Accept-Signature.",
    ),
    "signature-expired": (
        401,
        "Signature outside the time window",
        "Sync your clock; sign with created = now; do not reuse old signatures.",
    ),
    "key-unknown": (401, "Key unknown", "Use a registered, unrevoked key with alg ed25519."),
    "signature-invalid": (
        401,
        "Signature invalid",
        "Sign the exact method, authority, raw path and query and header values sent.",
    ),
    "signature-replayed": (401, "Nonce reused", "Use a fresh nonce for every request."),
    "digest-invalid": (
        400,
        "Content-Digest invalid",
        "Send Content-Digest: sha-256=:<base64 of SHA-256 of the exact body bytes>:.",
    ),
    "invalid-request": (
        400,
        "Invalid request",
        "Fix the body or parameters as the detail says; unknown fields are refused.",
    ),
    "forbidden": (
        403,
        "Forbidden",
        "The partner lacks the role, is suspended, or the object belongs to another partner.",
    ),
    "not-found": (404, "Not found", "Check the id."),
    "already-exists": (409, "Already exists", "Look the existing object up instead."),
    "insufficient-points": (422, "Not enough available points", "Redeem fewer points."),
    "earn-rejected": (
        422,
        "Earn refused",
        "Use the partner's currency, a bonus within the cap, "
        "and an amount worth at least one point.",
    ),
    "hold-state": (
        409,
        "Hold state does not allow this",
        "The hold was captured, voided or expired, or the capture exceeds it.",
    ),
    "reversal-exceeds-original": (
        422,
        "Reversal above what is left to reverse",
        "Reverse at most the points not yet reversed.",
    ),
    "idempotency-key-invalid": (
        400,
        "Idempotency-Key missing or malformed",
        "Send Idempotency-Key: 8-255 characters of [A-Za-z0-9._:~-] on every POST.",
    ),
    "idempotency-key-reused": (
        422,
        "Idempotency-Key reused with another request",
        "Use a new key for a new request.",
    ),
    "idempotency-in-progress": (
        409,
        "Request with this Idempotency-Key still in flight",
        "Retry after Retry-After seconds with the same key.",
    ),
    "content-too-large": (413, "Body too large", "Send a smaller body."),
    "unsupported-media-type": (
        415,
        "Unsupported media type",
        "Send Content-Type: application/json and no Content-Encoding.",
    ),
    "rate-limited": (429, "Rate limit exceeded", "Retry after Retry-After seconds."),
    "method-not-allowed": (405, "Method not allowed", "See the API reference."),
    "service-unavailable": (
        503,
        "Service unavailable",
        "A dependency is down; nothing was done. Retry with the same Idempotency-Key.",
    ),
    "internal-error": (500, "Internal error", "Retry with the same Idempotency-Key."),
}


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    fields: dict[str, Any] | None = None


def problem_response(
    slug: str,
    detail: str,
    *,
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> Response[bytes]:
    status, title, _ = PROBLEMS[slug]
    body = msgspec.json.encode(
        Problem(f"/problems/{slug}", title, status, detail, instance, fields or None)
    )
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)
