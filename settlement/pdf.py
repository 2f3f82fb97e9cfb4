"""The PDF form of a signed statement: an A4 rendering for people, with the signed JSON attached.

The PDF holds no facts of its own. It is rendered from the signed JSON document, embeds that
document byte for byte as ``statement.json``, and prints the statement digest in every page's
footer and in the metadata Subject, so ``verify_pdf`` can tie what is printed to what is signed.

Rendering is byte-deterministic: the creation date (document and attachment) is the period end,
the trailer /ID is fpdf2's MD5 of the document bytes and that date, there is no XMP packet (its
modify date would be "now"), and the producer is fixed. Money is formatted from integer minor
units with integer arithmetic only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF, FontFace

from coalition.ledger import currency_exponent
from settlement.verify import PDF_ATTACHMENT as ATTACHMENT

PRODUCER = "Coalition clearinghouse (fpdf2)"
_HEADINGS = FontFace(emphasis="BOLD", fill_color=(225, 230, 238))
_ACTION = {
    "pay_in": "PAY IN: {who} pays {amount} to the clearinghouse",
    "pay_out": "PAY OUT: the clearinghouse pays {amount} to {who}",
    "none": "NONE: no money moves for {who}",
}


def money(amount_minor: int, currency: str) -> str:
    """``-452`` EUR minor units -> ``"EUR -4.52"``; exact, integer arithmetic only."""
    exponent = currency_exponent(currency)
    major, minor = divmod(abs(amount_minor), 10**exponent)
    sign = "-" if amount_minor < 0 else ""
    fraction = f".{minor:0{exponent}d}" if exponent else ""
    return f"{currency} {sign}{major:,}{fraction}"


def _points(n: int) -> str:
    return f"{n:,}"


def _line(label: str, currency: str, points: int, *amounts_minor: int) -> list[str]:
    return [label, _points(points), *(money(m, currency) for m in amounts_minor)]


def _text(value: object) -> str:
    """The core fonts only cover Latin-1."""
    return str(value).encode("latin-1", "replace").decode("latin-1")


def _instruction(who: str, net: dict[str, Any], currency: str) -> str:
    template = _ACTION.get(net["instruction"], "{who}: {amount}")
    return template.format(who=who, amount=money(abs(net["amount_minor"]), currency))


Rows = list[list[str]]


class _Document(FPDF):
    def __init__(self, digest: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.digest = digest

    def footer(self) -> None:
        self.set_y(-16)
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_font("Helvetica", "", 7.5)
        self.set_text_color(60, 60, 60)
        # One cell, one line: pypdf must extract the digest as a contiguous string.
        self.cell(0, 5, f"Statement digest: {self.digest}", new_x="LMARGIN", new_y="NEXT")
        note = f"Signed statement attached as {ATTACHMENT}; verify it against the JWK set."
        self.cell(0, 4, note, new_x="RIGHT", new_y="TOP")
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    def section(
        self, title: str, headings: list[str], rows: Rows, widths: tuple[int, ...], bold: int = 0
    ) -> None:
        """A titled table, starting a new page unless its first rows fit; ``bold`` last rows."""
        if self.get_y() + 14 + min(len(rows), 9) * 5.4 > self.page_break_trigger:
            self.add_page()
        self.ln(3)
        self.set_font("Helvetica", "B", 11.5)
        self.cell(0, 7, _text(title), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", "", 9.5)
        with self.table(
            col_widths=widths,
            text_align=("LEFT", *["RIGHT"] * (len(headings) - 1)),
            headings_style=_HEADINGS,
            borders_layout="HORIZONTAL_LINES",
            line_height=5.2,
            padding=(0, 1.5),
        ) as table:
            table.row([_text(h) for h in headings])
            for i, cells in enumerate(rows or [["None in this period", *[""] * (len(widths) - 1)]]):
                style = FontFace(emphasis="BOLD") if i >= len(rows) - bold else None
                table.row([_text(c) for c in cells], style=style)

    def pairs(self, items: list[tuple[str, str]]) -> None:
        for label, value in items:
            self.set_font("Helvetica", "B", 9.5)
            self.cell(48, 5, _text(label))
            self.set_font("Helvetica", "", 9.5)
            self.cell(0, 5, _text(value), new_x="LMARGIN", new_y="NEXT")


def _header(pdf: _Document, s: dict[str, Any], title: str, who: str) -> None:
    pdf.set_font("Helvetica", "B", 17)
    pdf.cell(0, 10, _text(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.cell(0, 6, _text(f"{who} - business date {s['business_date']}"), new_x="LMARGIN")
    pdf.ln(9)
    period, bps = s["period"], s["clearing_fee_bps"]
    pdf.pairs(
        [
            ("Partner", who),
            ("Business date", f"{s['business_date']} ({s['time_zone']})"),
            ("Period (UTC)", f"{period['start']} to {period['end']} (end excluded)"),
            ("Currency", s["currency"]),
            ("Point value", f"{s['point_value']} {s['currency']} per point"),
            ("Clearing fee", f"{bps} bps ({bps // 100}.{bps % 100:02d}%), paid by the payee"),
            ("Settlement run", s["run_id"]),
        ]
    )


def _partner(pdf: _Document, s: dict[str, Any]) -> None:
    who, cur, net = s["partner_id"], s["currency"], s["net_position"]
    pdf.ln(3)
    pdf.set_fill_color(240, 243, 248)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, f"Net position {money(net['amount_minor'], cur)}", fill=True, new_x="LMARGIN")
    pdf.ln(8)
    pdf.cell(0, 8, _text(_instruction(who, net, cur)), fill=True, new_x="LMARGIN", new_y="NEXT")
    rec, pay = s.get("receivables", []), s.get("payables", [])
    value_in, value_out = sum(r["value_minor"] for r in rec), sum(p["value_minor"] for p in pay)
    fees = sum(r["fee_minor"] for r in rec)
    parts = [
        ["Receivable value (points redeemed here)", money(value_in, cur)],
        ["less clearing fees", money(-fees, cur)],
        ["less payable value (your points redeemed elsewhere)", money(-value_out, cur)],
        ["Net position", money(net["amount_minor"], cur)],
    ]
    pdf.section("How the net position is made up", ["Item", "Amount"], parts, (3, 1), bold=1)
    iss = s["issuance"]
    issuance = [
        ["Earn transactions", _points(iss["earn_count"])],
        ["Points earned", _points(iss["earned_points"])],
        ["Points reversed by returns", _points(iss["earn_reversed_points"])],
    ]
    pdf.section("Issuance", ["Item", "Count / points"], issuance, (3, 1))
    rows: Rows = []
    for r in rec:
        v, f = r["value_minor"], r["fee_minor"]
        rows.append(_line(r["payer"], cur, r["points"], v, f, v - f))
    if rec:
        total = sum(r["points"] for r in rec)
        rows.append(_line("Total", cur, total, value_in, fees, value_in - fees))
    heads = ["Payer (issuer)", "Points", "Value", "Fee", "Net receivable"]
    title = f"Receivables: points redeemed at {who}, by issuer"
    pdf.section(title, heads, rows, (3, 2, 2, 2, 2), bold=1)
    rows = [_line(p["payee"], cur, p["points"], p["value_minor"]) for p in pay]
    if pay:
        rows.append(_line("Total", cur, sum(p["points"] for p in pay), value_out))
    title = f"Payables: points issued by {who} redeemed at others, by payee"
    pdf.section(title, ["Payee", "Points", "Value"], rows, (3, 2, 2), bold=1)
    if rev := s.get("reversals"):
        kinds = (
            ("Earn reversals (returns)", "earn"),
            ("Redemption reversals (refunds)", "redemption"),
        )
        reversals = [
            [label, _points(rev[f"{k}_reversal_count"]), _points(rev[f"{k}_reversed_points"])]
            for label, k in kinds
        ]
        pdf.section("Reversals", ["Reversal", "Count", "Points"], reversals, (3, 1, 1))
    li = s["liability"]
    roll = [
        ["Opening outstanding", _points(li["opening_points"])],
        ["+ issued", _points(li["issued_points"])],
        ["- earn reversals", _points(li["earn_reversed_points"])],
        ["- redeemed (anywhere, including own)", _points(li["redeemed_points"])],
        ["+ redemption reversals", _points(li["redemption_reversed_points"])],
        ["- expired (breakage)", _points(li["expired_points"])],
        ["= Closing outstanding", _points(li["closing_points"])],
        ["Closing liability at point value", money(li["closing_value_minor"], cur)],
    ]
    title = f"Liability roll-forward: points issued by {who} still outstanding"
    pdf.section(title, ["Movement", "Points"], roll, (3, 1), bold=2)


def _summary(pdf: _Document, s: dict[str, Any]) -> None:
    cur = s["currency"]
    rows = [
        [
            p["partner_id"],
            money(p["net_position"]["amount_minor"], cur),
            _instruction(p["partner_id"], p["net_position"], cur).split(":")[0],
            money(p["fees_paid_minor"], cur),
            _points(p["outstanding_points"]),
        ]
        for p in s["partners"]
    ]
    heads = ["Partner", "Net position", "Instruction", "Fees paid", "Outstanding pts"]
    pdf.section("Net positions", heads, rows, (3, 2, 2, 2, 2))
    rows = [
        _line(f"{p['payer']} -> {p['payee']}", cur, p["points"], p["value_minor"], p["fee_minor"])
        for p in s["pairs"]
    ]
    heads = ["Payer -> payee", "Points", "Value", "Fee"]
    pdf.section("Cleared pairs (payer owes payee)", heads, rows, (3, 2, 2, 2))
    zero, out = s["zero_sum"], s["outstanding_liability"]
    verdict = "holds" if zero["sum"] == 0 else "BREAK"
    checks = [
        ["Fees total (clearinghouse revenue)", money(s["fees_total_minor"], cur)],
        ["Sum of net positions", money(zero["net_total_minor"], cur)],
        [f"Zero-sum check: net positions + fees ({verdict})", money(zero["sum"], cur)],
        ["Outstanding liability, points", _points(out["points"])],
        ["Outstanding liability, value", money(out["value_minor"], cur)],
    ]
    pdf.section("Totals and checks", ["Check", "Amount"], checks, (3, 1))


def render_pdf(signed_json: bytes) -> bytes:
    """The PDF for a signed statement document (canonical JSON bytes); the same input always
    gives the same bytes."""
    envelope = json.loads(signed_json)
    statement: dict[str, Any] = envelope["statement"]
    digest: str = envelope["signature"]["digest"]
    summary = statement["format"] == "coalition-summary/1"
    who = "All partners" if summary else statement["partner_id"]
    kind = "Operator settlement summary" if summary else "Settlement statement"
    created = datetime.fromisoformat(statement["period"]["end"]).astimezone(UTC)

    pdf = _Document(digest)
    pdf.set_creation_date(created)
    pdf.set_producer(PRODUCER)
    pdf.set_creator(PRODUCER)
    pdf.set_author("Coalition clearinghouse")
    pdf.set_title(_text(f"{kind} {who} {statement['business_date']}"))
    pdf.set_subject(digest)
    pdf.set_keywords(_text(f"{statement['format']} {statement['run_id']} {digest}"))
    pdf.set_lang("en")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(auto=True, margin=22)
    pdf.add_page()
    _header(pdf, statement, kind, who)
    (_summary if summary else _partner)(pdf, statement)
    pdf.embed_file(
        bytes=signed_json,
        basename=ATTACHMENT,
        mime_type="application/json",
        desc="Signed statement (canonical JSON, Ed25519)",
        creation_date=created,
        modification_date=created,
    )
    return bytes(pdf.output())
