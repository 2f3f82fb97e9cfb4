"""The ``coalition`` command. Each package registers its own command group; this module only
parses, sets up settings and the database, runs the command and maps errors to exit codes.

Exit codes: 0 ok, 1 refused or failed (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from coalition import db, extensions
from coalition.errors import CoalitionError
from coalition.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int]]

# Packages further up the layer stack add their commands here without coalition importing them.
COMMAND_MODULES = ("coalition.commands", "partners.commands", "settlement.commands")


def emit(value: Any) -> None:
    """Print a result as indented JSON (stable keys), for people and scripts alike."""
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coalition", description="Coalition loyalty clearinghouse: operator commands."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in extensions.installed(COMMAND_MODULES):
        module.register(commands)
    return parser


async def _run(handler: Handler, args: argparse.Namespace, settings: Settings) -> int:
    needs_db = getattr(args, "needs_db", True)
    if needs_db:
        db.configure(settings.database_url)
        await db.start(settings.db_pool_max_size)
    try:
        return await handler(args, settings)
    finally:
        if needs_db:
            await db.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except (msgspec.ValidationError, ValueError) as bad:
        print(f"error: invalid COALITION_* setting: {bad}", file=sys.stderr)
        return 1
    handler: Handler = args.handler
    try:
        if getattr(args, "blocking", False):  # runs its own event loop (a server, a worker)
            code: int = args.handler(args, settings)
            return code
        return asyncio.run(_run(handler, args, settings))
    except CoalitionError as refused:
        print(f"error: {refused.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
