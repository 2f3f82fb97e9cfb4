"""Tests for partners.signing: RFC 9421 / RFC 9530 verification, interop and negatives."""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st
from requests_http_signature import HTTPSignatureAuth

from partners.signing import (
    ParsedSignature,
    SignatureError,
    accept_signature_header,
    check_content_digest,
    check_coverage,
    check_window,
    content_digest,
    parse_signature,
    required_components,
    sign_request,
    signature_base,
    verify_signature,
)

SLUGS = {
    "signature-missing",
    "signature-malformed",
    "signature-coverage",
    "signature-expired",
    "key-unknown",
    "signature-invalid",
    "digest-invalid",
}
NOW = 1_700_000_000
AUTHORITY = "api.example.com"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
POST_BODY = b'{"points":10}'
POST_HEADERS = {
    "content-type": "application/json",
    "idempotency-key": "idem-1",
    "content-digest": content_digest(POST_BODY),
}


def verify_request(
    headers: Mapping[str, str],
    *,
    method: str,
    raw_path: str,
    raw_query: str = "",
    body: bytes = b"",
    now: int = NOW,
    authority: str = AUTHORITY,
    public_key: Ed25519PublicKey | None = None,
) -> ParsedSignature:
    """The verifier pipeline a server runs, in the documented order."""
    lowered = {name.lower(): value for name, value in headers.items()}
    parsed = parse_signature(lowered.get("signature-input"), lowered.get("signature"))
    check_coverage(parsed, method)
    check_window(parsed, now)
    base = signature_base(
        parsed,
        method=method,
        authority=authority,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=lowered,
    )
    verify_signature(parsed, base, public_key or KEY.public_key())
    if method in ("POST", "PUT", "PATCH"):
        check_content_digest(lowered.get("content-digest"), body)
    return parsed


def str_headers(req: requests.PreparedRequest) -> dict[str, str]:
    return {k: v if isinstance(v, str) else v.decode() for k, v in req.headers.items()}


def verify_prepared(req: requests.PreparedRequest, *, now: int, authority: str) -> ParsedSignature:
    assert req.method is not None and req.url is not None
    url = urlsplit(req.url)
    body = req.body if isinstance(req.body, bytes) else b""
    return verify_request(
        str_headers(req),
        method=req.method,
        raw_path=url.path,
        raw_query=url.query,
        body=body,
        now=now,
        authority=authority,
    )


def our_post(**overrides: object) -> dict[str, str]:
    kwargs: dict[str, object] = {
        "keyid": "partner-1",
        "method": "POST",
        "authority": AUTHORITY,
        "raw_path": "/v1/members/m-1/earn",
        "raw_query": "",
        "headers": POST_HEADERS,
        "created": NOW,
        "nonce": "n-1",
    }
    kwargs.update(overrides)
    return {**POST_HEADERS, **sign_request(KEY, **kwargs)}  # type: ignore[arg-type]


def assert_slug(slug: str, headers: Mapping[str, str], **kwargs: object) -> None:
    kwargs.setdefault("method", "POST")
    kwargs.setdefault("raw_path", "/v1/members/m-1/earn")
    kwargs.setdefault("body", POST_BODY)
    with pytest.raises(SignatureError) as info:
        verify_request(headers, **kwargs)  # type: ignore[arg-type]
    assert info.value.slug == slug, info.value.detail


def hms_signer() -> HTTPMessageSigner:
    resolver = MappingKeyResolver(private_keys={"partner-1": KEY}, public_keys={})
    return HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)


HMS_CREATED = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)


# --- Interop: http_message_signatures v3 ------------------------------------------------------


def test_hms_get_with_query_verifies() -> None:
    req = requests.Request("GET", "https://api.example.com/v1/members?limit=10&cursor=a%2Fb")
    prepared = req.prepare()
    hms_signer().sign(
        prepared,
        key_id="partner-1",
        created=HMS_CREATED,
        covered_component_ids=("@method", "@authority", "@path", "@query"),
    )
    parsed = verify_prepared(prepared, now=NOW + 10, authority=AUTHORITY)
    assert parsed.label == "pyhms"  # the library's default label; any label is accepted
    assert parsed.alg == "ed25519"
    assert (parsed.created, parsed.keyid, parsed.nonce) == (NOW, "partner-1", None)


