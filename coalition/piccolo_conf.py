"""Piccolo's configuration module: the engine comes from ``COALITION_DATABASE_URL``."""

import os

from piccolo.conf.apps import AppRegistry

from coalition.db import engine_from_url
from coalition.settings import Settings

DB = engine_from_url(os.environ.get("COALITION_DATABASE_URL", Settings().database_url))

# The composition root lists every package's schema; the packages themselves stay layered.
APP_REGISTRY = AppRegistry(
    apps=["coalition.piccolo_app", "partners.piccolo_app", "settlement.piccolo_app"]
)
