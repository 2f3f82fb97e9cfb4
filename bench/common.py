"""Shared pieces of the API benchmarks: scratch databases, server processes, CPU accounting,
latency summaries, and the load generator (``python -m bench.common loadgen CONFIG.json``).

The load generator is one OS process per ``client_processes``; each runs ``clients`` keep-alive
HTTP/1.1 connections on one asyncio loop with a minimal hand-written HTTP client (an
``asyncio`` stream per connection: one request, one response, Content-Length or chunked). It
costs far less CPU per request than httpx or aiohttp, which matters on a 2-core box where the
client shares the CPUs with the server, PostgreSQL and Redis.

Every request is signed like a real partner's: RFC 9421 Ed25519 over ``@method @authority
@path @query`` (+ ``content-digest content-type idempotency-key`` on POST), RFC 9530
Content-Digest, a fresh Idempotency-Key per POST, a nonce on GETs. The signer is
``partners.signing.sign_request`` (ours; ~70 us per request) by default; ``signer="independent"``
uses the ``http_message_signatures`` library (~310 us). Each run also sends a preflight signed
with the independent library, so the server is shown to accept a third party's signatures.

Scenarios: ``mix`` (the partner API: earn / redeem / hold+capture / balance / reversal) and
``bare`` (one signed POST to the ceiling app in ``bench.ceilings``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil  # CPU accounting of the other processes
from tqdm import tqdm as _tqdm

REPO = Path(__file__).resolve().parent.parent
_VENV_PY = REPO / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
DEFAULT_PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "127.0.0.1"  # everything in these benchmarks stays on the loopback interface

REQUEST_TIMEOUT_SECONDS = 30.0
MAX_REQUESTS_PER_CONNECTION = 10_000_000  # a count bound on top of the time bound
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
ERROR_SAMPLES = 5
LINGER_SECONDS = 1.5  # connections stay open this long after the measured window


# --- progress bars -----------------------------------------------------------------------------


class _NullBar:
    def update(self, n: float = 1) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def bar(total: float | None, desc: str, enabled: bool = True, unit: str = "it") -> Any:
    """A tqdm bar on stderr, or a no-op when disabled."""
    if enabled:
        return _tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            file=sys.stderr,
            leave=False,
            mininterval=0.5 if sys.stderr.isatty() else 5.0,
        )
    return _NullBar()


def log(message: str, enabled: bool = True) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


# --- scratch databases and ports --------------------------------------------------------------


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


def dsn_for(admin_dsn: str, database: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def check_local(dsn_or_url: str) -> None:
    host = urlsplit(dsn_or_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"benchmarks only talk to 127.0.0.1, not {host!r}")


async def create_database(admin_dsn: str, name: str) -> str:
    import asyncpg

    check_local(admin_dsn)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn_for(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# --- server processes -------------------------------------------------------------------------


class ServerProcess:
    """A server started by us (``argv``), its log in a file; stopped by its own pid only."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], port: int, log_path: Path):
        self.argv, self.env, self.port, self.log_path = list(argv), env, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self) -> None:
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server and its worker processes."""
        if self.proc is None:
            return []
        try:
            me = psutil.Process(self.proc.pid)
            return [me.pid, *(c.pid for c in me.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> list[int]:
        return self.pids()[1:]

    async def wait_ready(
        self, path: str = "/health", limit: float = STARTUP_TIMEOUT_SECONDS
    ) -> None:
        deadline = time.monotonic() + limit
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            conn = Connection(HOST, self.port)
            try:
                status, body = await asyncio.wait_for(conn.get(path), 5)
                if status == 200:
                    # every worker must be up: a few more probes on fresh connections
                    await asyncio.sleep(0.5)
                    return
                last = (status, body[:200])
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                last = exc
            finally:
                conn.close()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"server not ready after {limit} s (last: {last!r}): {self.tail()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        pids = self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn: graceful shutdown of its workers
            try:
                self.proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                for pid in reversed(pids):  # only the processes we started
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log_file is not None:
            self._log_file.close()
        return self.proc.returncode

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""


# --- CPU accounting ---------------------------------------------------------------------------


def _cpu_seconds(pids: Sequence[int]) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds per pid."""
    out: dict[int, tuple[float, float]] = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = (t.user, t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def named_pids(
    name: str, cmdline_contains: str | None = None, cmdline_lacks: str | None = None
) -> list[int]:
    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] != name:
                continue
            cmdline = " ".join(p.info["cmdline"] or [])
            if cmdline_contains and cmdline_contains not in cmdline:
                continue
            if cmdline_lacks and cmdline_lacks in cmdline:
                continue
            pids.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pids


