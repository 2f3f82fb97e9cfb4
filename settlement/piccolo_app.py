"""The Piccolo app that owns the settlement schema and its migrations."""

import os

from piccolo.conf.apps import AppConfig

from settlement import tables

CURRENT_DIRECTORY = os.path.dirname(os.path.abspath(__file__))

APP_CONFIG = AppConfig(
    app_name="settlement",
    migrations_folder_path=os.path.join(CURRENT_DIRECTORY, "piccolo_migrations"),
    table_classes=tables.ALL_TABLES,
    migration_dependencies=["partners.piccolo_app"],
    commands=[],
)
