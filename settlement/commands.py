"""``coalition worker | settle | statement | statement-key``: settlement's operator commands."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from coalition.cli import emit
from coalition.errors import InvalidInput
from coalition.settings import Settings
from settlement import statement_key, store
from settlement.service import Settler, run_status
from settlement.verify import VerificationFailed, verify_file

FORMATS = ("json", "csv", "pdf")


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="run everything locally: Redis, API, worker, demo")
    up.add_argument("--home", type=Path, default=Path(".coalition"), help="data directory")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--no-demo", dest="demo", action="store_false", help="start empty")
    up.set_defaults(handler=cmd_up, blocking=True)

    worker = commands.add_parser("worker", help="run the arq worker (settlement, expiry, holds)")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument(
        "--no-cron",
        dest="cron",
        action="store_false",
        help="only run queued jobs (no nightly or sweeper schedule)",
    )
    worker.set_defaults(handler=cmd_worker, blocking=True)

    settle = commands.add_parser("settle", help="settle a business date now, or show a run")
    settle.add_argument("date", nargs="?", help="YYYY-MM-DD; 'status' DATE shows a run")
    settle.add_argument("status_date", nargs="?", help=argparse.SUPPRESS)
    settle.add_argument("--due", action="store_true", help="every closed unsettled date")
    settle.set_defaults(handler=cmd_settle)

    statement = commands.add_parser("statement", help="export or verify statements")
    sub = statement.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = sub.add_parser("export", help="write a date's signed statements to a directory")
    export.add_argument("date")
    export.add_argument("--partner", help="one partner ('*' is the operator summary)")
    export.add_argument("--format", choices=[*FORMATS, "all"], default="all")
    export.add_argument("--out", required=True, type=Path)
    export.set_defaults(handler=cmd_export)
    verify = sub.add_parser("verify", help="verify a JSON, CSV or PDF statement offline")
    verify.add_argument("file", type=Path)
    verify.add_argument("--jwks", type=Path, help="JWK set file (default: the local key's)")
    verify.set_defaults(handler=cmd_verify, needs_db=False)

    key = commands.add_parser("statement-key", help="the clearinghouse's statement signing key")
    key_sub = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = key_sub.add_parser("generate", help="create the key at COALITION_STATEMENT_KEY_PATH")
    generate.set_defaults(handler=cmd_key_generate, needs_db=False)
    jwks = key_sub.add_parser("jwks", help="print the public JWK set")
    jwks.set_defaults(handler=cmd_key_jwks, needs_db=False)


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from settlement.up import run

    return run(args.home, args.port, args.demo)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from partners.server import configure_logging
    from settlement.worker import build_worker

    configure_logging()
    build_worker(settings, burst=args.burst, with_cron=args.cron).run()
    return 0


async def cmd_settle(args: argparse.Namespace, settings: Settings) -> int:
    if args.date == "status":
        outcome = await run_status(parse_date(args.status_date or ""))
        emit(outcome)
        return 0 if outcome.status != "failed" else 1
    settler = Settler(settings)
    days = await settler.due_dates() if args.due else [parse_date(args.date or "")]
    failed = False
    for day in days:
        outcome = await settler.settle(day)
        emit(outcome)
        failed |= outcome.status == "failed"
        if failed:
            break  # later dates open with this one's closing
    return 1 if failed else 0


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    day = parse_date(args.date)
    partners = [args.partner] if args.partner else await store.statement_partners(day)
    formats = FORMATS if args.format == "all" else (args.format,)
    args.out.mkdir(parents=True, exist_ok=True)
    for partner in partners:
        for fmt in formats:
            data = await store.statement_bytes(day, partner, fmt)
            name = "operator" if partner == "*" else partner
            path = args.out / f"statement-{day}-{name}.{fmt}"
            path.write_bytes(data)
            print(path)
    return 0


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    if args.jwks:
        jwks = json.loads(args.jwks.read_text())
    else:
        jwks = statement_key.jwks(Path(settings.statement_key_path))
    try:
        print(verify_file(args.file.read_bytes(), jwks))
    except VerificationFailed as failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


async def cmd_key_generate(args: argparse.Namespace, settings: Settings) -> int:
    emit(statement_key.generate(Path(settings.statement_key_path)))
    return 0


async def cmd_key_jwks(args: argparse.Namespace, settings: Settings) -> int:
    emit(statement_key.jwks(Path(settings.statement_key_path)))
    return 0
