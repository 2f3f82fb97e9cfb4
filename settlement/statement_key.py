"""The clearinghouse's Ed25519 statement-signing key, and the JWK set that publishes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coalition.errors import InvalidInput
from partners.keys import (
    b64url,
    b64url_decode,
    generate_key_pair,
    load_private_key,
    public_jwk,
    raw_public,
)


def key_id(public: Ed25519PublicKey) -> str:
    """Derived from the key itself, so every process agrees on it without configuration."""
    return "stmt-" + b64url(hashlib.sha256(raw_public(public)).digest())[:16]


def generate(path: Path) -> dict[str, str]:
    """Create the statement key at ``path``; its public JWK (with the key id signatures carry)
    is written beside it, ready to be kept as ``<kid>.retired.jwk.json`` after a rotation."""
    if path.exists():
        raise FileExistsError(f"{path} exists; a statement key is never overwritten")
    name = path.name.removesuffix(".private.pem")
    generate_key_pair(path.parent, name)
    jwk = jwks(path)["keys"][0]
    (path.parent / f"{name}.jwk.json").write_text(json.dumps(jwk, indent=2) + "\n")
    return jwk


def load(path: Path) -> tuple[str, Ed25519PrivateKey]:
    private = load_private_key(path)
    return key_id(private.public_key()), private


def jwks(path: Path) -> dict[str, list[dict[str, str]]]:
    """The JWK set: the current key, and any retired public keys kept beside it
    (``*.retired.jwk.json``) so statements signed before a rotation still verify."""
    if path.exists():
        public = load(path)[1].public_key()
    else:  # an API host may carry only the public key, written beside the private one
        beside = path.parent / f"{path.name.removesuffix('.private.pem')}.jwk.json"
        public = Ed25519PublicKey.from_public_bytes(
            b64url_decode(json.loads(beside.read_text())["x"])
        )
    keys = [public_jwk(public, key_id(public))]
    for retired in sorted(path.parent.glob("*.retired.jwk.json")):
        try:
            jwk = json.loads(retired.read_text())
            Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
            keys.append({k: jwk[k] for k in ("kty", "crv", "x", "kid")})
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(f"{retired} is not an Ed25519 public JWK with a kid") from None
    return {"keys": keys}
