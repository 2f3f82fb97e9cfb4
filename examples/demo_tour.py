#!/usr/bin/env python3
"""The five-minute tour against `make run`: a signed earn at the cafe, a redemption of those
points at the fashion store, and the cafe's statement for the demo's settled day.

Signed with RFC 9421 (Ed25519) by the public PyPI library ``http-message-signatures``; it reads
the demo's key ids and key files from ``.coalition/demo.json``.

    .venv/bin/python examples/demo_tour.py http://127.0.0.1:8000
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

BASE = ("@method", "@authority", "@path", "@query")


class Partner:
    def __init__(self, base_url: str, keyid: str, private_key: Path) -> None:
        self.base_url, self.keyid = base_url, keyid
        key = load_pem_private_key(private_key.read_bytes(), password=None)
        resolver = MappingKeyResolver(private_keys={keyid: key}, public_keys={})
        self.signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=resolver
        )

    def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        accept: str = "application/json",
    ) -> requests.Response:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": accept}
        if data is not None:
            headers |= {
                "Content-Type": "application/json",
                "Idempotency-Key": f"tour-{secrets.token_hex(8)}",
            }
        request = requests.Request(method, self.base_url + path, headers=headers, data=data)
        prepared = request.prepare()
        self.signer.sign(
            prepared,
            key_id=self.keyid,
            created=datetime.now(UTC),
            nonce=secrets.token_hex(12),
            covered_component_ids=BASE + (("content-type", "idempotency-key") if data else ()),
            body=data,  # the library adds Content-Digest and covers it
        )
        return requests.Session().send(prepared, timeout=10)


def show(label: str, response: requests.Response) -> Any:
    print(f"{label}: {response.status_code}")
    if "json" in response.headers.get("content-type", ""):
        print("  " + json.dumps(response.json()))
    response.raise_for_status()
    return response.json() if "json" in response.headers.get("content-type", "") else None


def main(base_url: str, demo_file: Path = Path(".coalition/demo.json")) -> int:
    demo = json.loads(demo_file.read_text())
    cafe, fashion = (
        Partner(base_url, demo["partners"][p]["keyid"], Path(demo["partners"][p]["private_key"]))
        for p in ("cafe", "fashion")
    )
    member = demo["members"][0]
    show(
        "earn 25.99 EUR at the cafe",
        cafe.send(
            "POST",
            "/v1/earn",
            {
                "member_id": member,
                "order_ref": f"T-{secrets.token_hex(3)}",
                "amount": {"amount_minor": 2599, "currency": "EUR"},
            },
        ),
    )
    show(
        "redeem 25 points at the fashion store",
        fashion.send(
            "POST",
            "/v1/redemptions",
            {"member_id": member, "order_ref": f"F-{secrets.token_hex(3)}", "points": 25},
        ),
    )
    show("balance", cafe.send("GET", f"/v1/members/{member}"))
    day = demo["settled_date"]
    statement = show(
        f"the cafe's statement for {day}", cafe.send("GET", f"/v1/settlements/{day}/statement")
    )
    net = statement["statement"]["net_position"]
    print(f"  cafe net position {net['amount_minor']} cents ({net['instruction']})")
    netloc = urlsplit(base_url).netloc
    print(f"verify it offline: curl -s {base_url}/v1/keys > jwks.json (server {netloc})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} BASE_URL [DEMO_JSON]")
    sys.exit(main(sys.argv[1], *(Path(a) for a in sys.argv[2:])))
