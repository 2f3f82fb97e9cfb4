"""The ``coalition`` command as an operator runs it: a real process on a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "COALITION_DATABASE_URL": f"sqlite:///{tmp_path}/cli.sqlite3"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "coalition.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("migrate").returncode == 0
    return run


def test_operator_onboards_a_partner_and_a_member(run) -> None:  # type: ignore[no-untyped-def]
    added = run(
        "partner", "add", "cafe", "--name", "Cafe", "--earn-rate", "1.5", "--bonus-cap", "500"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["earn_rate"] == "1.5"
    assert run("partner", "suspend", "cafe").returncode == 0
    shown = json.loads(run("partner", "show", "cafe").stdout)
    assert shown["status"] == "suspended"
    listed = json.loads(run("partner", "list").stdout)
    assert [p["id"] for p in listed] == ["cafe"]
    enrolled = run("member", "enrol", "--card-number", "79927398713")
    member_id = json.loads(enrolled.stdout)["member_id"]
    balance = json.loads(run("member", "show", member_id).stdout)
    assert balance["available_points"] == 0
    audited = run("audit")
    assert audited.returncode == 0 and "AUDIT-OK" in audited.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("partner", "add", "Bad Id", "--name", "x"), "partner id must match"),
        (("partner", "add", "shop", "--name", "x", "--roles", "spend"), "roles must be"),
        (("partner", "add", "shop", "--name", "x", "--earn-rate", "1e999"), "earn rate"),
        (("partner", "add", "shop", "--name", "x", "--currency", "eur"), "ISO 4217"),
        (("partner", "show", "nobody"), "not found"),
        (("member", "enrol", "--card-number", "79927398710"), "Luhn"),
        (("member", "show", "mem_missing"), "not found"),
    ],
)
def test_bad_input_is_a_clear_error_with_a_nonzero_exit(run, args, message) -> None:  # type: ignore[no-untyped-def]
    result = run(*args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_exit_2(run) -> None:  # type: ignore[no-untyped-def]
    assert run("partner").returncode == 2
    assert run("no-such-command").returncode == 2


def test_key_generate_add_list_revoke(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("partner", "add", "cafe", "--name", "Cafe").returncode == 0
    generated = run("key", "generate", "--out", str(tmp_path / "keys"), "--keyid", "cafe-1")
    jwk = json.loads(generated.stdout)
    assert (jwk["kty"], jwk["crv"], jwk["kid"]) == ("OKP", "Ed25519", "cafe-1")
    private = tmp_path / "keys" / "cafe-1.private.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    for form, keyid in (("cafe-1.jwk.json", "cafe-1"), ("cafe-1.public.pem", "cafe-2")):
        added = run(
            "key", "add", "cafe", "--public-key", str(tmp_path / "keys" / form), "--keyid", keyid
        )
        assert added.returncode == 0, added.stderr
    third = run(
        "key",
        "add",
        "cafe",
        "--public-key",
        str(tmp_path / "keys" / "cafe-1.jwk.json"),
        "--keyid",
        "cafe-3",
    )
    assert third.returncode == 1 and "2 active keys" in third.stderr
    assert json.loads(run("key", "revoke", "cafe-2").stdout)["state"] == "revoked"
    states = {k["keyid"]: k["state"] for k in json.loads(run("key", "list", "cafe").stdout)}
    assert states == {"cafe-1": "active", "cafe-2": "revoked"}
    private_as_public = run("key", "add", "cafe", "--public-key", str(private), "--keyid", "x")
    assert private_as_public.returncode == 1 and "public key" in private_as_public.stderr


def test_sign_prints_headers_the_verifier_accepts(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from partners import keys, signing

    run("key", "generate", "--out", str(tmp_path), "--keyid", "k1")
    body = '{"member_id":"m1","order_ref":"o","points":5,"reason":"r"}'
    printed = run(
        "sign",
        "POST",
        "http://127.0.0.1:8000/v1/earn?x=1",
        "--key",
        str(tmp_path / "k1.private.pem"),
        "--keyid",
        "k1",
        "--data",
        body,
    )
    headers = dict(line.split(": ", 1) for line in printed.stdout.splitlines())
    parsed = signing.parse_signature(headers["Signature-Input"], headers["Signature"])
    signing.check_coverage(parsed, "POST")
    signing.check_content_digest(headers["Content-Digest"], body.encode())
    lowered = {k.lower(): v for k, v in headers.items()}
    base = signing.signature_base(
        parsed,
        method="POST",
        authority="127.0.0.1:8000",
        raw_path="/v1/earn",
        raw_query="x=1",
        headers=lowered,
    )
    public = keys.load_public_key((tmp_path / "k1.jwk.json").read_text())
    signing.verify_signature(parsed, base, public)
    curl = run(
        "sign",
        "GET",
        "http://127.0.0.1:8000/v1/members/m1",
        "--key",
        str(tmp_path / "k1.private.pem"),
        "--keyid",
        "k1",
        "--curl",
    )
    assert curl.stdout.startswith("curl -sS -X GET http://127.0.0.1:8000/v1/members/m1 -H")
