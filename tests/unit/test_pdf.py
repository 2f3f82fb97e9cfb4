"""Tests for settlement.pdf: the rendering, its byte determinism, and verify_pdf."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader, PdfWriter

from partners.keys import public_jwk
from settlement.documents import sign_json, statement_digest
from settlement.pdf import money, render_pdf
from settlement.verify import VerificationFailed, verify_json, verify_pdf

KEYID = "stmt-test-1"
ROOT = Path(__file__).resolve().parents[2]

STATEMENT: dict[str, Any] = {
    "format": "coalition-statement/1",
    "partner_id": "cafe",
    "business_date": "2026-03-10",
    "time_zone": "UTC",
    "period": {"start": "2026-03-10T00:00:00Z", "end": "2026-03-11T00:00:00Z"},
    "currency": "EUR",
    "point_value": "0.01",
    "clearing_fee_bps": 100,
    "run_id": "run-2026-03-10",
    "issuance": {"earn_count": 3, "earned_points": 1200, "earn_reversed_points": 0},
    "receivables": [{"payer": "fashion", "points": 250, "value_minor": 250, "fee_minor": 2}],
    "payables": [{"payee": "fashion", "points": 700, "value_minor": 700}],
    "reversals": {
        "earn_reversal_count": 0,
        "earn_reversed_points": 0,
        "redemption_reversal_count": 0,
        "redemption_reversed_points": 0,
    },
    "net_position": {"amount_minor": -452, "instruction": "pay_in"},
    "liability": {
        "opening_points": 300,
        "issued_points": 1200,
        "earn_reversed_points": 0,
        "redeemed_points": 1100,
        "redemption_reversed_points": 0,
        "expired_points": 0,
        "closing_points": 400,
        "closing_value_minor": 400,
    },
}

SUMMARY: dict[str, Any] = {
    "format": "coalition-summary/1",
    **{k: STATEMENT[k] for k in ("business_date", "time_zone", "period", "currency")},
    **{k: STATEMENT[k] for k in ("point_value", "clearing_fee_bps", "run_id")},
    "partners": [
        {
            "partner_id": "cafe",
            "net_position": {"amount_minor": -452, "instruction": "pay_in"},
            "fees_paid_minor": 2,
            "outstanding_points": 400,
        },
        {
            "partner_id": "fashion",
            "net_position": {"amount_minor": 443, "instruction": "pay_out"},
            "fees_paid_minor": 7,
            "outstanding_points": 900,
        },
    ],
    "pairs": [
        {"payer": "fashion", "payee": "cafe", "points": 250, "value_minor": 250, "fee_minor": 2},
        {"payer": "cafe", "payee": "fashion", "points": 700, "value_minor": 700, "fee_minor": 7},
    ],
    "fees_total_minor": 9,
    "zero_sum": {"net_total_minor": -9, "fees_total_minor": 9, "sum": 0},
    "outstanding_liability": {"points": 1300, "value_minor": 1300},
}

RENDER = "import sys; from settlement.pdf import render_pdf; " + (
    "sys.stdout.buffer.write(render_pdf(sys.stdin.buffer.read()))"
)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def jwks(key: Ed25519PrivateKey) -> dict[str, Any]:
    return {"keys": [public_jwk(key.public_key(), KEYID)]}


@pytest.fixture(scope="module")
def signed(key: Ed25519PrivateKey) -> bytes:
    return sign_json(STATEMENT, KEYID, key)


@pytest.fixture(scope="module")
def pdf(signed: bytes) -> bytes:
    return render_pdf(signed)


def _text(data: bytes) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]


def _render_in_subprocess(signed: bytes, tz: str, hashseed: str) -> bytes:
    env = {**os.environ, "TZ": tz, "PYTHONHASHSEED": hashseed}
    done = subprocess.run(
        [sys.executable, "-c", RENDER],
        input=signed,
        capture_output=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    return done.stdout


# -- money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (-452, "EUR", "EUR -4.52"),
        (5, "EUR", "EUR 0.05"),
        (-5, "EUR", "EUR -0.05"),
        (0, "EUR", "EUR 0.00"),
        (264, "EUR", "EUR 2.64"),
        (123_456_789_012_345_678, "EUR", "EUR 1,234,567,890,123,456.78"),
        (500, "JPY", "JPY 500"),
        (-1234, "KWD", "KWD -1.234"),
    ],
)
def test_money_is_exact(minor: int, currency: str, text: str) -> None:
    assert money(minor, currency) == text


# -- rendering and determinism --------------------------------------------------------------


def test_render_is_byte_identical_in_process(signed: bytes, pdf: bytes) -> None:
    assert pdf.startswith(b"%PDF-")
    assert render_pdf(signed) == pdf


def test_render_is_byte_identical_across_processes(signed: bytes, pdf: bytes) -> None:
    first = _render_in_subprocess(signed, "America/New_York", "1")
    second = _render_in_subprocess(signed, "Asia/Tokyo", "2")
    assert first == second == pdf


def test_attachment_metadata_and_footer(signed: bytes, pdf: bytes) -> None:
    digest = statement_digest(signed)
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.attachments["statement.json"][0] == signed
    assert reader.metadata is not None
    assert reader.metadata.subject == digest
    assert reader.metadata.creation_date is not None
    assert reader.metadata.creation_date.isoformat() == "2026-03-11T00:00:00+00:00"
    assert all(f"Statement digest: {digest}" in text for text in _text(pdf))


def test_statement_reads_well(pdf: bytes) -> None:
    text = "\n".join(_text(pdf))
    for expected in (
        "Settlement statement",
        "cafe - business date 2026-03-10",
        "2026-03-10T00:00:00Z to 2026-03-11T00:00:00Z",
        "0.01 EUR per point",
        "100 bps (1.00%)",
        "run-2026-03-10",
        "Net position EUR -4.52",
        "PAY IN: cafe pays EUR 4.52 to the clearinghouse",
        "fashion 250 EUR 2.50 EUR 0.02 EUR 2.48",
        "fashion 700 EUR 7.00",
        "= Closing outstanding 400",
        "Closing liability at point value EUR 4.00",
    ):
        assert expected in text


def test_pay_out_and_none_instructions(key: Ed25519PrivateKey) -> None:
    out = copy.deepcopy(STATEMENT)
    out["net_position"] = {"amount_minor": 264, "instruction": "pay_out"}
    assert "PAY OUT: the clearinghouse pays EUR 2.64 to cafe" in _text(
        render_pdf(sign_json(out, KEYID, key))
    )[0].replace("\n", " ")
    out["net_position"] = {"amount_minor": 0, "instruction": "none"}
    assert "NONE: no money moves for cafe" in _text(render_pdf(sign_json(out, KEYID, key)))[0]


def test_summary_renders_and_verifies(key: Ed25519PrivateKey, jwks: dict[str, Any]) -> None:
    signed = sign_json(SUMMARY, KEYID, key)
    data = render_pdf(signed)
    assert render_pdf(signed) == data
    assert verify_pdf(data, jwks) == SUMMARY
    text = "\n".join(_text(data))
    for expected in (
        "Operator settlement summary",
        "cafe EUR -4.52 PAY IN EUR 0.02 400",
        "fashion EUR 4.43 PAY OUT EUR 0.07 900",
        "fashion -> cafe 250 EUR 2.50 EUR 0.02",
        "Zero-sum check: net positions + fees (holds) EUR 0.00",
        "Outstanding liability, value EUR 13.00",
    ):
        assert expected in text


def test_many_lines_break_pages_with_the_digest_on_each(
    key: Ed25519PrivateKey, jwks: dict[str, Any]
) -> None:
    big = copy.deepcopy(STATEMENT)
    big["receivables"] = [
        {"payer": f"partner-{i:03d}", "points": 10 * i, "value_minor": 10 * i, "fee_minor": 0}
        for i in range(90)
    ]
    signed = sign_json(big, KEYID, key)
    data = render_pdf(signed)
    pages = _text(data)
    assert len(pages) > 2
    assert all(statement_digest(signed) in page for page in pages)
    assert f"Page {len(pages)} of {len(pages)}" in pages[-1]
    assert verify_pdf(data, jwks) == big


# -- verification ---------------------------------------------------------------------------


def test_verify_pdf_passes(pdf: bytes, jwks: dict[str, Any]) -> None:
    assert verify_pdf(pdf, jwks) == STATEMENT


def test_swapped_attachment_fails_on_the_printed_digest(
    key: Ed25519PrivateKey, pdf: bytes, jwks: dict[str, Any]
) -> None:
    other = copy.deepcopy(STATEMENT)
    other["net_position"] = {"amount_minor": 45_200, "instruction": "pay_out"}
    other_signed = sign_json(other, KEYID, key)
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    for attachment in list(writer.attachment_list):
        attachment.delete()
    writer.add_attachment("statement.json", other_signed)
    writer.add_metadata({"/Subject": statement_digest(other_signed)})
    out = io.BytesIO()
    writer.write(out)
    swapped = out.getvalue()

    reader = PdfReader(io.BytesIO(swapped))
    assert reader.attachments["statement.json"] == [other_signed]
    assert verify_json(other_signed, jwks) == other  # the attachment itself is genuine
    with pytest.raises(VerificationFailed, match="printed"):
        verify_pdf(swapped, jwks)


def test_tampered_attachment_bytes_fail(pdf: bytes, jwks: dict[str, Any]) -> None:
    original = b'"amount_minor":-452'
    assert pdf.count(original) == 1  # the attachment is stored uncompressed
    tampered = pdf.replace(original, b'"amount_minor":-453')
    with pytest.raises(VerificationFailed, match="changed"):
        verify_pdf(tampered, jwks)


def test_tampered_subject_fails(pdf: bytes, jwks: dict[str, Any]) -> None:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.add_metadata({"/Subject": "sha-256=:AAAA:"})
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(VerificationFailed, match="printed"):
        verify_pdf(out.getvalue(), jwks)


def test_unknown_key_fails(pdf: bytes) -> None:
    stranger = {"keys": [public_jwk(Ed25519PrivateKey.generate().public_key(), "stmt-other")]}
    with pytest.raises(VerificationFailed, match="no key"):
        verify_pdf(pdf, stranger)


def test_pdf_without_attachment_fails(pdf: bytes, jwks: dict[str, Any]) -> None:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    for attachment in list(writer.attachment_list):
        attachment.delete()
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(VerificationFailed, match="exactly one"):
        verify_pdf(out.getvalue(), jwks)


def test_not_a_pdf_fails(jwks: dict[str, Any]) -> None:
    with pytest.raises(VerificationFailed):
        verify_pdf(b"%PDF-1.4\nnot really a pdf", jwks)
    with pytest.raises(VerificationFailed):
        verify_pdf(json.dumps({"x": 1}).encode(), jwks)
