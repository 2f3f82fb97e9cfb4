"""The CSV verifier takes the signature lines exactly as signed (found by fuzzing: junk after
them verified, and a non-UTF-8 trailer crashed the verifier instead of refusing)."""

import csv
import io

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from partners import keys
from settlement import documents
from settlement.verify import VerificationFailed, verify_csv

KEY = Ed25519PrivateKey.generate()
JWKS = {"keys": [keys.public_jwk(KEY.public_key(), "stmt-1")]}


def signed() -> bytes:
    body = documents.CsvBody(["entry_id", "points"])
    body.add(["txn_1", 5])
    return body.signed("stmt-1", KEY, "sha-256=:abc=:")


def test_the_signed_csv_verifies() -> None:
    assert verify_csv(signed(), JWKS) == "sha-256=:abc=:"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: data + b"junk",
        lambda data: data[:-1],
        lambda data: data + b"\x80\n",
        lambda data: data.replace(b"# signature: :", b"# signature: "),
        lambda data: data.replace(b"# statement-digest: ", b"# statement-digest "),
    ],
)
def test_anything_but_the_exact_trailer_is_refused(tamper: object) -> None:
    with pytest.raises(VerificationFailed):
        verify_csv(tamper(signed()), JWKS)  # type: ignore[operator]


@given(
    st.lists(
        st.one_of(st.text(), st.integers()),
        min_size=2,
        max_size=7,
    )
)
@example(["cr\ronly", 'a "quote"', "a,comma", "lf\nonly", "", 7])
def test_a_csv_line_reads_back_as_its_fields(row: list[str | int]) -> None:
    """Any text survives, CR included (Python's csv writer leaves a bare CR unquoted, and a
    reader then ends the line there); a field is quoted only when it must be."""
    line = documents.csv_line(row)
    assert list(csv.reader(io.StringIO(line, newline=""))) == [[str(v) for v in row]]
    for value in row:
        text = str(value)
        assert (documents.csv_field(value) != text) == any(c in text for c in ',"\r\n')
