"""Refuse to run on a database whose schema is behind the code's migrations."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app, render_template
from flask_migrate import Config

from klubpost.db import db

UPGRADE_COMMAND = "klubpost db upgrade"


class PendingMigrations(RuntimeError):
    """The database schema is older (or newer) than this code."""

    def __init__(self, current: str | None, head: str | None) -> None:
        super().__init__(
            f"The database is at revision {current or 'none (empty)'} but this "
            f"version of Klubpost needs {head}. Run `{UPGRADE_COMMAND}` first."
        )


def check_schema() -> None:
    """Raise PendingMigrations unless the database is at the latest revision."""
    from klubpost import MIGRATIONS_DIR

    script = ScriptDirectory.from_config(_alembic_config(MIGRATIONS_DIR))
    head = script.get_current_head()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise PendingMigrations(current, head)


def _alembic_config(directory: str) -> Config:
    config = Config()
    config.set_main_option("script_location", directory)
    return config


def require_current_schema():
    """before_request hook: a clear 503 page until migrations have been applied."""
    state = current_app.extensions.setdefault("klubpost_schema", {})
    if state.get("ok"):
        return None
    try:
        check_schema()
    except PendingMigrations as exc:
        return render_template("errors/schema.html", message=str(exc)), 503
    state["ok"] = True
    return None
