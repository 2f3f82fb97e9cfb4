"""The system under test as real processes: ``coalition serve``, ``coalition worker``, a private
Redis and (for the restart scenarios) a private PostgreSQL cluster. Each one can be SIGKILLed,
stopped and started again, which is the point: the suite kills what production would lose."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from settlement import statement_key
from settlement.up import redis_binary

BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(ready: object, what: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Poll ``ready()`` until true: a process's readiness is only visible from outside."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


@dataclass
class Service:
    """One child process with its own log file; ``start`` is also ``restart`` after a kill."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}.{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGKILL reaches the whole group (uvicorn's workers too)
        )
        log.close()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}.*.log"))
        )


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Stack:
    """API (+ worker) over one database and a private Redis, configured by environment."""

    database_url: str
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="coalition-rel-")))
    api_workers: int = 2
    settings: dict[str, str] = field(default_factory=dict)
    redis_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        # Like the machine's Redis: nothing on disk, so a restart loses every nonce and marker.
        redis = [redis_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        redis += ["--save", "", "--appendonly", "no", "--dir", str(self.home)]
        self.redis = Service("redis", redis, {}, self.home)
        self.env = {
            "COALITION_DATABASE_URL": self.database_url,
            "COALITION_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "COALITION_PUBLIC_AUTHORITY": "api.coalition.test",
            "COALITION_STATEMENT_KEY_PATH": str(self.home / "statement.private.pem"),
            **self.settings,
        }
        statement_key.generate(Path(self.env["COALITION_STATEMENT_KEY_PATH"]))
        serve = [str(BIN / "coalition"), "serve", "--port", str(self.api_port)]
        self.api = Service("api", [*serve, "--workers", str(self.api_workers)], self.env, self.home)
        self.worker = Service("worker", [str(BIN / "coalition"), "worker"], self.env, self.home)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def redis_url(self) -> str:
        return self.env["COALITION_REDIS_URL"]

    def start_redis(self) -> None:
        self.redis.start()
        wait_until(lambda: _pings(self.redis_port), "redis")

    def start_api(self) -> None:
        self.api.start()
        wait_until(lambda: _healthy(self.url), f"API (log: {self.home})")

    def start(self) -> None:
        self.start_redis()
        self.start_api()

    def close(self) -> None:
        for service in (self.worker, self.api, self.redis):
            service.kill()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own, so restarting it under load harms nobody
    else's tests (the machine's shared server stays up)."""

    port: int = field(default_factory=free_port)
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="coalition-pg-")))

    @staticmethod
    def bindir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if found:
            return found[-1].parent
        pg_ctl = shutil.which("pg_ctl")
        if pg_ctl is None:
            raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) not found")
        return Path(pg_ctl).parent

    def _run(self, *command: str) -> None:
        # PostgreSQL refuses to run as root; run its tools as the postgres user then.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True)

    @property
    def data(self) -> Path:
        return self.home / "data"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
        initdb = str(self.bindir() / "initdb")
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def _ctl(self, action: str, mode: str = "fast") -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir() / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
            "-l", str(self.home / "server.log"), "-m", mode, action,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", mode)

    def stop(self) -> None:
        self._ctl("stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
