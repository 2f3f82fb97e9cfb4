"""The ledger's operator commands: migrate, partner, member, audit, expire."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from coalition import program, queries
from coalition.audit import audit
from coalition.cli import emit
from coalition.clock import now_us, system_clock
from coalition.jobs import expire_lots, sweep_expired_holds
from coalition.journal import Cause
from coalition.ledger import new_id
from coalition.migrate import migrate
from coalition.service import Ledger
from coalition.settings import Settings


def register(commands: Any) -> None:
    p = commands.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(handler=cmd_migrate)

    partner = commands.add_parser("partner", help="onboard and manage partners")
    sub = partner.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a partner")
    add.add_argument("partner_id", help="short id, e.g. cafe (lowercase letters, digits, -)")
    add.add_argument("--name", required=True)
    add.add_argument("--roles", default="earn,redeem", help="earn, redeem or earn,redeem")
    add.add_argument("--currency", default="EUR", help="ISO 4217 code of the partner's sales")
    add.add_argument("--earn-rate", default="1", help="points per currency unit, exact decimal")
    add.add_argument("--bonus-cap", type=int, default=0, help="largest bonus earn, in points")
    add.set_defaults(handler=cmd_partner_add)
    for action, help_text in (
        ("show", "show one partner"),
        ("suspend", "refuse every write from a partner"),
        ("resume", "lift a suspension"),
    ):
        one = sub.add_parser(action, help=help_text)
        one.add_argument("partner_id")
        one.set_defaults(handler=cmd_partner_one)
    sub.add_parser("list", help="list partners").set_defaults(handler=cmd_partner_list)

    member = commands.add_parser("member", help="enrol and look up members")
    sub = member.add_subparsers(dest="action", required=True, metavar="ACTION")
    enrol = sub.add_parser("enrol", help="enrol a member")
    enrol.add_argument("--card-number", help="card number with a valid Luhn check digit")
    enrol.set_defaults(handler=cmd_member_enrol)
    show = sub.add_parser("show", help="a member's balances and expiring points")
    show.add_argument("member_id")
    show.set_defaults(handler=cmd_member_show)

    p = commands.add_parser("audit", help="check every ledger invariant; exit 1 on a violation")
    p.set_defaults(handler=cmd_audit)

    p = commands.add_parser("expire", help="expire due lots and time out due holds now")
    p.set_defaults(handler=cmd_expire)


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    await migrate()
    return 0


async def cmd_partner_add(args: argparse.Namespace, settings: Settings) -> int:
    emit(
        await program.add_partner(
            args.partner_id,
            args.name,
            roles=args.roles,
            currency=args.currency,
            earn_rate=args.earn_rate,
            bonus_cap_points=args.bonus_cap,
        )
    )
    return 0


async def cmd_partner_one(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "show":
        emit(await program.get_partner(args.partner_id))
    else:
        status = "suspended" if args.action == "suspend" else "active"
        emit(await program.set_partner_status(args.partner_id, status))
    return 0


async def cmd_partner_list(args: argparse.Namespace, settings: Settings) -> int:
    emit(await program.list_partners())
    return 0


async def cmd_member_enrol(args: argparse.Namespace, settings: Settings) -> int:
    enrolled, _ = await program.enrol_member(Cause(job="operator"), card_number=args.card_number)
    emit(enrolled)
    return 0


async def cmd_member_show(args: argparse.Namespace, settings: Settings) -> int:
    emit(await queries.balance(args.member_id, now_us(system_clock)))
    return 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    report = await audit()
    for violation in report.violations:
        print(f"VIOLATION {violation.check}: {violation.detail}", file=sys.stderr)
    verdict = "AUDIT-OK" if report.ok else f"AUDIT-FAILED ({len(report.violations)} violations)"
    print(f"{verdict}: {report.entries} entries, {report.members} members checked")
    return 0 if report.ok else 1


async def cmd_expire(args: argparse.Namespace, settings: Settings) -> int:
    ledger = Ledger(settings)
    run_id = new_id("run")
    points = await expire_lots(ledger, run_id)
    holds = await sweep_expired_holds(ledger, run_id)
    emit({"run_id": run_id, "expired_points": points, "holds_timed_out": holds})
    return 0
