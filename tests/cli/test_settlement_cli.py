"""Settlement from the operator's shell: settle a date, read its status, export and verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_settle_export_and_verify_every_format(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COALITION_")},
        "COALITION_DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3",
        "COALITION_STATEMENT_KEY_PATH": str(tmp_path / "keys" / "statement.private.pem"),
        "COALITION_SETTLEMENT_START_DATE": "2026-01-05",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "coalition.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("migrate").returncode == 0
    assert run("statement-key", "generate").returncode == 0
    assert run("partner", "add", "cafe", "--name", "Cafe").returncode == 0
    assert run("settle", "2099-01-01").returncode == 1  # not closed yet
    settled = run("settle", "2026-01-05")
    assert settled.returncode == 0, settled.stderr
    assert json.loads(settled.stdout)["status"] == "published"
    status = run("settle", "status", "2026-01-05")
    assert json.loads(status.stdout)["status"] == "published"
    exported = run("statement", "export", "2026-01-05", "--out", str(tmp_path / "out"))
    files = sorted(Path(line).name for line in exported.stdout.split())
    assert files == [
        f"statement-2026-01-05-{who}.{fmt}"
        for who in ("cafe", "operator")
        for fmt in ("csv", "json", "pdf")
    ]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(run("statement-key", "jwks").stdout)
    for name in files:
        verified = run("statement", "verify", str(tmp_path / "out" / name), "--jwks", str(jwks))
        assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified.stderr
    tampered = tmp_path / "tampered.json"
    original = (tmp_path / "out" / "statement-2026-01-05-cafe.json").read_text()
    tampered.write_text(original.replace('"earn_count":0', '"earn_count":1'))
    refused = run("statement", "verify", str(tampered), "--jwks", str(jwks))
    assert refused.returncode == 1 and "FAILED" in refused.stderr
