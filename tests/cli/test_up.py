"""``coalition up`` as a newcomer runs it: a fresh directory, nothing else running for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from settlement.verify import verify_file

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found + [grandchild for child in found for grandchild in children(child)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def wait_healthy(url: str, process: subprocess.Popen[str], timeout_seconds: float = 90) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # the server is starting: polling /health is the only signal it gives
    raise AssertionError("coalition up did not become healthy")


def test_up_serves_the_demo_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port, home = free_port(), tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    up = subprocess.Popen(
        [sys.executable, "-m", "coalition.cli", "up", "--home", str(home), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, up)
        started = children(up.pid)
        assert len(started) >= 3  # redis, API, worker
        tour = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "demo_tour.py"), url, str(home / "demo.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tour.returncode == 0, tour.stdout + tour.stderr
        assert "earn 25.99 EUR at the cafe: 201" in tour.stdout
        assert "redeem 25 points at the fashion store: 201" in tour.stdout
        demo = json.loads((home / "demo.json").read_text())
        jwks = httpx.get(f"{url}/v1/keys").json()
        statement = json.loads(tour.stdout.split("statement for")[1].split("\n")[1])
        assert verify_file(
            json.dumps(
                statement, separators=(",", ":"), sort_keys=True, ensure_ascii=False
            ).encode(),
            jwks,
        ).startswith("OK json")
        assert statement["statement"]["business_date"] == demo["settled_date"]
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "stopping" in output
    assert [pid for pid in started if alive(pid)] == []
    assert not (home / "redis.sock").exists()
