"""The Piccolo app that owns the partners schema (keys) and its migrations."""

import os

from piccolo.conf.apps import AppConfig

from partners import tables

CURRENT_DIRECTORY = os.path.dirname(os.path.abspath(__file__))

APP_CONFIG = AppConfig(
    app_name="partners",
    migrations_folder_path=os.path.join(CURRENT_DIRECTORY, "piccolo_migrations"),
    table_classes=tables.ALL_TABLES,
    migration_dependencies=["coalition.piccolo_app"],
    commands=[],
)
