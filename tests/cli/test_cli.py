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