class CpuMeter:
    """CPU seconds per process group between two snapshots, in cores (CPU s / wall s).

    ``groups`` maps a name to a function listing that group's pids *now* (processes that start
    between the snapshots count from zero; ones that exit between them are lost). ``other`` is
    the machine's busy time minus the groups: anything else running on the box (noise).
    """

    def __init__(self, groups: dict[str, Callable[[], Sequence[int]]]) -> None:
        self.groups = groups

    def snapshot(self, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """``previous``: the opening snapshot; its processes stay in their groups."""
        snap: dict[str, Any] = {"wall": time.monotonic()}
        claimed: set[int] = set()  # groups are disjoint: a pid counts for the first that lists it
        for name, pids in self.groups.items():
            listed = list(pids()) + list(previous[name] if previous else [])
            mine = [pid for pid in dict.fromkeys(listed) if pid not in claimed]
            claimed.update(mine)
            snap[name] = _cpu_seconds(mine)
            snap[f"_n_{name}"] = len(snap[name])
        t = psutil.cpu_times()
        snap["_machine"] = t._asdict()
        snap["_all"] = {}
        for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            with contextlib.suppress(psutil.Error, TypeError):
                ct = proc.info["cpu_times"]
                label = " ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])[:70]
                snap["_all"][proc.pid] = (ct.user + ct.system, label)
        return snap

    def cores(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """Cores per group; ``<group>_sys``: the part of it spent in the kernel."""
        wall = after["wall"] - before["wall"]
        if wall <= 0:
            return {}
        out: dict[str, Any] = {}
        for name in self.groups:
            user = system = 0.0
            for pid, (u, k) in after[name].items():
                u0, k0 = before[name].get(pid, (0.0, 0.0))
                user, system = user + u - u0, system + k - k0
            out[name] = round((user + system) / wall, 3)
            out[f"{name}_sys"] = round(system / wall, 3)
        m = {k: (after["_machine"][k] - v) / wall for k, v in before["_machine"].items()}
        not_busy = ("idle", "iowait", "steal", "guest", "guest_nice")
        busy = sum(v for k, v in m.items() if k not in not_busy)
        out["machine_busy"] = round(busy, 3)
        # interrupt time is the machine's, not any process's: on loopback, most of it is TCP
        # delivery (softirq) that the sending process triggers in send()
        irq = m.get("softirq", 0.0) + m.get("irq", 0.0)
        out["machine_irq"] = round(irq, 3)
        out["machine_steal"] = round(m.get("steal", 0.0), 3)
        out["machine_iowait"] = round(m.get("iowait", 0.0), 3)
        out["other"] = round(max(busy - irq - sum(out[n] for n in self.groups), 0.0), 3)
        out["cores"] = psutil.cpu_count() or 0
        # processes measured per group, at the start and at the end of the window
        out["processes"] = {n: [before[f"_n_{n}"], after[f"_n_{n}"]] for n in self.groups}
        return out

    def top_others(
        self, before: dict[str, Any], after: dict[str, Any], n: int = 3
    ) -> list[tuple[float, str]]:
        """The busiest processes outside the groups during the window (who the noise was)."""
        wall = after["wall"] - before["wall"]
        if wall <= 0 or "_all" not in after:
            return []
        ours = {pid for name in self.groups for pid in after[name]} | {
            pid for name in self.groups for pid in before[name]
        }
        used = [
            (round((cpu - before["_all"].get(pid, (0.0, ""))[0]) / wall, 3), label)
            for pid, (cpu, label) in after["_all"].items()
            if pid not in ours
        ]
        return [u for u in sorted(used, reverse=True)[:n] if u[0] >= 0.01]


NOISE_CORES = 0.10  # a phase where other processes used more than this is flagged noisy


async def wait_quiet(
    limit_seconds: float, busy_cores: float = 0.15, progress: bool = True
) -> dict[str, float]:
    """Wait (at most ``limit_seconds``) until the machine's busy CPU over 2 s is below
    ``busy_cores``: on a shared box, someone else's benchmark would be measured as ours."""
    started = time.monotonic()
    busy = math.nan
    if limit_seconds <= 0:
        return {"waited_s": 0.0, "busy_cores": busy}
    for _ in range(100_000):
        before = psutil.cpu_times()
        await asyncio.sleep(2)
        after = psutil.cpu_times()
        busy = (
            sum(
                getattr(after, k) - getattr(before, k)
                for k in before._fields
                if k not in ("idle", "iowait", "steal", "guest", "guest_nice")
            )
            / 2
        )
        if busy < busy_cores or time.monotonic() - started > limit_seconds:
            break
        log(f"machine busy ({busy:.2f} cores used by others): waiting to start", progress)
    return {"waited_s": round(time.monotonic() - started, 1), "busy_cores": round(busy, 3)}


def standard_groups(
    server: ServerProcess | None, clients: Callable[[], Sequence[int]], database: str | None
) -> dict[str, Callable[[], Sequence[int]]]:
    """server, client, postgres (the backends connected to ``database``: other databases'
    backends, e.g. someone else's benchmark, count as ``other``), pg_bg (PostgreSQL's shared
    background processes: WAL writer, checkpointer, autovacuum...; an autovacuum worker on
    ``database`` counts as postgres), redis, orchestrator. The groups are disjoint."""
    groups: dict[str, Callable[[], Sequence[int]]] = {}
    if server is not None:
        groups["server"] = server.pids
    groups["client"] = clients
    if database:
        groups["postgres"] = lambda: named_pids("postgres", f" {database} ")
    groups["pg_bg"] = lambda: named_pids("postgres", cmdline_lacks="127.0.0.1(")
    groups["redis"] = lambda: named_pids("redis-server", "6379")
    groups["orchestrator"] = lambda: [os.getpid()]
    return groups


# --- latency summaries ------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    values = sorted(seconds)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p90_ms": round(percentile(values, 90) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2),
        "mean_ms": round(sum(values) / len(values) * 1000, 2),
    }


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(r, widths, strict=True))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- a minimal HTTP/1.1 keep-alive client -----------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time. Reconnects after a close."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    def build(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        head = [f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if body or method != "GET":
            head.append(f"Content-Length: {len(body)}\r\n")
        head.append("\r\n")
        return "".join(head).encode("latin-1") + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.index(b"\r\n", i + 2)
            n = int(lower[i + 17 : j])
            body = await self.reader.readexactly(n) if n else b""
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            body = await self.reader.read()
            self.close()
            return status, body
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        for _ in range(100_000):
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                break
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        return b"".join(parts)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return await self.send(self.build("GET", path, headers or {}))


