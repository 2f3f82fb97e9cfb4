"""Settlement test helpers: a statement key per test run and a settler on the world's clock."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec

from coalition.settings import Settings
from settlement import statement_key
from settlement.service import Settler
from tests.support import Coalition

_KEY_DIR = Path(tempfile.mkdtemp(prefix="coalition-statement-key-"))
STATEMENT_KEY = _KEY_DIR / "statement.private.pem"
statement_key.generate(STATEMENT_KEY)


def settler_for(world: Coalition, **overrides: object) -> Settler:
    settings = msgspec.structs.replace(
        world.ledger.settings, statement_key_path=str(STATEMENT_KEY), **overrides
    )
    return Settler(settings, world.clock)


def settings_for(world: Coalition) -> Settings:
    return settler_for(world).settings
