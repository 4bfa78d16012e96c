"""Clubs, subscribers, their memberships with consent records, and imports."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import Library, User
from klubpost.db import NEVER_REUSE_IDS, db, str_enum, utcnow
from tracking.models import TrackingMode

LANGUAGES = ("da", "nl", "en")


class Club(db.Model):
    """A member club of a library (VIP, family, debate...): one mailing list."""

    __tablename__ = "club"
    __table_args__ = (UniqueConstraint("library_id", "slug"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="da")
    from_name: Mapped[str] = mapped_column(String(200))
    from_email: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    double_opt_in: Mapped[bool] = mapped_column(default=True)
    tracking_consent_required: Mapped[bool] = mapped_column(default=True)
    # With consent required, only members who consented are tracked at all.
    tracking_mode: Mapped[TrackingMode] = mapped_column(
        str_enum(TrackingMode, "tracking_mode"), default=TrackingMode.INDIVIDUAL
    )
    # Whether the club's sent newsletters are listed on a public archive page.
    public_archive: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    library: Mapped[Library] = relationship()
    consent_texts: Mapped[list[ConsentText]] = relationship(
        back_populates="club",
        order_by="ConsentText.version",
        passive_deletes="all",  # the database cascades (see services.delete_club)
    )


class ConsentText(db.Model):
    """One version of the consent wording a club's subscribe form shows.

    Versions are never edited, only added, so a consent record can always show
    exactly what the person agreed to.
    """

    __tablename__ = "consent_text"
    __table_args__ = (UniqueConstraint("club_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    club_id: Mapped[int] = mapped_column(ForeignKey("club.id", ondelete="CASCADE"))
    version: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    tracking_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    club: Mapped[Club] = relationship(back_populates="consent_texts")


class Subscriber(db.Model):
    """A person known to a library, unique per library by e-mail address."""

    __tablename__ = "subscriber"
    __table_args__ = (UniqueConstraint("library_id", "email_key"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: uniqueness and look-ups ignore case. Compared byte
    # for byte on PostgreSQL too (collation "C", as SQLite does): the key is
    # only matched, never sorted for people, and its unique index is then
    # about half as costly to search and to insert into (bulk imports).
    email_key: Mapped[str] = mapped_column(
        String(320).with_variant(String(320, collation="C"), "postgresql")
    )
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(8), default="da")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    library: Mapped[Library] = relationship()
    memberships: Mapped[list[Membership]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def name(self) -> str:
        """The full name, as it would be written on an envelope."""
        return f"{self.first_name} {self.last_name}".strip()


class MembershipStatus(enum.StrEnum):
    """Where a subscriber stands with one club."""

    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


# The only status changes a membership may make. Leaving "unsubscribed" or
# "bounced" needs the person's fresh consent: back to unconfirmed, and a new
# confirmation mail (services.reinvite). Staff cannot vouch for someone who
# withdrew; only the person's own sign-up renews such a membership directly.
MEMBERSHIP_TRANSITIONS: dict[MembershipStatus, frozenset[MembershipStatus]] = {
    MembershipStatus.UNCONFIRMED: frozenset(
        {MembershipStatus.CONFIRMED, MembershipStatus.UNSUBSCRIBED}
    ),
    MembershipStatus.CONFIRMED: frozenset(
        {MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED}
    ),
    MembershipStatus.UNSUBSCRIBED: frozenset({MembershipStatus.UNCONFIRMED}),
    MembershipStatus.BOUNCED: frozenset({MembershipStatus.UNCONFIRMED}),
}

# Memberships the person left (or whose address failed): see above.
WITHDRAWN = frozenset({MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED})


class Membership(db.Model):
    """A subscriber's membership of a club, with the record of their consent."""

    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "club_id"),
        Index("ix_membership_club_status", "club_id", "status", "id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE")
    )
    club_id: Mapped[int] = mapped_column(ForeignKey("club.id", ondelete="CASCADE"))
    status: Mapped[MembershipStatus] = mapped_column(
        str_enum(MembershipStatus, "membership_status"),
        default=MembershipStatus.UNCONFIRMED,
    )
    tracking_consent: Mapped[bool] = mapped_column(default=False)
    # The consent record.
    consent_source: Mapped[str] = mapped_column(String(64))
    # NO ACTION (checked at the end of the statement): a consent text goes only
    # together with its club, and the club's memberships go in the same cascade.
    consent_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_text.id"))
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    ip_truncated: Mapped[str | None] = mapped_column(String(64))
    import_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("import_job.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="memberships")
    club: Mapped[Club] = relationship()
    consent_text: Mapped[ConsentText | None] = relationship()

    @property
    def library_id(self) -> int:
        """The library that owns this membership (through its club)."""
        return self.club.library_id


class Suppression(db.Model):
    """What is left of an erased person: a hash of the address, so no re-import."""

    __tablename__ = "suppression"
    __table_args__ = (UniqueConstraint("library_id", "email_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE")
    )
    email_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32), default="erased")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportStatus(enum.StrEnum):
    """The life of a CSV import."""

    UPLOADED = "uploaded"  # waiting for the column mapping
    QUEUED = "queued"  # mapped; the worker will pick it up
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ImportJob(db.Model):
    """A CSV import into a club, processed in checkpointed chunks.

    A runner holds a lease (`lease_owner` until `lease_expires_at`), renewed with
    every batch; a job whose runner died is taken over once the lease runs out
    and continues from `processed_rows` (`resumptions` counts the take-overs).
    """

    __tablename__ = "import_job"
    __table_args__ = (Index("ix_import_job_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    club_id: Mapped[int] = mapped_column(
        ForeignKey("club.id", ondelete="CASCADE"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    status: Mapped[ImportStatus] = mapped_column(
        str_enum(ImportStatus, "import_status"), default=ImportStatus.UPLOADED
    )
    filename: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    encoding: Mapped[str] = mapped_column(String(32), default="utf-8")
    delimiter: Mapped[str] = mapped_column(String(1), default=",")
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    consent_given: Mapped[bool] = mapped_column(default=False)
    total_rows: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    resumptions: Mapped[int] = mapped_column(default=0, server_default="0")

    club: Mapped[Club] = relationship()
    created_by: Mapped[User | None] = relationship()

    @property
    def library_id(self) -> int:
        """The library that owns this job (through its club)."""
        return self.club.library_id


class ImportIssue(db.Model):
    """One row of an import that was not added as a new member, and why."""

    __tablename__ = "import_issue"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("import_job.id", ondelete="CASCADE"), index=True
    )
    row_number: Mapped[int]
    email: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(500))