def test_hms_post_with_body_verifies() -> None:
    req = requests.Request(
        "POST",
        "https://api.example.com/v1/members/m-1/earn",
        headers={"Content-Type": "application/json", "Idempotency-Key": "idem-1"},
        data=POST_BODY,
    ).prepare()
    hms_signer().sign(
        req,
        key_id="partner-1",
        created=HMS_CREATED,
        nonce="nonce-1",
        label="sig1",
        covered_component_ids=(
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-type",
            "idempotency-key",
        ),
        body=POST_BODY,  # makes the library add Content-Digest and cover it (appended last)
    )
    parsed = verify_prepared(req, now=NOW, authority=AUTHORITY)
    assert parsed.components[-1] == "content-digest"
    assert parsed.nonce == "nonce-1"


def test_hms_prepared_base_equals_ours() -> None:
    req = requests.Request(
        "PUT",
        "http://127.0.0.1:8000/v1/x/a%2Fb?q=%20x&y",
        headers={"Content-Type": "text/plain ", "Idempotency-Key": "k", "X-Extra": "a, b"},
        data=b"hello",
    ).prepare()
    components = ("@method", "@authority", "@path", "@query", "@target-uri", "@scheme")
    prep = hms_signer().prepare(
        req,
        key_id="partner-1",
        created=HMS_CREATED,
        expires=HMS_CREATED + datetime.timedelta(minutes=5),
        covered_component_ids=(*components, "content-type", "idempotency-key", "x-extra"),
        body=b"hello",
    )
    parsed = parse_signature(f"sig1={prep.signature_params}", "sig1=:AAAA:")
    assert parsed.expires == NOW + 300
    ours = signature_base(
        parsed,
        method="PUT",
        authority="127.0.0.1:8000",
        raw_path="/v1/x/a%2Fb",
        raw_query="q=%20x&y",
        headers=str_headers(req),
        scheme="http",
    )
    assert ours == prep.signature_base


def test_hms_authority_with_port_must_match_configured_authority() -> None:
    req = requests.Request("GET", "http://127.0.0.1:8000/v1/ping").prepare()
    hms_signer().sign(
        req,
        key_id="partner-1",
        created=HMS_CREATED,
        covered_component_ids=("@method", "@authority", "@path", "@query"),
    )
    assert verify_prepared(req, now=NOW, authority="127.0.0.1:8000").keyid == "partner-1"
    with pytest.raises(SignatureError) as info:
        verify_prepared(req, now=NOW, authority="127.0.0.1")
    assert info.value.slug == "signature-invalid"


def test_hms_percent_encoded_path_verifies_only_raw() -> None:
    req = requests.Request("GET", "https://api.example.com/v1/members/a%2Fb").prepare()
    hms_signer().sign(
        req,
        key_id="partner-1",
        created=HMS_CREATED,
        covered_component_ids=("@method", "@authority", "@path", "@query"),
    )
    headers = str_headers(req)
    assert verify_request(headers, method="GET", raw_path="/v1/members/a%2Fb").keyid
    with pytest.raises(SignatureError) as info:
        verify_request(headers, method="GET", raw_path="/v1/members/a/b")
    assert info.value.slug == "signature-invalid"


# --- Interop: requests_http_signature v2 (auth called directly, no network) -------------------


