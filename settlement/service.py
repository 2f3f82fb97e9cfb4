"""Settlement runs: idempotent, one per business date, in two phases.

1. ``prepare``: claim the date, aggregate the period in SQL, reconcile, and either mark the run
   failed with its breaks, or store the cleared pairs and one unsigned statement per partner.
2. ``sign_statement`` per partner (fanned out to workers): sign the JSON, render and sign the CSV;
   the last one to finish publishes the run. Nothing is visible before publication.

Every step can run again after a crash: rows are keyed by date and partner and written with
"insert if absent", and the figures are a pure function of a ledger that no longer changes.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from coalition import db
from coalition.clock import Clock, now_us, system_clock
from coalition.errors import InvalidInput, NotFound
from coalition.ledger import from_us, new_id, points_value_minor, rfc3339
from coalition.settings import Settings
from settlement import calc, documents, repository, statement_key
from settlement.reconciliation import (
    Break,
    ledger_breaks,
    roll_forward_breaks,
    zero_sum_breaks,
)

OPERATOR = "*"  # the operator summary's partner id
# Statements ``settle`` signs at once on PostgreSQL: while one partner's COPY runs in the server,
# another's CSV is hashed and stored (10M-posting day: docs/performance.md). The arq worker gets
# the same overlap from its concurrent jobs. SQLite has one writer: there, one at a time.
SIGN_CONCURRENCY = 4
PAIRS_PER_INSERT = 500  # 3,500 parameters: within SQLite's and PostgreSQL's limits
SUMMARY_COLUMNS = (
    "partner_id",
    "net_amount_minor",
    "instruction",
    "fees_paid_minor",
    "outstanding_points",
)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    business_date: str
    status: str
    breaks: list[dict[str, Any]]


class Settler:
    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock

    # -- phase 1 ------------------------------------------------------------------------------

    async def prepare(self, business_date: date) -> tuple[RunOutcome, list[str]]:
        """Returns the run and the partners whose statements still need signing."""
        run = await self._claim(business_date)
        if run["status"] == "published":
            return _outcome(run), []
        breaks, statements = await self._compute(run)
        if breaks:
            await _fail(run["id"], breaks, now_us(self.clock))
            return _outcome(await _run_row(business_date)), []
        for partner_id, statement in statements:
            await db.execute(
                "INSERT INTO statements (id, run_id, business_date, partner_id, signed_json,"
                " signed_csv, statement_digest) VALUES ({}, {}, {}, {}, {}, '', '')"
                " ON CONFLICT (id) DO NOTHING",
                f"{run['business_date']}:{partner_id}",
                run["id"],
                run["business_date"],
                partner_id,
                documents.canonical(statement).decode(),
            )
        pending = await db.fetch(
            "SELECT partner_id FROM statements WHERE run_id = {} AND statement_digest = ''"
            " ORDER BY partner_id",
            run["id"],
        )
        return _outcome(run), [r["partner_id"] for r in pending]

    async def _claim(self, business_date: date) -> dict[str, Any]:
        start, end = calc.period_bounds(business_date, self.settings.zone)
        now = now_us(self.clock)
        if now < end + self.settings.settlement_grace_seconds * 1_000_000:
            raise InvalidInput(f"{business_date} is not closed yet (period end plus grace)")
        day = business_date.isoformat()
        async with db.write_transaction():
            row = await db.fetch_one(
                f"SELECT * FROM settlement_runs WHERE business_date = {{}}{db.for_update()}", day
            )
            if row is None:
                await db.execute(
                    "INSERT INTO settlement_runs (id, business_date, status, period_start_us,"
                    " period_end_us, attempts, started_at_us, finished_at_us, report)"
                    " VALUES ({}, {}, 'running', {}, {}, 1, {}, NULL, '')"
                    " ON CONFLICT (business_date) DO NOTHING",  # a concurrent claim won
                    new_id("run"),
                    day,
                    start,
                    end,
                    now,
                )
            elif row["status"] == "failed":
                # A failed run is retried by the operator once the break is explained.
                await db.execute(
                    "UPDATE settlement_runs SET status = 'running', attempts = attempts + 1,"
                    " report = '' WHERE id = {}",
                    row["id"],
                )
        return await _run_row(business_date)

    async def _compute(
        self, run: dict[str, Any]
    ) -> tuple[list[Break], list[tuple[str, dict[str, Any]]]]:
        """The reconciliation breaks, or (when there are none) every statement of the run."""
        start, end = run["period_start_us"], run["period_end_us"]
        settings = self.settings
        # Every figure and every check below compares reads with each other: take them from one
        # snapshot, or an entry committing in between would show up as a false break.
        async with db.read_snapshot():
            partners = await repository.partner_ids()
            cleared = await repository.cleared_points(start, end)
            opening = await repository.liability_before(start)
            by_kind = await repository.liability_by_kind(start, end)
            after_end = await repository.liability_from(end)
            outstanding = await repository.outstanding_now()
            previous = await _previous_closing(run["business_date"])
            ledger = await ledger_breaks()
            totals = await repository.entry_totals(start, end)
        # The closing from the raw movements: the opening plus every movement of the period.
        # (A second scan for "before end" read the same rows: 1.4 s of a 10M-posting day.)
        closing = {
            p: opening.get(p, 0) + sum(by_kind.get(p, {}).values())
            for p in set(opening) | set(by_kind)
        }
        lines = calc.clear(
            cleared, settings.point_value, settings.settlement_currency, settings.clearing_fee_bps
        )
        net = calc.net_positions(lines, partners)
        try:
            figures = {
                p: calc.roll_forward(opening.get(p, 0), by_kind.get(p, {}))
                for p in sorted(set(partners) | set(opening) | set(by_kind))
            }
        except ValueError as unknown:
            return [Break("movement-kinds", "lot_movements", None, None, str(unknown))], []
        breaks = [
            *zero_sum_breaks(calc.zero_sum(net, lines)),
            *roll_forward_breaks(figures, closing, after_end, outstanding, previous),
            *ledger,
        ]
        if breaks:
            return breaks, []
        for batch in (
            lines[i : i + PAIRS_PER_INSERT] for i in range(0, len(lines), PAIRS_PER_INSERT)
        ):
            # One statement per batch, not one round trip per pair (partners² pairs at most).
            args: list[Any] = []
            for line in batch:
                args += [
                    f"{run['id']}:{line.payer}:{line.payee}",
                    run["id"],
                    line.payer,
                    line.payee,
                    line.points,
                    line.value_minor,
                    line.fee_minor,
                ]
            values = ", ".join("({}, {}, {}, {}, {}, {}, {})" for _ in batch)
            await db.execute(
                "INSERT INTO cleared_pairs (id, run_id, payer_id, payee_id, points, value_minor,"
                f" fee_minor) VALUES {values} ON CONFLICT (id) DO NOTHING",
                *args,
            )
        # Each partner's lines, found in one pass: scanning every line for every partner was
        # quadratic (1,000 partners: most of the run's CPU).
        mine: dict[str, list[calc.ClearedLine]] = defaultdict(list)
        for line in lines:
            mine[line.payee].append(line)
            if line.payer != line.payee:
                mine[line.payer].append(line)
        header = self._header(run)
        statements: list[tuple[str, dict[str, Any]]] = [
            (p, self._partner_statement(header, p, mine[p], net[p], figures[p], totals.get(p, {})))
            for p in partners
        ]
        statements.append((OPERATOR, self._summary(header, lines, net, figures)))
        return [], statements

    def _header(self, run: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        return {
            "business_date": run["business_date"],
            "time_zone": s.time_zone,
            "period": {"start": _utc(run["period_start_us"]), "end": _utc(run["period_end_us"])},
            "currency": s.settlement_currency,
            "point_value": str(s.point_value),
            "clearing_fee_bps": s.clearing_fee_bps,
            "run_id": run["id"],
        }

    def _money(self, points: int) -> int:
        return points_value_minor(
            points, self.settings.point_value, self.settings.settlement_currency
        )

    def _partner_statement(
        self,
        header: dict[str, Any],
        partner: str,
        lines: list[calc.ClearedLine],
        net: int,
        rf: calc.RollForward,
        totals: dict[str, tuple[int, int]],
    ) -> dict[str, Any]:
        def count(*kinds: str) -> int:
            return sum(totals.get(k, (0, 0))[0] for k in kinds)

        def points(*kinds: str) -> int:
            return sum(totals.get(k, (0, 0))[1] for k in kinds)

        return {
            "format": "coalition-statement/1",
            "partner_id": partner,
            **header,
            "issuance": {
                "earn_count": count("earn", "bonus_earn"),
                "earned_points": points("earn", "bonus_earn"),
                "earn_reversed_points": points("earn_reversal"),
            },
            "receivables": [
                {
                    "payer": ln.payer,
                    "points": ln.points,
                    "value_minor": ln.value_minor,
                    "fee_minor": ln.fee_minor,
                }
                for ln in lines
                if ln.payee == partner
            ],
            "payables": [
                {"payee": ln.payee, "points": ln.points, "value_minor": ln.value_minor}
                for ln in lines
                if ln.payer == partner
            ],
            "reversals": {
                "earn_reversal_count": count("earn_reversal"),
                "earn_reversed_points": points("earn_reversal"),
                "redemption_reversal_count": count("redemption_reversal"),
                "redemption_reversed_points": points("redemption_reversal"),
            },
            "net_position": {"amount_minor": net, "instruction": calc.instruction(net)},
            "liability": {
                "opening_points": rf.opening_points,
                "issued_points": rf.issued_points,
                "earn_reversed_points": rf.earn_reversed_points,
                "redeemed_points": rf.redeemed_points,
                "redemption_reversed_points": rf.redemption_reversed_points,
                "expired_points": rf.expired_points,
                "closing_points": rf.closing_points,
                "closing_value_minor": self._money(rf.closing_points),
            },
        }

    def _summary(
        self,
        header: dict[str, Any],
        lines: list[calc.ClearedLine],
        net: dict[str, int],
        figures: dict[str, calc.RollForward],
    ) -> dict[str, Any]:
        fees = sum(line.fee_minor for line in lines)
        fees_paid: dict[str, int] = defaultdict(int)
        for line in lines:
            fees_paid[line.payee] += line.fee_minor
        outstanding = sum(rf.closing_points for rf in figures.values())
        return {
            "format": "coalition-summary/1",
            **header,
            "partners": [
                {
                    "partner_id": p,
                    "net_position": {"amount_minor": n, "instruction": calc.instruction(n)},
                    "fees_paid_minor": fees_paid.get(p, 0),
                    "outstanding_points": figures[p].closing_points if p in figures else 0,
                }
                for p, n in sorted(net.items())
            ],
            "pairs": [
                {
                    "payer": ln.payer,
                    "payee": ln.payee,
                    "points": ln.points,
                    "value_minor": ln.value_minor,
                    "fee_minor": ln.fee_minor,
                }
                for ln in lines
            ],
            "fees_total_minor": fees,
            "zero_sum": {
                "net_total_minor": sum(net.values()),
                "fees_total_minor": fees,
                "sum": sum(net.values()) + fees,
            },
            "outstanding_liability": {
                "points": outstanding,
                "value_minor": self._money(outstanding),
            },
        }

    # -- phase 2 ------------------------------------------------------------------------------

    async def sign_statement(self, business_date: date, partner_id: str) -> None:
        day = business_date.isoformat()
        row = await db.fetch_one(
            "SELECT s.*, r.period_start_us, r.period_end_us FROM statements s"
            " JOIN settlement_runs r ON r.id = s.run_id WHERE s.id = {}",
            f"{day}:{partner_id}",
        )
        if row is None:
            raise NotFound(f"no statement {day} for {partner_id}")
        if row["statement_digest"]:
            return  # already signed by an earlier attempt
        keyid, key = statement_key.load(Path(self.settings.statement_key_path))
        statement = json.loads(row["signed_json"])
        signed_json = documents.sign_json(statement, keyid, key)
        digest = documents.statement_digest(signed_json)
        if partner_id == OPERATOR:
            csv_body = documents.CsvBody(SUMMARY_COLUMNS)
            for p in statement["partners"]:
                net = p["net_position"]
                csv_body.add(
                    [
                        p["partner_id"],
                        net["amount_minor"],
                        net["instruction"],
                        p["fees_paid_minor"],
                        p["outstanding_points"],
                    ]
                )
        else:
            csv_body = documents.CsvBody(documents.TRANSACTION_COLUMNS)
            start, end = row["period_start_us"], row["period_end_us"]
            if db.is_postgres():

                async def sink(chunk: bytes) -> None:
                    csv_body.add_csv(chunk)

                await repository.partner_transactions_csv(partner_id, start, end, sink)
            else:
                async for entry in repository.partner_transactions(partner_id, start, end):
                    csv_body.add(documents.transaction_row(entry))
        signed_csv = csv_body.signed(keyid, key, digest)
        await db.execute(
            "UPDATE statements SET signed_json = {}, signed_csv = {}, statement_digest = {}"
            " WHERE id = {} AND statement_digest = ''",
            signed_json.decode(),
            signed_csv.decode(),
            digest,
            row["id"],
        )

    async def publish_if_complete(self, business_date: date) -> bool:
        day = business_date.isoformat()
        async with db.write_transaction():
            pending = await db.fetch_one(
                "SELECT COUNT(*) AS n FROM statements WHERE business_date = {}"
                " AND statement_digest = ''",
                day,
            )
            if pending and pending["n"]:
                return False
            await db.execute(
                "UPDATE settlement_runs SET status = 'published', finished_at_us = {}"
                " WHERE business_date = {} AND status = 'running'",
                now_us(self.clock),
                day,
            )
        return True

    # -- whole runs ---------------------------------------------------------------------------

    async def settle(self, business_date: date) -> RunOutcome:
        """Settle one date in this process (the worker fans phase 2 out instead)."""
        outcome, pending = await self.prepare(business_date)
        slots = asyncio.Semaphore(SIGN_CONCURRENCY if db.is_postgres() else 1)

        async def sign(partner_id: str) -> None:
            async with slots:
                await self.sign_statement(business_date, partner_id)

        try:
            async with asyncio.TaskGroup() as signing:  # one failure cancels the rest
                for partner_id in pending:
                    signing.create_task(sign(partner_id))
        except ExceptionGroup as failed:  # callers handle the error itself, as before
            raise failed.exceptions[0] from None
        if outcome.status == "running":
            await self.publish_if_complete(business_date)
        return _outcome(await _run_row(business_date))

    async def due_dates(self) -> list[date]:
        """Every closed date not yet published, oldest first, from the first ledger activity."""
        last = calc.last_closed_date(
            self.clock(), self.settings.zone, self.settings.settlement_grace_seconds
        )
        if self.settings.settlement_start_date:
            day = date.fromisoformat(self.settings.settlement_start_date)
        else:
            first = await db.fetch_one("SELECT MIN(posted_at_us) AS at FROM entries")
            if first is None or first["at"] is None:
                return []
            day = from_us(int(first["at"])).astimezone(self.settings.zone).date()
        published = {
            r["business_date"]
            for r in await db.fetch(
                "SELECT business_date FROM settlement_runs WHERE status = 'published'"
            )
        }
        dates = []
        while day <= last:
            if day.isoformat() not in published:
                dates.append(day)
            day = date.fromordinal(day.toordinal() + 1)
        return dates


async def _run_row(business_date: date) -> dict[str, Any]:
    row = await db.fetch_one(
        "SELECT * FROM settlement_runs WHERE business_date = {}", business_date.isoformat()
    )
    if row is None:
        raise NotFound(f"no settlement run for {business_date}")
    return row


async def run_status(business_date: date) -> RunOutcome:
    return _outcome(await _run_row(business_date))


def _outcome(run: dict[str, Any]) -> RunOutcome:
    report = json.loads(run["report"]) if run["report"] else []
    return RunOutcome(run["id"], run["business_date"], run["status"], report)


async def _fail(run_id: str, breaks: list[Break], at_us: int) -> None:
    await db.execute(
        "UPDATE settlement_runs SET status = 'failed', finished_at_us = {}, report = {}"
        " WHERE id = {}",
        at_us,
        msgspec.json.encode(breaks).decode(),
        run_id,
    )


async def _previous_closing(business_date: str) -> dict[str, int] | None:
    """Each issuer's closing liability in the previous date's published statements."""
    previous = date.fromordinal(date.fromisoformat(business_date).toordinal() - 1).isoformat()
    rows = await db.fetch(
        "SELECT s.partner_id, s.signed_json FROM statements s JOIN settlement_runs r"
        " ON r.id = s.run_id WHERE s.business_date = {} AND r.status = 'published'"
        " AND s.partner_id <> {}",
        previous,
        OPERATOR,
    )
    if not rows:
        return None
    closing = {}
    for row in rows:
        statement = json.loads(row["signed_json"])["statement"]
        closing[row["partner_id"]] = int(statement["liability"]["closing_points"])
    return closing


def _utc(at_us: int) -> str:
    return rfc3339(at_us).replace(".000000Z", "Z")