# --- signing ----------------------------------------------------------------------------------


class Signer:
    """Builds signed requests for one partner key. ``independent``: http_message_signatures."""

    def __init__(self, keyid: str, private_key: Any, authority: str, kind: str = "ours") -> None:
        from partners import signing

        self.signing = signing
        self.keyid, self.key, self.authority, self.kind = keyid, private_key, authority, kind
        if kind == "independent":
            from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

            resolver = MappingKeyResolver(private_keys={keyid: private_key}, public_keys={})
            self._hms = HTTPMessageSigner(
                signature_algorithm=algorithms.ED25519, key_resolver=resolver
            )
        elif kind != "ours":
            raise ValueError(f"unknown signer {kind!r}")

    def post_headers(self, path: str, body: bytes, idempotency_key: str) -> dict[str, str]:
        if self.kind == "independent":
            return self._independent("POST", path, body, idempotency_key)
        headers = {
            "content-type": "application/json",
            "content-digest": self.signing.content_digest(body),
            "idempotency-key": idempotency_key,
        }
        signature = self.signing.sign_request(
            self.key,
            keyid=self.keyid,
            method="POST",
            authority=self.authority,
            raw_path=path,
            raw_query="",
            headers=headers,
            created=int(time.time()),
        )
        return {
            "Content-Type": "application/json",
            "Content-Digest": headers["content-digest"],
            "Idempotency-Key": idempotency_key,
            **signature,
        }

    def get_headers(self, path: str) -> dict[str, str]:
        if self.kind == "independent":
            return self._independent("GET", path, b"", None)
        return self.signing.sign_request(
            self.key,
            keyid=self.keyid,
            method="GET",
            authority=self.authority,
            raw_path=path,
            raw_query="",
            headers={},
            created=int(time.time()),
            nonce=secrets.token_hex(12),
        )

    def _independent(
        self, method: str, path: str, body: bytes, idempotency_key: str | None
    ) -> dict[str, str]:
        import requests

        headers: dict[str, str] = {}
        if method == "POST":
            assert idempotency_key is not None  # post_headers always passes one
            headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        prepared = requests.Request(
            method, f"https://{self.authority}{path}", headers=headers, data=body or None
        ).prepare()
        base = ("@method", "@authority", "@path", "@query")
        self._hms.sign(
            prepared,
            key_id=self.keyid,
            nonce=None if method == "POST" else secrets.token_hex(12),
            covered_component_ids=(*base, "content-type", "idempotency-key")
            if method == "POST"
            else base,
            body=body if method == "POST" else None,  # the library adds content-digest itself
        )
        signed: dict[str, str] = {}
        for k, v in prepared.headers.items():
            if k.lower() not in ("content-length", "host"):
                assert isinstance(v, str)  # requests types header values str | bytes; these are str
                signed[k] = v
        return signed