def rhs_auth(**kwargs: object) -> HTTPSignatureAuth:
    resolver = MappingKeyResolver(private_keys={"partner-1": KEY}, public_keys={})
    return HTTPSignatureAuth(
        signature_algorithm=algorithms.ED25519,
        key_resolver=resolver,
        key_id="partner-1",
        covered_component_ids=("@method", "@authority", "@path", "@query"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_requests_http_signature_get_verifies() -> None:
    req = requests.Request("GET", "https://api.example.com/v1/members?limit=5").prepare()
    rhs_auth(use_nonce=True)(req)
    parsed = verify_prepared(req, now=int(time.time()), authority=AUTHORITY)
    # It also adds and covers Date, and a Content-Digest of the empty body, on a GET.
    assert parsed.components == (
        "@method",
        "@authority",
        "@path",
        "@query",
        "date",
        "content-digest",
    )
    assert parsed.nonce is not None and parsed.alg == "ed25519"
    check_content_digest(str_headers(req)["Content-Digest"], b"")


def test_requests_http_signature_post_verifies() -> None:
    req = requests.Request(
        "POST",
        "https://api.example.com/v1/members/m-1/earn?dry_run=1",
        headers={"Content-Type": "application/json", "Idempotency-Key": "idem-9"},
        data=POST_BODY,
    ).prepare()
    auth = rhs_auth(expires_in=datetime.timedelta(seconds=60))
    auth.covered_component_ids = (
        *auth.covered_component_ids,
        "content-type",
        "idempotency-key",
    )
    auth(req)
    now = int(time.time())
    parsed = verify_prepared(req, now=now, authority=AUTHORITY)
    assert parsed.expires is not None and parsed.expires - parsed.created == 60
    assert "content-digest" in parsed.components
    tampered = req.copy()
    tampered.body = b'{"points":99}'
    with pytest.raises(SignatureError) as info:
        verify_prepared(tampered, now=now, authority=AUTHORITY)
    assert info.value.slug == "digest-invalid"


# --- Our signer and the exact signature base --------------------------------------------------


def test_sign_request_roundtrip() -> None:
    headers = our_post()
    assert headers["Signature-Input"].startswith('sig1=("@method" "@authority" "@path" "@query" ')
    parsed = verify_request(headers, method="POST", raw_path="/v1/members/m-1/earn", body=POST_BODY)
    assert parsed.components == required_components("POST")
    assert (parsed.keyid, parsed.nonce, parsed.alg) == ("partner-1", "n-1", "ed25519")


def test_signature_base_known_post() -> None:
    headers = our_post()
    parsed = parse_signature(headers["Signature-Input"], headers["Signature"])
    base = signature_base(
        parsed,
        method="POST",
        authority=AUTHORITY,
        raw_path="/v1/members/m-1/earn",
        raw_query="",
        headers={**POST_HEADERS, "content-type": "  application/json\t"},
    )
    expected = (
        '"@method": POST\n'
        '"@authority": api.example.com\n'
        '"@path": /v1/members/m-1/earn\n'
        '"@query": ?\n'
        '"content-digest": sha-256=:PED4sg9fJoqs81EzmAP50B+ZpBAPZVaDsp+8fGV+SPQ=:\n'
        '"content-type": application/json\n'
        '"idempotency-key": idem-1\n'
        '"@signature-params": ("@method" "@authority" "@path" "@query" "content-digest"'
        ' "content-type" "idempotency-key");created=1700000000;keyid="partner-1";nonce="n-1"'
        ';alg="ed25519"'
    )
    assert base == expected.encode()
    assert parsed.params_text == headers["Signature-Input"].removeprefix("sig1=")


def test_signature_base_known_get_with_query() -> None:
    headers = sign_request(
        KEY,
        keyid="k",
        method="GET",
        authority="API.Example.com",
        raw_path="/v1/members/a%2Fb",
        raw_query="limit=10&cursor=x%20y",
        headers={},
        created=NOW,
        label="partner",
    )
    assert headers["Signature-Input"] == (
        'partner=("@method" "@authority" "@path" "@query");created=1700000000;keyid="k"'
        ';alg="ed25519"'
    )
    parsed = parse_signature(headers["Signature-Input"], headers["Signature"])
    base = signature_base(
        parsed,
        method="GET",
        authority="api.example.com",
        raw_path="/v1/members/a%2Fb",
        raw_query="limit=10&cursor=x%20y",
        headers={},
    )
    assert base == (
        b'"@method": GET\n"@authority": api.example.com\n"@path": /v1/members/a%2Fb\n'
        b'"@query": ?limit=10&cursor=x%20y\n"@signature-params": '
        + headers["Signature-Input"][8:].encode()
    )
    verify_signature(parsed, base, KEY.public_key())


def test_rfc9421_b26_test_vector() -> None:
    # RFC 9421 appendix B.2.6 (Ed25519 is deterministic, so the published signature verifies).
    public_key = load_pem_public_key(
        b"-----BEGIN PUBLIC KEY-----\n"
        b"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n"
        b"-----END PUBLIC KEY-----\n"
    )
    assert isinstance(public_key, Ed25519PublicKey)
    parsed = parse_signature(
        'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"',
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    )
    base = signature_base(
        parsed,
        method="POST",
        authority="example.com",
        raw_path="/foo",
        raw_query="param=Value&Pet=dog",
        headers={
            "date": "Tue, 20 Apr 2021 02:07:55 GMT",
            "content-type": "application/json",
            "content-length": "18",
        },
    )
    assert base.startswith(b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n"@method": POST\n')
    verify_signature(parsed, base, public_key)
    with pytest.raises(SignatureError) as info:
        check_coverage(parsed, "POST")  # no @query / idempotency-key: our profile refuses it
    assert info.value.slug == "signature-coverage"


def test_required_components_and_accept_signature() -> None:
    assert required_components("get") == ("@method", "@authority", "@path", "@query")
    assert required_components("DELETE") == required_components("GET")
    assert required_components("patch")[-3:] == (
        "content-digest",
        "content-type",
        "idempotency-key",
    )
    assert accept_signature_header("GET") == (
        'sig1=("@method" "@authority" "@path" "@query");alg="ed25519"'
    )
    post = accept_signature_header("POST")
    assert '"content-digest" "content-type" "idempotency-key");alg="ed25519"' in post


def test_sign_request_rejects_what_the_verifier_would_refuse() -> None:
    with pytest.raises(ValueError):
        our_post(label="Bad Label")
    with pytest.raises(ValueError):
        our_post(headers={"content-type": "application/json"})  # covered header absent
    with pytest.raises(ValueError):
        our_post(components=('"@method";req',))


# --- Negative cases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "blank"),
    [("Signature-Input", False), ("Signature", False), ("Signature", True)],
)
def test_missing_headers(drop: str, blank: bool) -> None:
    headers = our_post()
    if blank:
        headers[drop] = "  "
    else:
        del headers[drop]
    assert_slug("signature-missing", headers)


def test_two_members_malformed() -> None:
    headers = our_post()
    other = our_post(label="sig2")
    headers["Signature-Input"] += ", " + other["Signature-Input"]
    headers["Signature"] += ", " + other["Signature"]
    assert_slug("signature-malformed", headers)
    duplicated = our_post()
    duplicated["Signature-Input"] += ", " + duplicated["Signature-Input"]
    duplicated["Signature"] += ", " + duplicated["Signature"]
    assert_slug("signature-malformed", duplicated)


def test_label_mismatch_malformed() -> None:
    headers = our_post()
    headers["Signature"] = headers["Signature"].replace("sig1=", "sig2=", 1)
    assert_slug("signature-malformed", headers)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s + ";foo=1",  # unknown parameter
        lambda s: s + ';keyid="again"',  # duplicate parameter
        lambda s: s.replace('"content-type"', '"content-type";sf'),  # component parameter
        lambda s: s.replace('"content-type"', '"content-type";key="a"'),
        lambda s: s.replace('keyid="partner-1"', "keyid=partner-1"),  # token, not string
        lambda s: s.replace("created=1700000000", "created=1700000000.5"),
        lambda s: s.replace("created=1700000000;", ""),  # created missing
        lambda s: s.replace("created=1700000000", "created=@1700000000"),  # RFC 9651 Date
        lambda s: s.replace('nonce="n-1"', 'nonce=%"n-1"'),  # RFC 9651 Display String
        lambda s: s.replace('"@query"', '"@query" "@query"'),  # duplicate component
        lambda s: s.replace('"@query"', '"@query" "@query-param"'),  # unsupported derived
        lambda s: s.replace('"@query"', '"@query" "Content-Length"'),  # not lowercase
        lambda s: s.replace('"@query"', '"@query" "@signature-params"'),
        lambda s: s.replace("(", "").replace(")", ""),  # not an inner list
        lambda s: s + ",",  # trailing comma
    ],
)
def test_malformed_signature_input(mutate: Callable[[str], str]) -> None:
    headers = our_post()
    headers["Signature-Input"] = mutate(headers["Signature-Input"])
    assert_slug("signature-malformed", headers)


