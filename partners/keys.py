"""Partner keys: import (JWK or SPKI PEM), generate, register, rotate, revoke, look up.

A partner may have at most two active keys, so it can rotate without downtime. Lookups read the
database on every request: revocation must take effect at once, and it is one indexed read.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coalition import db
from coalition.errors import AlreadyExists, InvalidInput, NotFound
from coalition.idempotency import RECORD_COLUMNS
from coalition.journal import PARTNER_COLUMNS
from coalition.ledger import new_id, rfc3339
from partners.coalescing import Coalescer
from partners.signing import KEY_UNKNOWN, SignatureError
from partners.tables import PartnerKey

ACTIVE_KEYS_MAX = 2
FAR_FUTURE_US = 253402300799 * 1_000_000  # 9999-12-31T23:59:59Z


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_jwk(key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    """RFC 8037 OKP key."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw_public(key)), "kid": kid}


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a JWK (RFC 8037) or an SPKI PEM; anything else is refused."""
    text = text.strip()
    try:
        if text.startswith("{"):
            jwk = json.loads(text)
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
                raise ValueError("need a public OKP/Ed25519 JWK (and no private 'd')")
            return Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, KeyError, TypeError) as bad:
        raise InvalidInput(f"not an Ed25519 public key (JWK or SPKI PEM): {bad}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput("only Ed25519 keys are accepted")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 private key")
    return key


def generate_key_pair(out_dir: Path, keyid: str | None = None) -> dict[str, str]:
    """Write ``<keyid>.private.pem`` (mode 0600), ``<keyid>.public.pem`` and ``<keyid>.jwk.json``;
    return the public JWK. The private key never leaves the partner's machine."""
    keyid = keyid or new_id("key")
    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    private_path = out_dir / f"{keyid}.private.pem"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = private.public_key()
    (out_dir / f"{keyid}.public.pem").write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwk = public_jwk(public, keyid)
    (out_dir / f"{keyid}.jwk.json").write_text(json.dumps(jwk, indent=2) + "\n")
    return jwk


async def add_key(
    partner_id: str,
    public_key: Ed25519PublicKey,
    *,
    keyid: str | None,
    now_us: int,
    not_before_us: int | None = None,
    not_after_us: int | None = None,
) -> dict[str, Any]:
    keyid = keyid or new_id("key")
    if not (1 <= len(keyid) <= 128 and keyid.isprintable() and " " not in keyid):
        raise InvalidInput("keyid must be 1-128 printable characters without spaces")
    start = now_us if not_before_us is None else not_before_us
    end = FAR_FUTURE_US if not_after_us is None else not_after_us
    if end <= start:
        raise InvalidInput("not_after must be later than not_before")
    async with db.write_transaction():
        # Lock the partner row so two concurrent adds cannot both see one active key.
        partner = await db.fetch_one(
            f"SELECT id FROM partners WHERE id = {{}}{db.for_update()}", partner_id
        )
        if partner is None:
            raise NotFound(f"partner {partner_id} not found")
        if await db.fetch_one("SELECT keyid FROM partner_keys WHERE keyid = {}", keyid):
            raise AlreadyExists(f"key {keyid} already exists")
        active = await db.fetch_one(
            "SELECT COUNT(*) AS n FROM partner_keys WHERE partner_id = {}"
            " AND revoked_at_us IS NULL AND not_after_us > {}",
            partner_id,
            now_us,
        )
        if active and active["n"] >= ACTIVE_KEYS_MAX:
            raise InvalidInput(
                f"partner {partner_id} already has {ACTIVE_KEYS_MAX} active keys: revoke one first"
            )
        await db.execute(
            "INSERT INTO partner_keys (keyid, partner_id, public_key, not_before_us, not_after_us,"
            " revoked_at_us, created_at_us) VALUES ({}, {}, {}, {}, {}, NULL, {})",
            keyid,
            partner_id,
            b64url(raw_public(public_key)),
            start,
            end,
            now_us,
        )
    return describe(await _key_row(keyid), now_us)


async def list_keys(partner_id: str, now_us: int) -> list[dict[str, Any]]:
    rows = (
        await PartnerKey.select()
        .where(PartnerKey.partner_id == partner_id)
        .order_by(PartnerKey.created_at_us)
    )
    return [describe(row, now_us) for row in rows]


async def revoke_key(keyid: str, now_us: int) -> dict[str, Any]:
    await _key_row(keyid)
    await PartnerKey.update({PartnerKey.revoked_at_us: now_us}).where(
        (PartnerKey.keyid == keyid) & PartnerKey.revoked_at_us.is_null()
    )
    return describe(await _key_row(keyid), now_us)


async def _key_row(keyid: str) -> dict[str, Any]:
    row: dict[str, Any] | None = await PartnerKey.select().where(PartnerKey.keyid == keyid).first()
    if row is None:
        raise NotFound(f"key {keyid} not found")
    return row


