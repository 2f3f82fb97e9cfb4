"""The Piccolo app that owns the coalition schema and its migrations."""

import os

from piccolo.conf.apps import AppConfig

from coalition import tables

CURRENT_DIRECTORY = os.path.dirname(os.path.abspath(__file__))

APP_CONFIG = AppConfig(
    app_name="coalition",
    migrations_folder_path=os.path.join(CURRENT_DIRECTORY, "piccolo_migrations"),
    table_classes=tables.ALL_TABLES,
    migration_dependencies=[],
    commands=[],
)