def test_signature_value_must_be_byte_sequence() -> None:
    headers = our_post()
    headers["Signature"] = 'sig1="not-bytes"'
    assert_slug("signature-malformed", headers)


def test_missing_required_component_on_post() -> None:
    headers = our_post(components=("@method", "@authority", "@path", "@query", "content-digest"))
    assert_slug("signature-coverage", headers)


def test_target_uri_is_not_a_substitute_for_path() -> None:
    components = ("@method", "@authority", "@target-uri", "@query")
    headers = sign_request(
        KEY,
        keyid="k",
        method="GET",
        authority=AUTHORITY,
        raw_path="/v1/x",
        raw_query="",
        headers={},
        created=NOW,
        components=components,
    )
    parsed = parse_signature(headers["Signature-Input"], headers["Signature"])
    assert parsed.components == components
    assert_slug("signature-coverage", headers, method="GET", raw_path="/v1/x")


def test_covered_header_absent_is_coverage_error() -> None:
    headers = our_post()
    del headers["idempotency-key"]
    assert_slug("signature-coverage", headers)


@pytest.mark.parametrize(
    ("created", "ok"),
    [(NOW - 301, False), (NOW + 31, False), (NOW - 300, True), (NOW + 30, True)],
)
def test_created_window(created: int, ok: bool) -> None:
    headers = our_post(created=created)
    if ok:
        assert verify_request(
            headers, method="POST", raw_path="/v1/members/m-1/earn", body=POST_BODY
        )
    else:
        assert_slug("signature-expired", headers)


