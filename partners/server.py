"""The app factory uvicorn runs: settings from the environment, logs as JSON lines on stderr."""

from __future__ import annotations

import logging
import sys

from litestar import Litestar

from coalition import db
from coalition.settings import Settings
from partners.app import create_app

# Database drivers log statements with their arguments at DEBUG: never let them through.
QUIET_LOGGERS = ("aiosqlite", "asyncpg", "piccolo")


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def app() -> Litestar:
    configure_logging()
    settings = Settings.from_env()
    db.configure(settings.database_url)
    return create_app(settings)
