"""Statement documents: canonical JSON, the signed JSON envelope, and the signed CSV.

Canonical JSON is UTF-8 with sorted keys and no insignificant whitespace, so the same statement
always has the same bytes. A signature is Ed25519 over the 32 raw bytes of the SHA-256 digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coalition.ledger import rfc3339

TRANSACTION_COLUMNS = (
    "transaction_id",
    "type",
    "member_id",
    "order_ref",
    "points",
    "posted_at",
    "occurred_at",
)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sf_binary(data: bytes) -> str:
    return ":" + base64.b64encode(data).decode() + ":"


def digest_header(data: bytes) -> tuple[bytes, str]:
    raw = hashlib.sha256(data).digest()
    return raw, "sha-256=" + sf_binary(raw)


def sign_json(statement: dict[str, Any], keyid: str, key: Ed25519PrivateKey) -> bytes:
    raw, digest = digest_header(canonical(statement))
    envelope = {
        "statement": statement,
        "signature": {
            "alg": "ed25519",
            "keyid": keyid,
            "digest": digest,
            "value": sf_binary(key.sign(raw)),
        },
    }
    return canonical(envelope)


def statement_digest(signed_json: bytes) -> str:
    digest: str = json.loads(signed_json)["signature"]["digest"]
    return digest


def transaction_row(entry: dict[str, Any]) -> list[Any]:
    occurred = entry["occurred_at_us"]
    return [
        entry["id"],
        entry["kind"],
        entry["member_id"] or "",
        entry["order_ref"] or "",
        entry["points"],
        rfc3339(entry["posted_at_us"]),
        rfc3339(occurred) if occurred else "",
    ]


# A value is quoted when it holds one of these: RFC 4180's minimal quoting, which is exactly what
# PostgreSQL's COPY ... CSV writes (Python's csv module leaves a bare CR unquoted, which readers
# take for the end of the line). Both ways of writing a statement give the same bytes.
_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def csv_field(value: Any) -> str:
    text = str(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(row: Sequence[Any]) -> str:
    return ",".join(map(csv_field, row)) + "\n"


class CsvBody:
    """A CSV written row by row, or in chunks already CSV (PostgreSQL's COPY output)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self._parts: list[bytes] = []
        self.add(columns)

    def add(self, row: Sequence[Any]) -> None:
        self._parts.append(csv_line(row).encode())

    def add_csv(self, chunk: bytes) -> None:
        self._parts.append(chunk)

    def signed(self, keyid: str, key: Ed25519PrivateKey, statement_digest_value: str) -> bytes:
        """The rows, then ``# keyid``, ``# digest`` (over every byte before the first trailing
        ``#`` line), ``# signature`` and ``# statement-digest`` lines."""
        body = b"".join(self._parts)
        raw, digest = digest_header(body)
        trailer = (
            f"# keyid: {keyid}\n# digest: {digest}\n# signature: {sf_binary(key.sign(raw))}\n"
            f"# statement-digest: {statement_digest_value}\n"
        )
        return body + trailer.encode()