def test_window_is_configurable() -> None:
    headers = our_post(created=NOW - 400)
    parsed = parse_signature(headers["Signature-Input"], headers["Signature"])
    check_window(parsed, NOW, max_age_seconds=400)
    check_window(parsed, NOW - 410, clock_skew_seconds=10)
    for now, kwargs in ((NOW, {}), (NOW - 411, {"clock_skew_seconds": 10})):
        with pytest.raises(SignatureError) as info:
            check_window(parsed, now, **kwargs)
        assert info.value.slug == "signature-expired"


def _with_expires(expires: int) -> dict[str, str]:
    params = f';created={NOW};keyid="k";expires={expires}'
    components = '("@method" "@authority" "@path" "@query")'
    base = (
        f'"@method": GET\n"@authority": {AUTHORITY}\n"@path": /v1/x\n"@query": ?\n'
        f'"@signature-params": {components}{params}'
    ).encode()
    signature = base64.b64encode(KEY.sign(base)).decode()
    return {"Signature-Input": f"s={components}{params}", "Signature": f"s=:{signature}:"}


def test_expires_honoured() -> None:
    fresh = _with_expires(NOW - 30)  # exactly at the skew boundary: accepted
    assert verify_request(fresh, method="GET", raw_path="/v1/x").expires == NOW - 30
    assert_slug("signature-expired", _with_expires(NOW - 31), method="GET", raw_path="/v1/x")


def test_params_text_is_the_member_as_received() -> None:
    # Valid RFC 8941 that a re-serialisation would normalise: the base must use the sent text.
    params = '( "@method"  "@authority" "@path" "@query" );created=01700000000; keyid="k"'
    base = (
        f'"@method": GET\n"@authority": {AUTHORITY}\n"@path": /v1/x\n"@query": ?\n'
        f'"@signature-params": {params}'
    ).encode()
    signature = base64.b64encode(KEY.sign(base)).decode()
    headers = {"Signature-Input": f"s={params}", "Signature": f"s=:{signature}:"}
    parsed = verify_request(headers, method="GET", raw_path="/v1/x")
    assert (parsed.params_text, parsed.created) == (params, NOW)


def test_alg_other_than_ed25519_is_key_unknown() -> None:
    headers = our_post()
    headers["Signature-Input"] = headers["Signature-Input"].replace('"ed25519"', '"rsa-pss-sha512"')
    assert_slug("key-unknown", headers)


def test_wrong_key_is_invalid() -> None:
    assert_slug("signature-invalid", our_post(), public_key=OTHER_KEY.public_key())


def test_tampered_covered_header_is_invalid() -> None:
    headers = our_post()
    headers["idempotency-key"] = "idem-2"
    assert_slug("signature-invalid", headers)


def test_line_break_in_covered_value_is_invalid() -> None:
    headers = our_post()
    headers["idempotency-key"] = 'idem-1\n"x": y'
    assert_slug("signature-invalid", headers)