def private_key_from_hex(text: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))


def private_key_hex(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return str(raw.hex())


# --- the load generator (runs in its own process) ---------------------------------------------


class Stats:
    """What one load-generator process saw; only completions inside the window are measured."""

    def __init__(self, window_start_perf: float, window_end_perf: float) -> None:
        self.t0, self.t1 = window_start_perf, window_end_perf
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.status: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        self.all_ok: collections.Counter[str] = collections.Counter()  # incl. warm-up
        self.all_sent: collections.Counter[str] = collections.Counter()
        self.insufficient = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, list[str]] = collections.defaultdict(list)
        self.in_window = 0

    def record(self, op: str, status: int, started: float, ended: float, body: bytes) -> None:
        self.all_sent[op] += 1
        ok = 200 <= status < 300
        if ok:
            self.all_ok[op] += 1
        if not self.t0 <= ended <= self.t1:
            return
        self.in_window += 1
        self.latency[op].append(ended - started)
        self.status[op][status] += 1
        if ok:
            return
        if status == 422 and b"insufficient-points" in body:
            self.insufficient += 1
            return
        label = f"{op}:{status}"
        self.errors[label] += 1
        if len(self.samples[label]) < ERROR_SAMPLES:
            self.samples[label].append(body[:300].decode(errors="replace"))

    def result(self) -> dict[str, Any]:
        return {
            "latency": {op: v for op, v in self.latency.items()},
            "status": {op: {str(k): n for k, n in c.items()} for op, c in self.status.items()},
            "all_ok": dict(self.all_ok),
            "all_sent": dict(self.all_sent),
            "insufficient": self.insufficient,
            "errors": dict(self.errors),
            "error_samples": dict(self.samples),
        }


class Scenario:
    """One ``step`` is one operation (one or two requests) on one connection."""

    def __init__(self, config: dict[str, Any], rng: random.Random) -> None:
        self.config, self.rng = config, rng
        self.tag = secrets.token_hex(4)
        self.counter = 0

    def next_key(self) -> str:
        self.counter += 1
        return f"lg-{self.tag}-{self.counter:09d}"

    async def request(
        self,
        conn: Connection,
        stats: Stats,
        op: str,
        raw: bytes,
    ) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, body = await conn.send(raw)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
            conn.close()
            status, body = 0, f"{type(e).__name__}: {e}".encode()
        stats.record(op, status, started, time.perf_counter(), body)
        if status == 0:
            await asyncio.sleep(0.05)  # do not spin on a dead server
        return status, body

    async def connect(self) -> Any:
        """This virtual client's connection (HTTP: opened lazily by the first request)."""
        return Connection(self.config["host"], self.config["port"])

    async def disconnect(self, conn: Any) -> None:
        conn.close()

    async def step(self, conn: Any, stats: Stats, state: dict[str, Any]) -> None:
        raise NotImplementedError


