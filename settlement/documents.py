"""Statement documents: canonical JSON, the signed JSON envelope, and the signed CSV.

Canonical JSON is UTF-8 with sorted keys and no insignificant whitespace, so the same statement
always has the same bytes. A signature is Ed25519 over the 32 raw bytes of the SHA-256 digest.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
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


class CsvBody:
    """A CSV written row by row (rows can stream from the database in batches)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self._out = io.StringIO(newline="")
        self._writer = csv.writer(self._out, lineterminator="\n")
        self._writer.writerow(columns)

    def add(self, row: Sequence[Any]) -> None:
        self._writer.writerow(row)

    def signed(self, keyid: str, key: Ed25519PrivateKey, statement_digest_value: str) -> bytes:
        """The rows, then ``# keyid``, ``# digest`` (over every byte before the first trailing
        ``#`` line), ``# signature`` and ``# statement-digest`` lines."""
        body = self._out.getvalue().encode()
        raw, digest = digest_header(body)
        trailer = (
            f"# keyid: {keyid}\n# digest: {digest}\n# signature: {sf_binary(key.sign(raw))}\n"
            f"# statement-digest: {statement_digest_value}\n"
        )
        return body + trailer.encode()
