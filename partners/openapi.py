"""Complete the served OpenAPI document with the refusals every operation can give.

Litestar documents each handler's success response; the problem+json answers come from one
exception handler, so they are added here, once, for every operation: a client generated from
the document (or schemathesis checking the server against it) then knows every status it may get.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Schema

from partners.problems import PROBLEM_MEDIA_TYPE, PROBLEMS

# Statuses by kind of operation (the slugs behind them are in partners/problems.py).
ANY = (500, 503)
SIGNED = (400, 401, 403, 404, 429)
SIGNED_POST = (409, 413, 415, 422)
PUBLIC = (400, 404)

_PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="/problems/<slug>"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "instance": Schema(type=OpenAPIType.STRING),
        "fields": Schema(type=OpenAPIType.OBJECT),
    },
)


def _response(status: int) -> OpenAPIResponse:
    slugs = ", ".join(f"`{slug}`" for slug, (s, _, _) in PROBLEMS.items() if s == status)
    return OpenAPIResponse(
        description=f"RFC 9457 problem: {slugs or 'see /problems'}",
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=_PROBLEM)},
    )


def document_problems(app: Litestar, public_prefixes: tuple[str, ...]) -> None:
    """Add the problem responses to every operation of ``app``'s (cached) document."""
    for path, item in (app.openapi_schema.paths or {}).items():
        public = path.startswith(public_prefixes)
        for method in ("get", "post"):
            operation = getattr(item, method)
            if operation is None:
                continue
            statuses = ANY + (PUBLIC if public else SIGNED)
            if method == "post" and not public:
                statuses += SIGNED_POST
            responses = operation.responses if operation.responses is not None else {}
            for status in statuses:
                # Replaces Litestar's own 400 entry: our handler answers problem+json.
                responses[str(status)] = _response(status)
            operation.responses = responses