class MixScenario(Scenario):
    """The partner API: 60 % earn, 25 % redeem (a third of them hold + capture), 10 % balance
    reads, 5 % reversals of this connection's own earlier earns (an earn when it has none)."""

    def __init__(self, config: dict[str, Any], rng: random.Random) -> None:
        super().__init__(config, rng)
        authority = config["authority"]
        self.partners = [
            Signer(p["keyid"], private_key_from_hex(p["private_hex"]), authority, config["signer"])
            for p in config["partners"]
        ]
        self.partner_ids = [p["partner_id"] for p in config["partners"]]
        self.member_prefix, self.members = config["member_prefix"], config["members"]
        self.w_earn, self.w_redeem, self.w_balance = (
            config.get("mix", {}).get(k, d)
            for k, d in (("earn", 0.60), ("redeem", 0.25), ("balance", 0.10))
        )
        self.hold_share = config.get("mix", {}).get("hold_share", 1 / 3)
        self.points: int | None = config.get("mix", {}).get("points")  # fixed redemption size

    def member(self) -> str:
        return f"{self.member_prefix}{self.rng.randrange(self.members):012d}"

    def post(self, conn: Connection, p: int, path: str, payload: dict[str, Any]) -> bytes:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return conn.build(
            "POST", path, self.partners[p].post_headers(path, body, self.next_key()), body
        )

    async def step(self, conn: Connection, stats: Stats, state: dict[str, Any]) -> None:
        rng = self.rng
        p = rng.randrange(len(self.partners))
        r = rng.random()
        earns: collections.deque[tuple[int, str]] = state.setdefault(
            "earns", collections.deque(maxlen=1000)
        )
        if r >= self.w_earn + self.w_redeem + self.w_balance and earns:
            p, txn = earns.popleft()
            raw = self.post(conn, p, f"/v1/transactions/{txn}/reversals", {"reason": "returned"})
            await self.request(conn, stats, "reversal", raw)
        elif r < self.w_earn or r >= self.w_earn + self.w_redeem + self.w_balance:
            payload: dict[str, Any] = {
                "member_id": self.member(),
                "order_ref": f"ord-{self.tag}-{self.counter}",
                "amount": {"amount_minor": rng.randrange(100, 20_000), "currency": "EUR"},
            }
            status, body = await self.request(
                conn, stats, "earn", self.post(conn, p, "/v1/earn", payload)
            )
            if status == 201:
                earns.append((p, json.loads(body)["transaction_id"]))
        elif r < self.w_earn + self.w_redeem:
            hold = rng.random() < self.hold_share
            payload = {
                "member_id": self.member(),
                "order_ref": f"ord-{self.tag}-{self.counter}",
                "points": self.points or rng.randrange(10, 200),
                "mode": "hold" if hold else "capture",
            }
            raw = self.post(conn, p, "/v1/redemptions", payload)
            status, body = await self.request(conn, stats, "hold" if hold else "redeem", raw)
            if hold and status == 201:
                rid = json.loads(body)["redemption_id"]
                raw = self.post(conn, p, f"/v1/redemptions/{rid}/capture", {})
                await self.request(conn, stats, "capture", raw)
        else:
            path = f"/v1/members/{self.member()}"
            raw = conn.build("GET", path, self.partners[p].get_headers(path))
            await self.request(conn, stats, "balance", raw)


