"""``create_app``: the partner API as a Litestar application.

One map turns every refusal into RFC 9457 problem+json; 401s carry ``WWW-Authenticate`` and
``Accept-Signature`` naming what to sign. Dependencies that are down give 503, never a guess.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath
from redis.asyncio import Redis
from redis.exceptions import RedisError

from coalition import db, extensions
from coalition.clock import Clock, system_clock
from coalition.errors import CoalitionError
from coalition.service import Ledger
from coalition.settings import Settings
from partners import signing
from partners.api import CONTROLLERS, Api, Call, InFlight
from partners.auth import Caller, IdempotencyKeyInvalid, Replayed, verify
from partners.guards import Guards, RateLimited
from partners.logs import RequestLogMiddleware
from partners.openapi import document_problems
from partners.problems import PROBLEMS, problem_response

log = logging.getLogger("coalition.api")

# Failures that mean "a dependency is unavailable, nothing was done": 503, never a guess.
UNAVAILABLE = (
    RedisError,
    OSError,
    db.WriteDeadlineExceeded,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # starting up, shutting down
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    sqlite3.OperationalError,
)


def _unauthorized(request: Request[Any, Any, Any], slug: str, detail: str) -> Response[bytes]:
    return problem_response(
        slug,
        detail,
        headers={
            "WWW-Authenticate": 'Signature realm="coalition", alg="ed25519"',
            "Accept-Signature": signing.accept_signature_header(request.method),
        },
    )


def _on_error(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    match error:
        case signing.SignatureError() if error.slug == signing.DIGEST_INVALID:
            return problem_response(error.slug, error.detail)
        case signing.SignatureError():
            return _unauthorized(request, error.slug, error.detail)
        case Replayed():
            return _unauthorized(request, "signature-replayed", str(error))
        case CoalitionError():
            headers = {"Idempotent-Replayed": "true"} if error.replayed else None
            return problem_response(error.slug, error.detail, fields=error.fields, headers=headers)
        case IdempotencyKeyInvalid():
            return problem_response("idempotency-key-invalid", str(error))
        case InFlight():
            return problem_response(
                "idempotency-in-progress",
                "the first request with this key is still running",
                headers={"Retry-After": "1"},
            )
        case RateLimited():
            return problem_response(
                "rate-limited", "too many requests for this partner", headers={"Retry-After": "1"}
            )
        case ValidationException():
            return problem_response("invalid-request", f"{error.detail}: {error.extra}")
        case NotFoundException():
            return problem_response("not-found", "no such resource")
        case HTTPException() if error.status_code == 413:
            return problem_response("content-too-large", "the body is larger than allowed")
        case HTTPException() if error.status_code == 405:
            return problem_response("method-not-allowed", str(error.detail))
        case HTTPException() if error.status_code < 500:
            return problem_response("invalid-request", str(error.detail))
        case _ if isinstance(error, UNAVAILABLE):
            log.warning("dependency unavailable: %s", type(error).__name__)
            return problem_response(
                "service-unavailable", "a dependency is unavailable", headers={"Retry-After": "1"}
            )
    log.exception("unhandled error", exc_info=error)
    return problem_response("internal-error", "an internal error occurred")


@get("/health", include_in_schema=True, tags=["operations"])
async def health(state: State) -> Response[dict[str, str]]:
    """Database and Redis reachability (unsigned)."""
    status = {"database": "ok", "redis": "ok"}
    try:
        await db.fetch("SELECT 1 AS one")
    except Exception:
        status["database"] = "unavailable"
    try:
        await state.redis.ping()
    except Exception:
        status["redis"] = "unavailable"
    healthy = all(v == "ok" for v in status.values())
    return Response(status, status_code=200 if healthy else 503)


@get("/problems/{slug:str}", tags=["operations"])
async def problem_type(slug: FromPath[str]) -> dict[str, Any]:
    """What a problem ``type`` means and what to do about it."""
    if slug not in PROBLEMS:
        raise NotFoundException()
    status, title, action = PROBLEMS[slug]
    return {"type": f"/problems/{slug}", "status": status, "title": title, "what_to_do": action}


# Packages further up the layer stack contribute resources without partners importing them.
MOUNTED_MODULES = ("settlement.api",)


def _mounted_handlers() -> tuple[list[Any], list[Any]]:
    signed: list[Any] = []
    public: list[Any] = []
    for module in extensions.installed(MOUNTED_MODULES):
        signed += module.SIGNED_HANDLERS
        public += module.PUBLIC_HANDLERS
    return signed, public


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    redis: Redis | None = None,
    own_database: bool = True,
) -> Litestar:
    """The partner API. ``own_database``: open and close the database pool with the app
    (False when the caller, e.g. a test session, manages it)."""
    redis = redis or Redis.from_url(settings.redis_url)
    guards = Guards(redis, settings.redis_key_prefix, settings.rate_limit_per_second, clock)
    api = Api(Ledger(settings, clock), guards, settings.idempotency_in_flight_seconds)
    nonce_ttl = settings.signature_max_age_seconds + settings.signature_clock_skew_seconds

    async def authenticate(request: Request[Any, Any, Any]) -> None:
        caller = await verify(request, settings, clock)
        request.state.caller = caller
        if caller.idempotency_key is not None and caller.record is None:
            return  # a write that will run: `keyed` admits it with its in-flight marker
        claim = None
        if caller.nonce is not None:  # an empty nonce is single-use too
            claim = guards.nonce(caller.key_id, caller.nonce, nonce_ttl)
        if not await guards.admit(caller.partner_id, claim):
            raise Replayed("this nonce was already used with this key")

    def caller(request: Request[Any, Any, Any]) -> Caller:
        verified: Caller = request.state.caller
        return verified

    def signed_call(request: Request[Any, Any, Any]) -> Call:
        return Call(request.state.caller, api)

    extra_signed, extra_public = _mounted_handlers()
    signed = Router(
        "/",
        route_handlers=[*CONTROLLERS, *extra_signed],
        before_request=authenticate,
        dependencies={
            "caller": Provide(caller, sync_to_thread=False),
            "signed": Provide(signed_call, sync_to_thread=False),
        },
    )

    async def start() -> None:
        if own_database:
            await db.start(settings.db_pool_max_size, db.GENERIC_PLANS)

    async def stop() -> None:
        if own_database:
            await db.stop()
        await redis.aclose()

    app = Litestar(
        route_handlers=[signed, health, problem_type, *extra_public],
        dependencies={"api": Provide(lambda: api, sync_to_thread=False)},
        exception_handlers={Exception: _on_error},
        request_max_body_size=settings.request_max_body_bytes,
        state=State({"redis": redis, "settings": settings}),
        on_startup=[start],
        on_shutdown=[stop],
        middleware=[RequestLogMiddleware()],
        # Logging is set up by the process (partners.server): Litestar's default queue handler
        # would hand every access-log line to a thread, ~8% of the server's CPU under load.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="Coalition clearinghouse partner API",
            version="1",
            path="/schema",
            description=_OPENAPI_DESCRIPTION,
        ),
        debug=False,
    )
    document_problems(app, PUBLIC_PATHS)
    return app


# Served without a signature (also documented as such).
PUBLIC_PATHS = ("/health", "/problems", "/schema", "/v1/keys")


_OPENAPI_DESCRIPTION = (
    "Every /v1 request except GET /v1/keys is signed with RFC 9421 HTTP Message Signatures "
    "(Ed25519): Signature-Input and Signature headers covering "
    '"@method" "@authority" "@path" "@query", and on POST also "content-digest" '
    '"content-type" "idempotency-key"; Content-Digest (RFC 9530, sha-256) on every body; '
    "Idempotency-Key (8-255 of [A-Za-z0-9._:~-]) on every POST. Errors are RFC 9457 "
    "application/problem+json; their types:\n\n"
    + "\n".join(f"- `/problems/{slug}` ({s}): {t}" for slug, (s, t, _) in PROBLEMS.items())
)

__all__ = ["create_app"]
