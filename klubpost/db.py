"""The database: one SQLAlchemy instance, the declarative base and shared types."""

from __future__ import annotations

import enum
import sqlite3
from datetime import UTC, datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, DateTime, Engine, MetaData, String, TypeDecorator, event
from sqlalchemy.orm import DeclarativeBase, registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database
MAX_PAGE = 1_000_000  # a page number beyond any list (a larger OFFSET is an error)


def as_id(value: Any) -> int | None:
    """`value` as a row id (an int or a string of digits, 1 to MAX_ID), else None.

    A number too large for the database would be a driver error (a 500 on
    SQLite) rather than a miss, so it never reaches a query.
    """
    if type(value) is str and value.isascii() and value.isdigit() and len(value) < 12:
        value = int(value)
    if type(value) is int and 0 < value <= MAX_ID:
        return value
    return None


def get_by_id(session: Any, model: type, value: Any) -> Any:
    """The row of `model` with this id, or None (also for anything no id)."""
    object_id = as_id(value)
    return None if object_id is None else session.get(model, object_id)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    SQLite has no time zones and hands back naive values; we store UTC there and
    reattach the zone on the way out, so no code ever sees a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with aware datetimes, JSON dicts and named constraints."""

    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={
            datetime: UTCDateTime(),
            dict[str, Any]: JSON(),
            list[str]: JSON(),
            str: String(),
        },
    )


db = SQLAlchemy(model_class=Base)

# Table options of every table whose ids go into signed links, which never
# expire: SQLite otherwise gives a new row the id of the newest deleted one,
# and an erased person's old link would open someone else's data. PostgreSQL
# sequences never go back. Migration 0014 made the existing tables so.
NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite leaves foreign keys (and so ON DELETE CASCADE) off unless asked.

    WAL lets the web app read while the scheduler writes.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def str_enum(enum_cls: type[enum.StrEnum], name: str) -> Any:
    """A VARCHAR column type limited to an enum's values by a CHECK constraint."""
    from sqlalchemy import Enum

    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )
