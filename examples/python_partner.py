#!/usr/bin/env python3
"""A partner's client for the coalition partner API, using only public libraries.

Enrols a member, earns bonus points, redeems some of them and reads the balance. Every request
is signed with RFC 9421 HTTP Message Signatures (Ed25519) by the PyPI library
``http-message-signatures`` and sent with ``requests``.

    pip install http-message-signatures requests cryptography
    python python_partner.py http://127.0.0.1:8790 cafe-1 keys/cafe-1.private.pem

The partner needs the ``earn`` and ``redeem`` roles and a bonus cap of at least 100 points.
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

# What the server requires to be signed. On POST the library adds "content-digest" itself
# (it computes Content-Digest from body= and covers it).
COMPONENTS = ("@method", "@authority", "@path", "@query")
POST_COMPONENTS = (*COMPONENTS, "content-type", "idempotency-key")


class Partner:
    def __init__(self, base_url: str, keyid: str, private_key_pem: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self.keyid = keyid
        key = load_pem_private_key(private_key_pem.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SystemExit(f"{private_key_pem} is not an Ed25519 private key")
        self.signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(private_keys={keyid: key}, public_keys={}),
        )
        self.session = requests.Session()

    def request(
        self, method: str, path: str, body: Any = None, *, idempotency_key: str | None = None
    ) -> requests.Response:
        headers: dict[str, str] = {}
        raw: bytes | None = None
        if method == "POST":
            # The exact bytes sent are the bytes digested: serialise once, send these bytes.
            raw = json.dumps({} if body is None else body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            # One key per business operation; reuse it (and the same body) when retrying.
            headers["Idempotency-Key"] = idempotency_key or f"pos-{secrets.token_hex(12)}"
        prepared = requests.Request(
            method, self.base_url + path, headers=headers, data=raw
        ).prepare()
        self.signer.sign(
            prepared,
            key_id=self.keyid,
            created=datetime.now(UTC),
            nonce=secrets.token_hex(16),  # a fresh nonce on every request
            label="sig1",
            covered_component_ids=POST_COMPONENTS if method == "POST" else COMPONENTS,
            body=raw,  # adds Content-Digest: sha-256=:...: and covers "content-digest"
        )
        response = self.session.send(prepared, timeout=10)
        replayed = response.headers.get("Idempotent-Replayed")
        print(f"{method} {path} -> {response.status_code}" + (" (replayed)" if replayed else ""))
        print(json.dumps(response.json(), indent=2))
        if not response.ok:  # an RFC 9457 problem: its type says what to do
            raise SystemExit(f"{method} {path} failed: {response.json().get('type')}")
        return response


def main(base_url: str, keyid: str, private_key_pem: str) -> int:
    partner = Partner(base_url, keyid, Path(private_key_pem))
    order = secrets.token_hex(4)

    enrolled = partner.request("POST", "/v1/members", {"partner_member_ref": f"guest-{order}"})
    member_id = enrolled.json()["member_id"]

    earn = {
        "member_id": member_id,
        "order_ref": f"signup-{order}",
        "points": 100,
        "reason": "sign-up bonus",
    }
    earn_key = f"earn-{order}-signup"
    partner.request("POST", "/v1/earn", earn, idempotency_key=earn_key)
    # A retry with the same key and body (e.g. after a timeout) is answered from the first
    # result, with Idempotent-Replayed: true; no second earn is posted.
    partner.request("POST", "/v1/earn", earn, idempotency_key=earn_key)

    redeem = {
        "member_id": member_id,
        "order_ref": f"order-{order}",
        "points": 40,
        "mode": "capture",
    }
    partner.request("POST", "/v1/redemptions", redeem)

    balance = partner.request("GET", f"/v1/members/{member_id}")
    if balance.json()["available_points"] != 60:
        raise SystemExit("unexpected balance")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} BASE_URL KEYID PRIVATE_KEY_PEM")
    sys.exit(main(*sys.argv[1:]))
