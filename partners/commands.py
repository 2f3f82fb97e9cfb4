"""``coalition key ... | sign | serve``: partner keys, signing a request by hand, the API server."""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coalition.cli import emit
from coalition.clock import now_us, system_clock
from coalition.ledger import to_us
from coalition.settings import Settings
from partners import keys, signing


def register(commands: Any) -> None:
    key = commands.add_parser("key", help="partner signing keys")
    sub = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="register a partner's Ed25519 public key (JWK or SPKI PEM)")
    add.add_argument("partner_id")
    add.add_argument("--public-key", required=True, type=Path, help="file with the public key")
    add.add_argument("--keyid", help="the key id partners send (default: generated)")
    add.add_argument("--not-before", help="RFC 3339 time the key becomes valid (default: now)")
    add.add_argument("--not-after", help="RFC 3339 time the key stops being valid")
    add.set_defaults(handler=cmd_key_add)
    listing = sub.add_parser("list", help="a partner's keys and their state")
    listing.add_argument("partner_id")
    listing.set_defaults(handler=cmd_key_list)
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("keyid")
    revoke.set_defaults(handler=cmd_key_revoke)
    generate = sub.add_parser("generate", help="make a key pair for a partner; print its JWK")
    generate.add_argument("--out", required=True, type=Path, help="directory for the key files")
    generate.add_argument("--keyid")
    generate.set_defaults(handler=cmd_key_generate, needs_db=False)

    sign = commands.add_parser("sign", help="print RFC 9421 headers for a request (for curl)")
    sign.add_argument("method", choices=["GET", "POST"])
    sign.add_argument("url", help="e.g. http://127.0.0.1:8000/v1/members/mem_1")
    sign.add_argument("--key", required=True, type=Path, help="the partner's private key PEM")
    sign.add_argument("--keyid", required=True)
    sign.add_argument("--data", default="", help="the exact JSON body of a POST")
    sign.add_argument("--idempotency-key", help="for a POST (default: a fresh one)")
    sign.add_argument("--curl", action="store_true", help="print a complete curl command")
    sign.add_argument("--accept", help="an Accept header to send (not signed), e.g. text/csv")
    sign.set_defaults(handler=cmd_sign, needs_db=False)

    serve = commands.add_parser("serve", help="run the partner API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=cmd_serve, blocking=True)


def _time_us(text: str | None) -> int | None:
    from datetime import datetime

    if text is None:
        return None
    return to_us(datetime.fromisoformat(text.replace("Z", "+00:00")))


async def cmd_key_add(args: argparse.Namespace, settings: Settings) -> int:
    public = keys.load_public_key(args.public_key.read_text())
    emit(
        await keys.add_key(
            args.partner_id,
            public,
            keyid=args.keyid,
            now_us=now_us(system_clock),
            not_before_us=_time_us(args.not_before),
            not_after_us=_time_us(args.not_after),
        )
    )
    return 0


async def cmd_key_list(args: argparse.Namespace, settings: Settings) -> int:
    emit(await keys.list_keys(args.partner_id, now_us(system_clock)))
    return 0


async def cmd_key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    emit(await keys.revoke_key(args.keyid, now_us(system_clock)))
    return 0


async def cmd_key_generate(args: argparse.Namespace, settings: Settings) -> int:
    jwk = keys.generate_key_pair(args.out, args.keyid)
    print(
        f"wrote {args.out}/{jwk['kid']}.private.pem (keep it secret) and the public key:",
        file=sys.stderr,
    )
    emit(jwk)
    return 0


def signed_headers(
    method: str,
    url: str,
    private_key_path: Path,
    keyid: str,
    body: bytes,
    idempotency_key: str | None,
) -> dict[str, str]:
    parts = urlsplit(url)
    headers: dict[str, str] = {}
    if method == "POST":
        headers = {
            "Content-Type": "application/json",
            "Content-Digest": signing.content_digest(body),
            "Idempotency-Key": idempotency_key or f"cli-{secrets.token_hex(12)}",
        }
    signature = signing.sign_request(
        keys.load_private_key(private_key_path),
        keyid=keyid,
        method=method,
        authority=parts.netloc,
        raw_path=parts.path or "/",
        raw_query=parts.query,
        headers={k.lower(): v for k, v in headers.items()},
        created=int(time.time()),
        nonce=secrets.token_hex(12),
    )
    return {**headers, **signature}


async def cmd_sign(args: argparse.Namespace, settings: Settings) -> int:
    body = args.data.encode()
    headers = signed_headers(
        args.method, args.url, args.key, args.keyid, body, args.idempotency_key
    )
    if args.accept:
        headers["Accept"] = args.accept
    if not args.curl:
        for name, value in headers.items():
            print(f"{name}: {value}")
        return 0
    command = ["curl", "-sS", "-X", args.method, args.url]
    if args.accept:
        command += ["-H", f"Accept: {args.accept}"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if body:
        command += ["--data-binary", args.data]
    print(shlex.join(command))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    # Each worker process builds its own app from the environment (partners.server:app).
    # uvloop matters beyond speed: with several workers uvicorn binds the socket itself and the
    # asyncio loop never sets TCP_NODELAY on it, so each keep-alive response waited ~40 ms for
    # the client's delayed ACK; uvloop sets TCP_NODELAY on every connection.
    uvicorn.run(
        "partners.server:app",
        factory=True,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )
    return 0
