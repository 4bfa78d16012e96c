"""Consortia, libraries, staff users and their API tokens."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from klubpost.db import db, str_enum, utcnow


class Role(enum.StrEnum):
    """What a user may do; each role includes the ones below it."""

    STAFF = "staff"  # reads clubs, subscribers and statistics
    EDITOR = "editor"  # manages subscribers; composes and sends
    ADMIN = "admin"  # manages the library's users and clubs
    CONSORTIUM_ADMIN = "consortium_admin"  # admin of every library in a consortium


ROLE_RANK = {Role.STAFF: 1, Role.EDITOR: 2, Role.ADMIN: 3, Role.CONSORTIUM_ADMIN: 4}


class Consortium(db.Model):
    """A group of libraries that share templates and may share an administrator."""

    __tablename__ = "consortium"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    libraries: Mapped[list[Library]] = relationship(back_populates="consortium")


class Library(db.Model):
    """A public library: the tenant. Everything else belongs to exactly one."""

    __tablename__ = "library"

    id: Mapped[int] = mapped_column(primary_key=True)
    consortium_id: Mapped[int | None] = mapped_column(
        ForeignKey("consortium.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    # Used for List-Id and as the fallback sending domain.
    domain: Mapped[str] = mapped_column(String(253))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Copenhagen")
    language: Mapped[str] = mapped_column(String(8), default="da")
    # Whether consent records keep the (truncated) IP address of the form.
    record_ip: Mapped[bool] = mapped_column(default=False)
    # Branding of the newsletters (colours are validated #rrggbb values).
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    primary_color: Mapped[str] = mapped_column(String(7), default="#1f4e79")
    accent_color: Mapped[str] = mapped_column(String(7), default="#c8102e")
    # DKIM signing (campaigns/dkim.py): d=, s= and the encrypted private key.
    dkim_domain: Mapped[str | None] = mapped_column(String(253))
    dkim_selector: Mapped[str | None] = mapped_column(String(63))
    dkim_private_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    consortium: Mapped[Consortium | None] = relationship(back_populates="libraries")


class User(UserMixin, db.Model):
    """A member of a library's staff (or a consortium's administrator)."""

    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint(
            "(role = 'consortium_admin' AND consortium_id IS NOT NULL)"
            " OR (role <> 'consortium_admin' AND library_id IS NOT NULL)",
            name="belongs_somewhere",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    consortium_id: Mapped[int | None] = mapped_column(
        ForeignKey("consortium.id", ondelete="CASCADE"), index=True
    )
    language: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    library: Mapped[Library | None] = relationship()
    consortium: Mapped[Consortium | None] = relationship()

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def has_role(self, role: Role) -> bool:
        """Whether this user's role includes `role`."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class ApiToken(db.Model):
    """A personal API token. Only its SHA-256 is stored; it can be revoked."""

    __tablename__ = "api_token"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()