def test_body_tampered_is_digest_invalid() -> None:
    assert_slug("digest-invalid", our_post(), body=b'{"points":11}')


def test_digest_checks() -> None:
    body = b"payload"
    sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    sha512 = base64.b64encode(hashlib.sha512(body).digest()).decode()
    check_content_digest(content_digest(body), body)
    check_content_digest(f"sha-512=:{sha512}:, sha-256=:{sha256}:, md5=:AAAA:", body)
    bad = [
        None,
        "",
        f"sha-512=:{sha512}:",  # no sha-256
        f"sha-256={sha256}",  # not a byte sequence
        f"sha-256=:{sha256}",  # unterminated
        f"sha-256=:{sha256}:, sha-256=:{sha256}:",  # duplicate member
        f"sha-256=:{sha256}:, md5=@1",  # RFC 9651 Date, even in an ignored member
        f'sha-256=:{sha256}:;x=%"y"',  # RFC 9651 Display String
        f"sha-256=:{sha256}:, sha-512=:{sha256}:",  # sha-512 present but wrong
        content_digest(b"other"),
    ]
    for value in bad:
        with pytest.raises(SignatureError) as info:
            check_content_digest(value, body)
        assert info.value.slug == "digest-invalid", value


def test_digest_without_sha256_on_signed_request() -> None:
    sha512 = base64.b64encode(hashlib.sha512(POST_BODY).digest()).decode()
    headers = our_post(headers={**POST_HEADERS, "content-digest": f"sha-512=:{sha512}:"})
    headers["content-digest"] = f"sha-512=:{sha512}:"
    assert_slug("digest-invalid", headers)


def test_percent_encoded_path_own_signer() -> None:
    headers = sign_request(
        KEY,
        keyid="k",
        method="GET",
        authority=AUTHORITY,
        raw_path="/v1/members/a%2Fb",
        raw_query="",
        headers={},
        created=NOW,
    )
    assert verify_request(headers, method="GET", raw_path="/v1/members/a%2Fb").keyid == "k"
    assert_slug("signature-invalid", headers, method="GET", raw_path="/v1/members/a/b")


# --- Property tests ---------------------------------------------------------------------------

SF_ALPHABET = st.sampled_from(list('sig1=()"@-;:,? \t\\abcdefkeyidcreated0123456789.*/+AZ\x00é'))


def _parse_or_slug(signature_input: str | None, signature: str | None) -> str:
    try:
        parsed = parse_signature(signature_input, signature)
    except SignatureError as exc:
        return exc.slug
    assert isinstance(parsed.signature, bytes) and isinstance(parsed.created, int)
    return "ok"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text()))
def test_random_text_only_raises_signature_error(si: str | None, sig: str | None) -> None:
    assert _parse_or_slug(si, sig) in SLUGS | {"ok"}


@settings(max_examples=300, deadline=None)
@given(st.text(SF_ALPHABET, max_size=60), st.text(SF_ALPHABET, max_size=60))
def test_sf_like_text_only_raises_signature_error(si: str, sig: str) -> None:
    assert _parse_or_slug(si, sig) in SLUGS | {"ok"}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_headers_only_raise_signature_error(data: st.DataObject) -> None:
    headers = our_post()
    name = data.draw(st.sampled_from(["Signature-Input", "Signature"]))
    value = headers[name]
    i = data.draw(st.integers(0, len(value) - 1))
    j = data.draw(st.integers(i, min(len(value), i + 4)))
    headers[name] = value[:i] + data.draw(st.text(SF_ALPHABET, max_size=4)) + value[j:]
    try:
        verify_request(headers, method="POST", raw_path="/v1/members/m-1/earn", body=POST_BODY)
    except SignatureError as exc:
        assert exc.slug in SLUGS


@settings(max_examples=200, deadline=None)
@given(st.text(SF_ALPHABET, max_size=60), st.binary(max_size=16))
def test_random_digest_only_raises_digest_invalid(value: str, body: bytes) -> None:
    try:
        check_content_digest(value, body)
    except SignatureError as exc:
        assert exc.slug == "digest-invalid"
    else:
        assert "sha-256=:" in value
