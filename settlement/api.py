"""Settlement resources of the partner API: a partner's settled dates and statements, and the
clearinghouse's public statement keys. Mounted by ``partners.app``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from coalition.errors import InvalidInput
from settlement import statement_key, store

RANGE_DAYS_MAX = 366


class SettlementController(Controller):
    path = "/v1/settlements"
    tags = ["settlements"]

    @get("/")
    async def dates(
        self,
        caller: NamedDependency[Any],
        state: State,
        from_: Annotated[date | None, QueryParameter(name="from")] = None,
        to: Annotated[date | None, QueryParameter()] = None,
    ) -> dict[str, Any]:
        """Settled dates in [from, to] (default: the last 31 days) with your net position."""
        end = to or datetime.now(state.settings.zone).date()  # today in the coalition's zone
        try:
            start = from_ or end - timedelta(days=30)
        except OverflowError:  # to=0001-01-01: there is no date 30 days before it
            raise InvalidInput("to is before the first representable date range") from None
        if start > end or (end - start).days > RANGE_DAYS_MAX:
            raise InvalidInput(f"need from <= to and at most {RANGE_DAYS_MAX} days")
        return {"settlements": await store.settled_dates(caller.partner_id, start, end)}

    @get("/{business_date:str}/statement", media_type="application/json")
    async def statement(
        self,
        business_date: Annotated[str, PathParameter(pattern=r"^\d{4}-\d{2}-\d{2}$")],
        caller: NamedDependency[Any],
        request: Request[Any, Any, Any],
    ) -> Response[bytes]:
        """Your signed statement: JSON by default; ``Accept: text/csv`` or ``application/pdf``."""
        accept = request.headers.get("accept", "application/json")
        fmt = "pdf" if "application/pdf" in accept else "csv" if "text/csv" in accept else "json"
        try:
            day = date.fromisoformat(business_date)
        except ValueError:  # the pattern admits 2026-13-45; the calendar does not
            raise InvalidInput(f"not a calendar date: {business_date}") from None
        data = await store.statement_bytes(day, caller.partner_id, fmt)
        filename = f"statement-{business_date}-{caller.partner_id}.{fmt}"
        return Response(
            data,
            media_type=store.MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Vary": "Accept"},
        )


@get("/v1/keys", tags=["settlements"])
async def statement_keys(state: State) -> dict[str, Any]:
    """The clearinghouse's statement-signing public keys, as a JWK set (no signature needed)."""
    return statement_key.jwks(Path(state.settings.statement_key_path))


SIGNED_HANDLERS = [SettlementController]
PUBLIC_HANDLERS = [statement_keys]