class BareScenario(Scenario):
    """One signed POST (an earn-shaped body) to the ceiling app's ``/bare`` endpoint."""

    def __init__(self, config: dict[str, Any], rng: random.Random) -> None:
        super().__init__(config, rng)
        self.signer = Signer(
            config["keyid"],
            private_key_from_hex(config["private_hex"]),
            config["authority"],
            config["signer"],
        )

    async def step(self, conn: Connection, stats: Stats, state: dict[str, Any]) -> None:
        payload = {
            "member_id": f"mem_{self.rng.randrange(100_000):020d}",
            "order_ref": f"ord-{self.tag}-{self.counter}",
            "amount": {"amount_minor": self.rng.randrange(100, 20_000), "currency": "EUR"},
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = self.signer.post_headers("/bare", body, self.next_key())
        await self.request(conn, stats, "bare", conn.build("POST", "/bare", headers, body))


SCENARIOS: dict[str, type[Scenario]] = {"mix": MixScenario, "bare": BareScenario}


def scenario_class(name: str) -> type[Scenario]:
    """A registered name, or ``module:Class`` (e.g. ``bench.ceilings:RawLedgerScenario``)."""
    if ":" in name:
        import importlib

        module, _, cls = name.partition(":")
        found: type[Scenario] = getattr(importlib.import_module(module), cls)
        return found
    return SCENARIOS[name]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def loadgen_main(config: dict[str, Any]) -> dict[str, Any]:
    """Run ``config["clients"]`` connections from now until ``measure_start + duration``
    (epoch seconds); measure completions in [measure_start, measure_start + duration]."""
    offset = time.time() - time.perf_counter()
    t0 = config["measure_start"] - offset
    t1 = t0 + config["duration"]
    stats = Stats(t0, t1)
    seed = config.get("seed")
    cls = scenario_class(config["scenario"])
    scenarios = [
        cls(config, random.Random(None if seed is None else seed + i))
        for i in range(config["clients"])
    ]
    cpu: dict[str, float] = {}

    async def client(i: int) -> None:
        conn = await scenarios[i].connect()
        state: dict[str, Any] = {}
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if time.perf_counter() >= t1:
                    break
                await scenarios[i].step(conn, stats, state)
            # Keep the connection (and e.g. its PostgreSQL backend) alive past the window, so
            # the orchestrator's closing CPU snapshot still finds every process it measures.
            await asyncio.sleep(max(t1 + LINGER_SECONDS - time.perf_counter(), 0))
        finally:
            await scenarios[i].disconnect(conn)

    async def meter() -> None:
        await asyncio.sleep(max(t0 - time.perf_counter(), 0))
        cpu["start"] = time.process_time()
        _emit({"event": "measuring"})
        while time.perf_counter() < t1:
            await asyncio.sleep(min(0.5, max(t1 - time.perf_counter(), 0.001)))
            _emit({"progress": stats.in_window})
        cpu["end"] = time.process_time()

    meter_task = asyncio.create_task(meter())
    tasks = [asyncio.create_task(client(i)) for i in range(config["clients"])]
    grace = REQUEST_TIMEOUT_SECONDS + 5
    _, pending = await asyncio.wait(tasks, timeout=t1 - time.perf_counter() + grace)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(meter_task, 5)
    result = stats.result()
    result["client_cpu_seconds"] = cpu.get("end", time.process_time()) - cpu.get("start", 0.0)
    result["duration"] = config["duration"]
    result["unfinished_connections"] = len(pending)
    return result


async def run_loadgen(
    config: dict[str, Any],
    processes: int,
    *,
    on_measure_start: Callable[[], None] | None = None,
    progress_bar: Any = None,
    extra_during: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], list[int]]:
    """Start ``processes`` load-generator processes sharing ``config["clients"]`` connections;
    return the merged result and the pids they had. ``on_measure_start`` is called when the
    measuring window opens (for CPU snapshots)."""
    total = config["clients"]
    shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_lg_"))
    procs = []
    try:
        for i, n in enumerate(shares):
            cfg = dict(
                config,
                clients=n,
                seed=None if config.get("seed") is None else config["seed"] + 1000 * i,
            )
            path = tmp / f"config{i}.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # holds private keys
            with os.fdopen(fd, "w") as f:
                json.dump(cfg, f)
            err = open(tmp / f"stderr{i}.txt", "wb")  # noqa: SIM115, ASYNC230 (tiny, local)
            proc = await asyncio.create_subprocess_exec(
                PYTHON,
                "-m",
                "bench.common",
                "loadgen",
                str(path),
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=256 * 1024 * 1024,
            )
            err.close()
            procs.append(proc)
        pids = [p.pid for p in procs]
        progress = [0] * len(procs)
        measuring = [False] * len(procs)
        results: list[dict[str, Any] | None] = [None] * len(procs)

        async def read(i: int, proc: asyncio.subprocess.Process) -> None:
            assert proc.stdout is not None
            for _ in range(10_000_000):
                line = await proc.stdout.readline()
                if not line:
                    break
                msg = json.loads(line)
                if msg.get("event") == "measuring":
                    measuring[i] = True
                    if all(measuring) and on_measure_start is not None:
                        on_measure_start()
                elif "progress" in msg:
                    delta = msg["progress"] - progress[i]
                    progress[i] = msg["progress"]
                    if progress_bar is not None:
                        progress_bar.update(delta)
                elif "result" in msg:
                    results[i] = msg["result"]
            await proc.wait()

        timeout = config["measure_start"] - time.time() + config["duration"] + 90
        await asyncio.wait_for(asyncio.gather(*(read(i, p) for i, p in enumerate(procs))), timeout)
        for i, r in enumerate(results):
            if r is None:
                err_text = (tmp / f"stderr{i}.txt").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"load generator {i} failed: {err_text}")
        return merge_results([r for r in results if r is not None]), pids
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        import shutil

        await asyncio.to_thread(shutil.rmtree, tmp, True)


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "latency": collections.defaultdict(list),
        "status": collections.defaultdict(collections.Counter),
        "all_ok": collections.Counter(),
        "all_sent": collections.Counter(),
        "insufficient": 0,
        "errors": collections.Counter(),
        "error_samples": collections.defaultdict(list),
        "client_cpu_seconds": 0.0,
        "unfinished_connections": 0,
        "duration": results[0]["duration"],
    }
    for r in results:
        for op, v in r["latency"].items():
            merged["latency"][op] += v
        for op, c in r["status"].items():
            merged["status"][op].update(c)
        merged["all_ok"].update(r["all_ok"])
        merged["all_sent"].update(r["all_sent"])
        merged["insufficient"] += r["insufficient"]
        merged["errors"].update(r["errors"])
        for k, v in r["error_samples"].items():
            merged["error_samples"][k] = (merged["error_samples"][k] + v)[:ERROR_SAMPLES]
        merged["client_cpu_seconds"] += r["client_cpu_seconds"]
        merged["unfinished_connections"] += r["unfinished_connections"]
    return merged


