"""A partner's client for tests: requests signed by the independent ``http_message_signatures``
library (RFC 9421, Ed25519), sent to the real ASGI app over httpx."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

AUTHORITY = "api.coalition.test"
BASE = ("@method", "@authority", "@path", "@query")
BODY = ("content-type", "idempotency-key")  # the library adds content-digest itself


def body_of(prepared: requests.PreparedRequest) -> bytes | None:
    """The prepared body: these requests are built from bytes (or none)."""
    body = prepared.body
    assert body is None or isinstance(body, bytes)
    return body


def header(prepared: requests.PreparedRequest, name: str) -> str:
    """One header of a prepared request (requests types values ``str | bytes``; ours are str)."""
    value = prepared.headers[name]
    assert isinstance(value, str)
    return value


def headers_of(prepared: requests.PreparedRequest) -> dict[str, str]:
    """All the headers of a prepared request, as httpx takes them."""
    return {name: header(prepared, name) for name in prepared.headers}


def sign(
    prepared: requests.PreparedRequest,
    keyid: str,
    key: Ed25519PrivateKey,
    *,
    created: datetime,
    nonce: str | None,
    components: tuple[str, ...] | None = None,
) -> requests.PreparedRequest:
    """Sign a prepared request in place (its URL names the authority the server expects)."""
    post = prepared.method == "POST"
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(private_keys={keyid: key}, public_keys={}),
    )
    signer.sign(
        prepared,
        key_id=keyid,
        created=created,
        nonce=nonce,
        covered_component_ids=components or (BASE + BODY if post else BASE),
        body=(body_of(prepared) or b"") if post else None,
    )
    return prepared


class PartnerClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        partner_id: str,
        keyid: str,
        key: Ed25519PrivateKey,
        clock: Callable[[], datetime],
    ) -> None:
        self.http, self.partner_id, self.keyid, self.key, self.clock = (
            http,
            partner_id,
            keyid,
            key,
            clock,
        )

    def signed(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        components: tuple[str, ...] | None = None,
        nonce: str | None = "auto",
        created: datetime | None = None,
        keyid: str | None = None,
        private: Ed25519PrivateKey | None = None,
    ) -> requests.PreparedRequest:
        raw = (
            json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        )
        all_headers = dict(headers or {})
        if method == "POST":
            all_headers.setdefault("Content-Type", "application/json")
            all_headers.setdefault("Idempotency-Key", key or f"key-{secrets.token_hex(8)}")
        prepared = requests.Request(
            method, f"https://{AUTHORITY}{path}", headers=all_headers, data=raw
        ).prepare()
        return sign(
            prepared,
            keyid or self.keyid,
            private or self.key,
            created=created or self.clock(),
            nonce=secrets.token_hex(8) if nonce == "auto" else nonce,
            components=components,
        )

    async def send(self, prepared: requests.PreparedRequest) -> httpx.Response:
        url = prepared.url or ""
        return await self.http.request(
            prepared.method or "GET",
            url.replace(f"https://{AUTHORITY}", ""),
            headers=headers_of(prepared),
            content=body_of(prepared),
        )

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send(self.signed("GET", path, **kwargs))

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """``body=None`` sends an empty body (which the API reads as ``{}``)."""
        return await self.send(self.signed("POST", path, b"" if body is None else body, **kwargs))
