"""RFC 9421 HTTP Message Signatures (Ed25519 only) and RFC 9530 Content-Digest checks.

Pure functions: no I/O, no clock (``now`` is passed in), no web framework. A verifier runs
parse_signature -> check_coverage -> check_window -> (load key by ``keyid``) ->
signature_base -> verify_signature, plus check_content_digest for requests with a body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias, cast

import http_sf
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MISSING: Final = "signature-missing"
MALFORMED: Final = "signature-malformed"
COVERAGE: Final = "signature-coverage"
EXPIRED: Final = "signature-expired"
KEY_UNKNOWN: Final = "key-unknown"
INVALID: Final = "signature-invalid"
DIGEST_INVALID: Final = "digest-invalid"

ALGORITHM: Final = "ed25519"
_BASE_COMPONENTS: Final = ("@method", "@authority", "@path", "@query")
_BODY_COMPONENTS: Final = ("content-digest", "content-type", "idempotency-key")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
# Only derived components we can compute from a request line; @query-param etc. are refused.
_DERIVED: Final = frozenset(
    {"@method", "@authority", "@path", "@query", "@target-uri", "@scheme", "@request-target"}
)
_PARAMS: Final = frozenset({"created", "keyid", "nonce", "alg", "expires", "tag"})
_FIELD_NAME: Final = re.compile(r"[a-z0-9!#$%&'*+\-.^_`|~]+")  # lowercase token (RFC 9110)


class SignatureError(Exception):
    """A verification failure with a stable machine-readable ``slug``."""

    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(f"{slug}: {detail}")
        self.slug = slug
        self.detail = detail


@dataclass(frozen=True)
class ParsedSignature:
    label: str
    components: tuple[str, ...]
    created: int
    expires: int | None
    keyid: str
    nonce: str | None
    alg: str | None
    signature: bytes
    params_text: str  # the Signature-Input member exactly as received; it is what was signed


# --- RFC 8941 dictionaries, parsed by http_sf ------------------------------------------------

Params: TypeAlias = dict[str, object]
Member: TypeAlias = tuple[object, Params]  # (bare item or list of (bare item, Params), Params)


def _refuse_duplicate(key: str, where: str) -> None:
    # RFC 8941 lets a later duplicate key silently overwrite an earlier one; a signature must
    # not be ambiguous, so any duplicate label, member or parameter is refused instead.
    raise http_sf.StructuredFieldError(f"duplicate {where} key {key!r}")


def _parse_dictionary(text: str) -> dict[str, Member]:
    """A strict RFC 8941 dictionary; raises ValueError (http_sf's StructuredFieldError is one).

    HTTP OWS around the field value is not part of it. RFC 9651 Dates and Display Strings,
    which http_sf accepts, are refused: none of these headers may carry them.
    """
    data = text.strip(" \t").encode("ascii")
    parsed = http_sf.parse(data, tltype="dictionary", on_duplicate_key=_refuse_duplicate)
    members = cast(dict[str, Member], parsed)
    for value, params in members.values():
        items = cast(list[Member], value) if isinstance(value, list) else [(value, {})]
        bare = [*params.values(), *(x for item, p in items for x in (item, *p.values()))]
        if any(isinstance(x, datetime | http_sf.DisplayString) for x in bare):
            raise ValueError("RFC 9651 Dates and Display Strings are not accepted")
    return members


def _ser_signature_input(label: str, components: Sequence[str], params: Params) -> str:
    """``label=("c1" "c2");k=v``; raises ValueError for what RFC 8941 cannot encode."""
    member: http_sf.InnerListType = (list(components), cast(http_sf.types.ParamsType, params))
    return http_sf.ser({label: member})


# --- Verification steps ----------------------------------------------------------------------


def required_components(method: str) -> tuple[str, ...]:
    body = method.upper() in _BODY_METHODS
    return _BASE_COMPONENTS + _BODY_COMPONENTS if body else _BASE_COMPONENTS


def accept_signature_header(method: str) -> str:
    return _ser_signature_input("sig1", required_components(method), {"alg": ALGORITHM})


def parse_signature(signature_input: str | None, signature: str | None) -> ParsedSignature:
    si, sig = (signature_input or "").strip(" \t"), (signature or "").strip(" \t")
    if not si or not sig:
        raise SignatureError(MISSING, "Signature-Input and Signature headers are required")
    try:
        inputs, sigs = _parse_dictionary(si), _parse_dictionary(sig)
    except ValueError as exc:
        raise SignatureError(MALFORMED, f"not a structured-field dictionary: {exc}") from None
    if len(inputs) != 1 or len(sigs) != 1:
        raise SignatureError(MALFORMED, "exactly one signature per request is supported")
    ((label, (value, sp)),), ((sig_label, (sig_value, sig_params)),) = inputs.items(), sigs.items()
    if sig_label != label:
        raise SignatureError(MALFORMED, "Signature and Signature-Input labels differ")
    if type(sig_value) is not bytes or sig_params:
        raise SignatureError(MALFORMED, "Signature member must be a plain byte sequence")
    if not isinstance(value, list):
        raise SignatureError(MALFORMED, "Signature-Input member must be an inner list")
    components: list[str] = []
    for item, item_params in cast(list[Member], value):
        if type(item) is not str:  # an sf-string: http_sf returns a Token for a token
            raise SignatureError(MALFORMED, f"component {item!r} is not a string")
        if item_params:
            raise SignatureError(MALFORMED, f"component parameters are not supported: {item!r}")
        if item not in _DERIVED and not _FIELD_NAME.fullmatch(item):
            raise SignatureError(MALFORMED, f"unsupported component {item!r}")
        components.append(item)
    if len(set(components)) != len(components):
        raise SignatureError(MALFORMED, "duplicate component")
    if not set(sp) <= _PARAMS:  # duplicate parameters were refused by _parse_dictionary
        raise SignatureError(MALFORMED, "unknown signature parameter")
    created, expires, keyid = sp.get("created"), sp.get("expires"), sp.get("keyid")
    nonce, alg, tag = sp.get("nonce"), sp.get("alg"), sp.get("tag")
    if type(created) is not int or type(keyid) is not str or not keyid:
        raise SignatureError(MALFORMED, "created (integer) and keyid (string) are required")
    if expires is not None and type(expires) is not int:
        raise SignatureError(MALFORMED, "expires must be an integer")
    if any(v is not None and type(v) is not str for v in (nonce, alg, tag)):
        raise SignatureError(MALFORMED, "nonce, alg and tag must be strings")
    if alg is not None and alg != ALGORITHM:
        raise SignatureError(KEY_UNKNOWN, f"unsupported alg {alg!r}; only {ALGORITHM} is accepted")
    # The @signature-params line must be the member exactly as the client sent (and signed) it;
    # http_sf's re-serialisation is not (";x=?1" -> ";x", "007" -> "7", "( a  b)" -> "(a b)").
    # http_sf accepted ``si`` (OWS already stripped) as a dictionary of exactly one member with
    # no trailing comma, so ``si`` is ``label=value`` and, as a key cannot contain "=", the
    # value is everything after the first "=".
    params_text = si.partition("=")[2]
    return ParsedSignature(
        label=label,
        components=tuple(components),
        created=created,
        expires=expires,
        keyid=keyid,
        nonce=nonce if isinstance(nonce, str) else None,
        alg=alg if isinstance(alg, str) else None,
        signature=sig_value,
        params_text=params_text,
    )


def check_coverage(parsed: ParsedSignature, method: str) -> None:
    missing = [c for c in required_components(method) if c not in parsed.components]
    if missing:
        raise SignatureError(COVERAGE, "signature must cover " + " ".join(missing))


def check_window(
    parsed: ParsedSignature, now: int, max_age_seconds: int = 300, clock_skew_seconds: int = 30
) -> None:
    if not now - max_age_seconds <= parsed.created <= now + clock_skew_seconds:
        raise SignatureError(EXPIRED, f"created={parsed.created} is outside the window (now={now})")
    if parsed.expires is not None and parsed.expires < now - clock_skew_seconds:
        raise SignatureError(EXPIRED, f"signature expired at {parsed.expires} (now={now})")


def signature_base(
    parsed: ParsedSignature,
    *,
    method: str,
    authority: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    scheme: str = "https",
) -> bytes:
    """RFC 9421 2.5 base. ``authority`` is our configured public one, never the Host header."""
    path = raw_path or "/"
    query = "?" + raw_query if raw_query else ""
    derived = {
        "@method": method,
        "@authority": authority.lower(),
        "@scheme": scheme.lower(),
        "@path": path,
        "@query": "?" + raw_query,  # RFC 9421 2.2.7: a lone "?" when the query is empty
        "@request-target": path + query,
        "@target-uri": f"{scheme.lower()}://{authority.lower()}{path}{query}",
    }
    fields = {name.lower(): value for name, value in headers.items()}
    lines = []
    for component in parsed.components:
        if component in derived:
            value = derived[component]
        elif component in fields:
            value = fields[component].strip(" \t")
        else:
            raise SignatureError(COVERAGE, f"covered header {component!r} is absent")
        # A CR/LF would let a value forge extra base lines.
        if "\r" in value or "\n" in value:
            raise SignatureError(INVALID, f"component {component!r} contains a line break")
        lines.append(f'"{component}": {value}')
    lines.append(f'"@signature-params": {parsed.params_text}')
    try:
        return "\n".join(lines).encode("ascii")
    except UnicodeEncodeError:
        raise SignatureError(INVALID, "signature base must be ASCII (RFC 9421 2.5)") from None


def verify_signature(parsed: ParsedSignature, base: bytes, public_key: Ed25519PublicKey) -> None:
    try:
        public_key.verify(parsed.signature, base)
    except InvalidSignature:
        raise SignatureError(INVALID, "signature does not verify") from None


# --- Content-Digest (RFC 9530) ---------------------------------------------------------------


def content_digest(body: bytes) -> str:
    return http_sf.ser({"sha-256": hashlib.sha256(body).digest()})


def check_content_digest(header_value: str | None, body: bytes) -> None:
    if header_value is None or not header_value.strip(" \t"):
        raise SignatureError(DIGEST_INVALID, "Content-Digest header is required")
    try:  # duplicate members are refused by _parse_dictionary
        digests = {name: value for name, (value, _) in _parse_dictionary(header_value).items()}
    except ValueError as exc:
        raise SignatureError(DIGEST_INVALID, f"malformed Content-Digest: {exc}") from None
    if "sha-256" not in digests:
        raise SignatureError(DIGEST_INVALID, "Content-Digest needs exactly one sha-256 member")
    # sha-256 is mandatory; sha-512 is checked too when sent, other algorithms are ignored.
    for algorithm, hasher in (("sha-256", hashlib.sha256), ("sha-512", hashlib.sha512)):
        expected = digests.get(algorithm)
        if expected is None:
            continue
        if type(expected) is not bytes or not hmac.compare_digest(expected, hasher(body).digest()):
            raise SignatureError(DIGEST_INVALID, f"{algorithm} digest does not match the body")


# --- Signer (tests, ``coalition sign``) -----------------------------------------------------


def sign_request(
    private_key: Ed25519PrivateKey,
    *,
    keyid: str,
    method: str,
    authority: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    created: int,
    nonce: str | None = None,
    label: str = "sig1",
    components: Sequence[str] | None = None,
) -> dict[str, str]:
    """Return ``Signature-Input`` and ``Signature`` headers; raises ValueError on bad input."""
    covered = tuple(components) if components is not None else required_components(method)
    params: Params = {"created": int(created), "keyid": keyid}
    if nonce is not None:
        params["nonce"] = nonce
    params["alg"] = ALGORITHM
    signature_input = _ser_signature_input(label, covered, params)
    try:
        # Round-trip through our own parser so we never emit what we would refuse.
        parsed = parse_signature(signature_input, f"{label}=::")
        base = signature_base(
            parsed,
            method=method,
            authority=authority,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
        )
    except SignatureError as exc:
        raise ValueError(exc.detail) from exc
    signature = http_sf.ser({label: private_key.sign(base)})
    return {"Signature-Input": signature_input, "Signature": signature}