def describe(row: dict[str, Any], now_us: int) -> dict[str, Any]:
    if row["revoked_at_us"] is not None:
        state = "revoked"
    elif now_us < row["not_before_us"]:
        state = "pending"
    elif now_us >= row["not_after_us"]:
        state = "expired"
    else:
        state = "active"
    key = Ed25519PublicKey.from_public_bytes(b64url_decode(row["public_key"]))
    return {
        "keyid": row["keyid"],
        "partner_id": row["partner_id"],
        "state": state,
        "not_before": rfc3339(row["not_before_us"]),
        "not_after": rfc3339(row["not_after_us"]),
        "revoked_at": rfc3339(row["revoked_at_us"]) if row["revoked_at_us"] else None,
        "jwk": public_jwk(key, row["keyid"]),
    }


@dataclass(frozen=True, slots=True)
class Verification:
    """What a request's ``keyid`` (and Idempotency-Key) look up before its signature is checked."""

    partner: dict[str, Any]  # the partner's row: the use case decides on it
    public_key: Ed25519PublicKey
    record: dict[str, Any] | None  # the partner's idempotency record under the request's key


async def verification_key(
    keyid: str, now_us: int, idempotency_key: str | None = None
) -> Verification:
    """The partner's row (``journal.PARTNER_COLUMNS``) and the public key for ``keyid`` if it
    is usable now; else ``key-unknown``. One query: with ``idempotency_key``, the partner's
    record under that key (``idempotency.RECORD_COLUMNS``) comes along, so the replay lookup
    costs no round trip of its own. It is used only once the signature checks out.

    On PostgreSQL the lookups of concurrent requests share a query (``_lookups``)."""
    if db.is_postgres():
        row = await _lookups((keyid, idempotency_key))
    else:
        row = await db.fetch_one(_KEY_SELECT, idempotency_key, keyid)
    if row is None or row["revoked_at_us"] is not None:
        raise SignatureError(KEY_UNKNOWN, "unknown or revoked keyid")
    if not row["not_before_us"] <= now_us < row["not_after_us"]:
        raise SignatureError(KEY_UNKNOWN, "this key is not valid at this time")
    partner = {c: row[f"partner_{c}"] for c in PARTNER_COLUMNS}
    record = None  # fingerprint is NOT NULL: NULL means the outer join found no record
    if row["record_fingerprint"] is not None:
        record = {c: row[f"record_{c}"] for c in RECORD_COLUMNS}
    return Verification(partner, _public_key(row["public_key"]), record)


_KEY_COLUMNS = ", ".join(
    ["k.public_key", "k.not_before_us", "k.not_after_us", "k.revoked_at_us"]
    + [f"p.{c} AS partner_{c}" for c in PARTNER_COLUMNS]
    + [f"r.{c} AS record_{c}" for c in RECORD_COLUMNS]
)
# The key, its partner and the partner's record under the request's Idempotency-Key.
_KEY_SELECT = (
    f"SELECT {_KEY_COLUMNS} FROM partner_keys k JOIN partners p ON p.id = k.partner_id"
    " LEFT JOIN idempotency_records r ON r.partner_id = k.partner_id"
    " AND r.idempotency_key = {} WHERE k.keyid = {}"
)
# The same for several (keyid, Idempotency-Key) pairs, numbered from 1 by ``i``.
_KEYS_SELECT = (
    f"SELECT q.i, {_KEY_COLUMNS}"
    " FROM unnest({}::text[], {}::text[]) WITH ORDINALITY AS q(keyid, idempotency_key, i)"
    " JOIN partner_keys k ON k.keyid = q.keyid JOIN partners p ON p.id = k.partner_id"
    " LEFT JOIN idempotency_records r ON r.partner_id = k.partner_id"
    " AND r.idempotency_key = q.idempotency_key"
)


async def _look_up(pairs: list[tuple[str, str | None]]) -> list[dict[str, Any] | None]:
    if len(pairs) == 1:  # alone: the plain query, a little cheaper for PostgreSQL to run
        keyid, idempotency_key = pairs[0]
        return [await db.fetch_one(_KEY_SELECT, idempotency_key, keyid)]
    rows = await db.fetch(_KEYS_SELECT, [k for k, _ in pairs], [i for _, i in pairs])
    by_position = {row["i"]: row for row in rows}
    return [by_position.get(n) for n in range(1, len(pairs) + 1)]


# One query in flight per process: the lookups that arrive meanwhile wait for it and go
# together in the next (docs/performance.md measures what that saves).
_lookups: Coalescer[tuple[str, str | None], dict[str, Any] | None] = Coalescer(
    _look_up, max_in_flight=1, max_keys=64
)


@functools.lru_cache(maxsize=4096)
def _public_key(encoded: str) -> Ed25519PublicKey:
    """The key object of a stored public key: parsing it was 1% of a server's CPU. Caching the
    parse does not cache the key: every request still reads its row, so revocation is at once."""
    return Ed25519PublicKey.from_public_bytes(b64url_decode(encoded))
