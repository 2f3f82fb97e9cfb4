"""Offline verification of a statement file (JSON, CSV or PDF) against a JWK set."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from partners.keys import b64url_decode
from settlement.documents import canonical, digest_header

PDF_ATTACHMENT = "statement.json"


class VerificationFailed(Exception):
    pass


def _keys(jwks: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    return {
        k["kid"]: Ed25519PublicKey.from_public_bytes(b64url_decode(k["x"]))
        for k in jwks.get("keys", [])
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    }


def _check(keyid: str, digest: str, signature: str, data: bytes, jwks: dict[str, Any]) -> None:
    raw, expected = digest_header(data)
    if digest != expected:
        raise VerificationFailed("digest does not match the content: the file was changed")
    key = _keys(jwks).get(keyid)
    if key is None:
        raise VerificationFailed(f"no key {keyid!r} in the JWK set")
    try:
        key.verify(base64.b64decode(signature.strip(":"), validate=True), raw)
    except (InvalidSignature, ValueError):
        raise VerificationFailed("signature does not verify") from None


TRAILER = ("keyid", "digest", "signature", "statement-digest")
_B64 = "[A-Za-z0-9+/]+={0,2}"
TRAILER_FORMS = {
    "digest": re.compile(f"sha-256=:{_B64}:"),
    "signature": re.compile(f":{_B64}:"),
    "statement-digest": re.compile(f"sha-256=:{_B64}:"),
}


def verify_json(data: bytes, jwks: dict[str, Any]) -> dict[str, Any]:
    """Returns the statement when the envelope's digest and signature hold and the file is
    exactly as signed: canonical JSON, its values in their forms (docs/settlement.md)."""
    try:
        envelope = json.loads(data)
        statement, sig = envelope["statement"], envelope["signature"]
        if sig["alg"] != "ed25519":
            raise VerificationFailed(f"unsupported alg {sig['alg']!r}")
        _check(sig["keyid"], sig["digest"], sig["value"], canonical(statement), jwks)
        exact = data == canonical(envelope) and TRAILER_FORMS["signature"].fullmatch(sig["value"])
    except (ValueError, KeyError, TypeError) as bad:
        raise VerificationFailed(f"not a signed statement: {bad}") from None
    if not exact:  # e.g. whitespace added, or the signature value loosely written
        raise VerificationFailed("the statement file is not exactly as signed")
    result: dict[str, Any] = statement
    return result


def verify_csv(data: bytes, jwks: dict[str, Any]) -> str:
    """Returns the statement digest the CSV is linked to."""
    marker = data.rfind(b"\n# keyid: ")  # the trailer is last; a quoted field may contain this
    if marker < 0:
        raise VerificationFailed("no signature lines at the end of the CSV")
    body, trailer = data[: marker + 1], data[marker + 1 :]
    try:
        lines = trailer.decode().splitlines()
        fields = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    except ValueError as bad:  # not UTF-8, or a "# " line without ": "
        raise VerificationFailed(f"malformed signature lines: {bad}") from None
    try:
        canonical_trailer = "".join(f"# {name}: {fields[name]}\n" for name in TRAILER)
        _check(fields["keyid"], fields["digest"], fields["signature"], body, jwks)
    except KeyError as missing:
        raise VerificationFailed(f"missing trailing line {missing}") from None
    # Exactly the four lines in their forms: nothing appended, nothing loosely written.
    if trailer != canonical_trailer.encode() or not all(
        form.fullmatch(fields[name]) for name, form in TRAILER_FORMS.items()
    ):
        raise VerificationFailed("the signature lines are not exactly as signed")
    # Not covered by the CSV's signature: the caller compares it with the JSON's digest.
    return fields["statement-digest"]


def verify_pdf(data: bytes, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verifies the embedded signed JSON, and that the digest printed in the PDF (metadata
    Subject and every page's footer) matches it."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        attached = reader.attachments.get(PDF_ATTACHMENT, [])
        printed = str(reader.metadata.get("/Subject", "")) if reader.metadata else ""
        pages = [(page.extract_text() or "").replace("\n", "") for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as bad:
        raise VerificationFailed(f"not a readable PDF: {bad}") from None
    if len(attached) != 1:
        raise VerificationFailed(f"the PDF must embed exactly one {PDF_ATTACHMENT}")
    signed = attached[0]
    statement = verify_json(signed, jwks)
    digest = json.loads(signed)["signature"]["digest"]
    if printed != digest or not pages or any(digest not in text for text in pages):
        raise VerificationFailed("the digest printed in the PDF does not match its statement")
    return statement


def verify_file(data: bytes, jwks: dict[str, Any]) -> str:
    """Detects the format and verifies; returns a one-line verdict."""
    if data.startswith(b"%PDF"):
        statement = verify_pdf(data, jwks)
        return f"OK pdf statement {statement.get('partner_id', '*')} {statement['business_date']}"
    if data.lstrip().startswith(b"{"):
        statement = verify_json(data, jwks)
        return f"OK json statement {statement.get('partner_id', '*')} {statement['business_date']}"
    digest = verify_csv(data, jwks)
    return f"OK csv statement (statement-digest {digest})"


__all__ = ["VerificationFailed", "verify_csv", "verify_file", "verify_json", "verify_pdf"]
