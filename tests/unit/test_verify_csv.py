"""The CSV verifier takes the signature lines exactly as signed (found by fuzzing: junk after
them verified, and a non-UTF-8 trailer crashed the verifier instead of refusing)."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