def summarize_load(merged: dict[str, Any], clients: int) -> dict[str, Any]:
    """Requests/s, latency percentiles (all requests and per operation), status counts."""
    duration = merged["duration"]
    all_lat = [x for v in merged["latency"].values() for x in v]
    n = len(all_lat)
    ok = sum(n for c in merged["status"].values() for s, n in c.items() if s.startswith("2"))
    by_op = {
        op: {
            "count": len(v),
            "per_s": round(len(v) / duration, 1),
            **{k: x for k, x in latency_summary(v).items() if k != "n"},
        }
        for op, v in sorted(merged["latency"].items())
    }
    return {
        "clients": clients,
        "duration_s": duration,
        "requests": n,
        "requests_per_s": round(n / duration, 1),
        "ok_per_s": round(ok / duration, 1),
        "latency": latency_summary(all_lat),
        "by_op": by_op,
        "status": {op: dict(sorted(c.items())) for op, c in sorted(merged["status"].items())},
        "insufficient_points": merged["insufficient"],
        "errors": sum(merged["errors"].values()),
        "errors_by_kind": dict(merged["errors"]),
        "error_samples": dict(merged["error_samples"]),
        "client_cpu_cores": round(merged["client_cpu_seconds"] / duration, 3),
        "client_cpu_us_per_request": round(merged["client_cpu_seconds"] / n * 1e6, 1)
        if n
        else None,
        "unfinished_connections": merged["unfinished_connections"],
    }


async def drive(
    *,
    scenario_config: dict[str, Any],
    clients: int,
    duration_seconds: float,
    warmup_seconds: float,
    processes: int,
    server: ServerProcess | None,
    label: str,
    progress: bool,
    database: str | None = None,
    during: Callable[[], Any] | None = None,
    quiet_seconds: float = 0.0,
) -> dict[str, Any]:
    """One load phase against ``server``: CPU of every process group over the window, too.
    ``database``: the name of the database the server (or client) uses, for CPU accounting."""
    quiet = await wait_quiet(quiet_seconds, progress=progress) if quiet_seconds else None
    client_pids: list[int] = []
    meter = CpuMeter(standard_groups(server, lambda: client_pids, database))
    snaps: dict[str, Any] = {}
    start = time.time() + warmup_seconds + 0.5 * processes  # process start-up + warm-up
    config = dict(
        scenario_config,
        host=HOST,
        clients=clients,
        duration=duration_seconds,
        measure_start=start,
    )
    pbar = bar(None, f"{label} c={clients}", progress, unit="req")

    def measuring() -> None:
        snaps["before"] = meter.snapshot()

    during_task = None
    try:
        task = asyncio.create_task(
            run_loadgen(config, processes, on_measure_start=measuring, progress_bar=pbar)
        )
        # pids are only known once the processes exist: poll for our own children
        for _ in range(200):
            await asyncio.sleep(0.05)
            me = psutil.Process()
            client_pids[:] = [
                c.pid for c in me.children() if "bench.common" in " ".join(_cmdline(c))
            ]
            if len(client_pids) >= processes:
                break
        if during is not None:
            await asyncio.sleep(max(start - time.time(), 0) + 1)
            during_task = asyncio.create_task(during())
        await asyncio.sleep(max(start + duration_seconds - time.time(), 0))
        snaps["after"] = meter.snapshot(snaps.get("before"))
        merged, _ = await task
    finally:
        pbar.close()
    summary = summarize_load(merged, clients)
    summary["client_processes"] = processes
    if "before" in snaps:
        cores = meter.cores(snaps["before"], snaps["after"])
        summary["cpu_cores"] = cores
        summary["noisy"] = cores.get("other", 0.0) > NOISE_CORES
        if summary["noisy"]:
            summary["noise_from"] = meter.top_others(snaps["before"], snaps["after"])
        rate = summary["requests_per_s"]
        summary["cpu_us_per_request"] = {
            k: round(v / rate * 1e6, 1)
            for k, v in cores.items()
            if rate and isinstance(v, float) and not k.endswith("_sys")
        }
    summary["all_ok"] = dict(merged["all_ok"])
    summary["all_sent"] = dict(merged["all_sent"])
    if during_task is not None:
        summary["during"] = await during_task
    if quiet is not None:
        summary["quiet_wait"] = quiet
    return summary


def _cmdline(p: Any) -> list[str]:
    try:
        return list(p.cmdline())
    except Exception:
        return []


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    import shutil

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- py-spy -----------------------------------------------------------------------------------


def py_spy_path() -> str | None:
    import shutil

    candidate = REPO / ".venv" / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


