"""Schemathesis against the served OpenAPI document: generated requests (valid and invalid),
each signed like a real partner's, must never get a 5xx and every response must match the
document (status codes, content types, headers, bodies)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.partner_client import AUTHORITY, sign
from tests.reliability.client import Partner, Tally, enrol, now, onboard
from tests.reliability.figures import Figures
from tests.reliability.stack import Stack

EXAMPLES = 40  # per operation and mode (valid, invalid); --long: ten times more
SIGNATURE_HEADERS = ("signature", "signature-input", "content-digest")
PUBLIC = ("/health", "/problems", "/schema", "/v1/keys")
# Schema-valid yet refused by rules a JSON schema cannot state (a card's Luhn digit, the
# partner's currency, the bonus cap): a 400 there is correct, so that one check is left out.
SEMANTIC = [positive_data_acceptance]


@pytest.fixture(scope="session")
async def signer(stack: Stack) -> AsyncIterator[Partner]:
    async with httpx.AsyncClient(base_url=stack.url) as http:
        partner = await onboard(http, Tally(), "fuzzed")
        await enrol(partner, 1000)  # something to find, refuse and redeem
        yield partner


def send(case: Any, stack: Stack, signer: Partner) -> requests.Response:
    """The generated request, signed as the fuzzed partner (the document's public endpoints
    unsigned), sent to the served API."""
    kwargs = case.as_transport_kwargs(base_url=f"https://{AUTHORITY}")
    given = kwargs.pop("headers", None) or {}
    headers = {k: v for k, v in given.items() if k.lower() not in SIGNATURE_HEADERS}
    if kwargs["method"] == "POST":
        headers.setdefault("Content-Type", "application/json")
        headers.setdefault("Idempotency-Key", f"fuzz-{secrets.token_hex(8)}")
    prepared = requests.Request(headers=headers, **kwargs).prepare()
    if not case.path.startswith(PUBLIC):
        client = signer.client
        sign(prepared, client.keyid, client.key, created=now(), nonce=secrets.token_hex(8))
    prepared.url = (prepared.url or "").replace(f"https://{AUTHORITY}", stack.url)
    with requests.Session() as session:
        return session.send(prepared, timeout=30)


@pytest.mark.scenario("schemathesis")
async def test_the_served_api_matches_its_document(
    stack: Stack, signer: Partner, figures: Figures, long_mode: bool
) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/schema/openapi.json")
    examples = EXAMPLES * (10 if long_mode else 1)
    sent: Counter[str] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # an operation it could not read
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None)  # fmt: skip
            def check(case: Any) -> None:
                response = send(case, stack, signer)
                sent[str(response.status_code)] += 1
                request = (case.method, case.formatted_path, case.query, case.body)
                assert response.status_code < 500, (request, response.text)
                case.validate_response(response, excluded_checks=SEMANTIC)

            try:
                await asyncio.to_thread(check)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # no parameter to get wrong (GET /health)
    figures.record(sent, operations=operations, inputs=sum(sent.values()))
