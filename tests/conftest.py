"""Shared fixtures. The database URL is fixed before Piccolo looks for its engine."""

from __future__ import annotations

from coalition import db
from tests.databases import new_database_url

DATABASE_URL = new_database_url()
db.configure(DATABASE_URL)