async def py_spy_record(
    pid: int, seconds: int, out_raw: Path, flags: Sequence[str] = ("--gil",)
) -> dict[str, Any]:
    """Sample ``pid`` and its subprocesses (the uvicorn workers) for ``seconds``; collapsed
    stacks to ``out_raw``; return a summary of where the samples are."""
    exe = py_spy_path()
    if exe is None:
        return {"error": "py-spy not installed (.venv/bin/pip install py-spy)"}
    # Blocking sampling (py-spy pauses the process for each sample): --nonblocking gave
    # inconsistent stacks here (2/3 of samples "in" transport.write while the workers spent
    # 97 % of their CPU in user space). --idle keeps every sample; idle ones are classified
    # by their leaf frame in summarize_collapsed.
    proc = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(seconds),
        "--rate",
        "100",
        "--format",
        "raw",
        "--output",
        str(out_raw),
        "--threads",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    text = await asyncio.to_thread(lambda: out_raw.read_text() if out_raw.exists() else None)
    if proc.returncode != 0 or text is None:
        return {"error": f"py-spy exited {proc.returncode}: {out.decode(errors='replace')[-500:]}"}
    return summarize_collapsed(text)


# Leaf functions where a thread waits instead of computing (event loop poll, locks, pipes).
IDLE_LEAVES = frozenset(
    {
        "select",
        "poll",
        "wait",
        "_recv",
        "_recv_bytes",
        "_wait_for_tstate_lock",
        "sleep",
        "join",
        "_poll",
        "accept",
        "readinto",
        "main",
    }
)


def _frame(frame: str) -> tuple[str, str]:
    """``fn (path/to/file.py:12)`` -> (``fn``, ``path/to/file.py``); py-spy shortens paths to
    be relative to sys.path (``asyncio/events.py``, ``litestar/app.py``, ``partners/api.py``)."""
    name, _, where = frame.partition(" (")
    return name, where.rstrip(")").rsplit(":", 1)[0]


def _package(path: str) -> str:
    if path.startswith("partners/signing"):
        return "partners.signing (RFC 9421)"
    top = path.split("/", 1)[0]
    return top[:-3] if top.endswith(".py") else top


def summarize_collapsed(text: str, top: int = 25) -> dict[str, Any]:
    """py-spy raw output (``--threads``-style lines: ``process ...;thread (tid): name;frame;...
    count``, root first). Samples are split by thread role -- the uvicorn workers' event loop
    thread (``loop``), the logging QueueListener thread (``log_thread``), everything else
    (supervisor, pong and resource-tracker threads: ``other``) -- and the loop thread's into
    idle (waiting in ``select``) and busy. Self time by package and by function, and inclusive
    time by function, are % of the busy loop-thread samples (plus the log thread's busy
    samples, listed apart)."""
    roles: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[str] = collections.Counter()
    self_pkg: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    log_fn: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = next((x for x in parts if x.startswith("thread ")), "")
        frames = [x for x in parts if not x.startswith(("process ", "thread "))]
        if not frames:
            continue
        names = [_frame(f)[0] for f in frames]
        leaf_name, leaf_path = _frame(frames[-1])
        idle = leaf_name.rpartition(".")[2] in IDLE_LEAVES
        if "Server.run" in names and (thread.endswith("MainThread") or not thread):
            role = "loop"
        elif "QueueListener._monitor" in names:
            role = "log_thread"
        else:
            role = "other"
        roles[f"{role}_{'idle' if idle else 'busy'}"] += count
        if idle:
            continue
        if role == "log_thread":
            log_fn[f"{leaf_name} ({leaf_path})"] += count
            continue
        if role != "loop":
            continue
        self_fn[f"{leaf_name} ({leaf_path})"] += count
        self_pkg[_package(leaf_path)] += count
        for name, path in {_frame(f) for f in frames}:
            incl_fn[f"{name} ({path})"] += count
    busy = roles["loop_busy"]

    def pct(c: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / busy, 1)) for k, v in c.most_common(n)] if busy else []

    loop_total = roles["loop_busy"] + roles["loop_idle"]
    return {
        "samples_by_role": dict(roles),
        "loop_busy_share": round(busy / loop_total, 3) if loop_total else None,
        "self_by_package_pct": pct(self_pkg, 20),
        "self_by_function_pct": pct(self_fn, top),
        "inclusive_by_function_pct": pct(incl_fn, top * 2),
        "log_thread_busy_pct_of_loop_busy": pct(log_fn, 5),
    }


# --- entry point for the load-generator processes ---------------------------------------------


def _loadgen_entry(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    result = asyncio.run(loadgen_main(config))
    _emit({"result": result})
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "loadgen":
        sys.exit(_loadgen_entry(sys.argv[2]))
    print("usage: python -m bench.common loadgen CONFIG.json (used by bench.api_load)")
    sys.exit(2)
