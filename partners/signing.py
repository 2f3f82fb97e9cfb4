"""RFC 9421 HTTP Message Signatures (Ed25519 only) and RFC 9530 Content-Digest checks.

Pure functions: no I/O, no clock (``now`` is passed in), no web framework. A verifier runs
parse_signature -> check_coverage -> check_window -> (load key by ``keyid``) ->
signature_base -> verify_signature, plus check_content_digest for requests with a body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

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


# --- Minimal strict RFC 8941 parser (dictionaries only; http_sfv is not installed) ---------


class _SFError(ValueError):
    pass


class _Token(str):
    """Distinguishes sf-token from sf-string so ``keyid=abc`` is refused."""


Bare: TypeAlias = int | float | str | bytes | bool
Params: TypeAlias = list[tuple[str, Bare]]
Member: TypeAlias = tuple[str, Bare | list[tuple[Bare, Params]], Params, str]

_KEY: Final = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_FIELD_NAME: Final = re.compile(r"[a-z0-9!#$%&'*+\-.^_`|~]+")  # lowercase token (RFC 9110)
_BARE: Final = re.compile(
    r"(?P<num>-?(?:[0-9]{1,12}\.[0-9]{1,3}|[0-9]{1,15})(?![0-9.]))"
    r'|"(?P<str>(?:[ !#-\[\]-~]|\\["\\])*)"'
    r"|:(?P<bin>[A-Za-z0-9+/=]*):"
    r"|\?(?P<bool>[01])"
    r"|(?P<tok>[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*)"
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.i += 1

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _SFError(f"expected {char!r} at offset {self.i}")
        self.i += 1

    def key(self) -> str:
        m = _KEY.match(self.s, self.i)
        if m is None:
            raise _SFError(f"bad key at offset {self.i}")
        self.i = m.end()
        return m[0]

    def bare(self) -> Bare:
        m = _BARE.match(self.s, self.i)
        if m is None:
            raise _SFError(f"bad item at offset {self.i}")
        self.i = m.end()
        if m["num"] is not None:
            return float(m["num"]) if "." in m["num"] else int(m["num"])
        if m["str"] is not None:
            return re.sub(r"\\(.)", r"\1", m["str"])
        if m["bin"] is not None:
            try:  # RFC 8941 4.2.7: tolerate missing "=" padding
                return base64.b64decode(m["bin"] + "=" * (-len(m["bin"]) % 4), validate=True)
            except ValueError as exc:
                raise _SFError(f"bad base64 at offset {m.start()}") from exc
        if m["bool"] is not None:
            return m["bool"] == "1"
        return _Token(m["tok"])

    def params(self) -> Params:
        out: Params = []
        while self.peek() == ";":
            self.i += 1
            self.skip(" ")
            name = self.key()
            value: Bare = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare()
            out.append((name, value))
        return out

    def inner_list(self) -> list[tuple[Bare, Params]]:
        self.expect("(")
        items: list[tuple[Bare, Params]] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.i += 1
                return items
            items.append((self.bare(), self.params()))
            if self.peek() not in (" ", ")"):
                raise _SFError(f"bad inner list at offset {self.i}")


def _parse_dictionary(text: str) -> list[Member]:
    """Members in order, duplicates kept (callers refuse them), each with its raw value text."""
    p = _Parser(text.strip(" \t"))
    members: list[Member] = []
    while p.s:
        name = p.key()
        value: Bare | list[tuple[Bare, Params]] = True
        start = p.i
        if p.peek() == "=":
            p.i = start = start + 1
            value = p.inner_list() if p.peek() == "(" else p.bare()
        params = p.params()
        members.append((name, value, params, p.s[start : p.i]))
        p.skip(" \t")
        if p.i == len(p.s):
            break
        p.expect(",")
        p.skip(" \t")
        if p.i == len(p.s):
            raise _SFError("trailing comma")
    return members


def _sf_string(value: str) -> str:
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"not serializable as an sf-string: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Verification steps ----------------------------------------------------------------------


def required_components(method: str) -> tuple[str, ...]:
    body = method.upper() in _BODY_METHODS
    return _BASE_COMPONENTS + _BODY_COMPONENTS if body else _BASE_COMPONENTS


def accept_signature_header(method: str) -> str:
    inner = " ".join(_sf_string(c) for c in required_components(method))
    return f'sig1=({inner});alg="{ALGORITHM}"'


def parse_signature(signature_input: str | None, signature: str | None) -> ParsedSignature:
    si, sig = (signature_input or "").strip(" \t"), (signature or "").strip(" \t")
    if not si or not sig:
        raise SignatureError(MISSING, "Signature-Input and Signature headers are required")
    try:
        inputs, sigs = _parse_dictionary(si), _parse_dictionary(sig)
    except _SFError as exc:
        raise SignatureError(MALFORMED, f"not a structured-field dictionary: {exc}") from None
    if len(inputs) != 1 or len(sigs) != 1:
        raise SignatureError(MALFORMED, "exactly one signature per request is supported")
    (label, value, params, raw), (sig_label, sig_value, sig_params, _) = inputs[0], sigs[0]
    if sig_label != label:
        raise SignatureError(MALFORMED, "Signature and Signature-Input labels differ")
    if type(sig_value) is not bytes or sig_params:
        raise SignatureError(MALFORMED, "Signature member must be a plain byte sequence")
    if not isinstance(value, list):
        raise SignatureError(MALFORMED, "Signature-Input member must be an inner list")
    components: list[str] = []
    for item, item_params in value:
        if type(item) is not str:
            raise SignatureError(MALFORMED, f"component {item!r} is not a string")
        if item_params:
            raise SignatureError(MALFORMED, f"component parameters are not supported: {item!r}")
        if item not in _DERIVED and not _FIELD_NAME.fullmatch(item):
            raise SignatureError(MALFORMED, f"unsupported component {item!r}")
        components.append(item)
    if len(set(components)) != len(components):
        raise SignatureError(MALFORMED, "duplicate component")
    sp = dict(params)
    if len(sp) != len(params) or not set(sp) <= _PARAMS:
        raise SignatureError(MALFORMED, "duplicate or unknown signature parameter")
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
    return ParsedSignature(
        label=label,
        components=tuple(components),
        created=created,
        expires=expires,
        keyid=keyid,
        nonce=nonce if isinstance(nonce, str) else None,
        alg=alg if isinstance(alg, str) else None,
        signature=sig_value,
        params_text=raw,
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
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def check_content_digest(header_value: str | None, body: bytes) -> None:
    if header_value is None or not header_value.strip(" \t"):
        raise SignatureError(DIGEST_INVALID, "Content-Digest header is required")
    try:
        members = _parse_dictionary(header_value)
    except _SFError as exc:
        raise SignatureError(DIGEST_INVALID, f"malformed Content-Digest: {exc}") from None
    digests = {name: value for name, value, _, _ in members}
    if len(digests) != len(members) or "sha-256" not in digests:
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
    params_text = "(" + " ".join(_sf_string(c) for c in covered) + ")"
    params_text += f";created={int(created)};keyid={_sf_string(keyid)}"
    if nonce is not None:
        params_text += f";nonce={_sf_string(nonce)}"
    params_text += f';alg="{ALGORITHM}"'
    signature_input = f"{label}={params_text}"
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
    value = base64.b64encode(private_key.sign(base)).decode()
    return {"Signature-Input": signature_input, "Signature": f"{label}=:{value}:"}
