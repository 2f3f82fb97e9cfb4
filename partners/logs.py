"""One structured log line per request, with a request id. Never bodies, keys or signatures."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("coalition.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A card number is personal data: the log keeps its last four digits only.
CARD_IN_PATH = re.compile(r"(/by-card/)[^/]*?([0-9]{0,4})$")


def loggable_path(path: str) -> str:
    return CARD_IN_PATH.sub(r"\1****\2", path)


class RequestLogMiddleware(ASGIMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else secrets.token_hex(8)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await next_app(scope, receive, send_with_id)
        finally:
            state: Any = scope.get("state", {})
            caller = state.get("caller") if isinstance(state, dict) else None
            log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": loggable_path(str(scope.get("path", ""))),
                        "status": status,
                        "partner": getattr(caller, "partner_id", None),
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                )
            )
