"""Events, newsletter templates and campaigns (drafts and, later, sent issues)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import Library, User
from klubpost.db import db, str_enum, utcnow
from subscribers.models import Club


class CampaignKind(enum.StrEnum):
    """What a newsletter is for; each kind has its own built-in layouts."""

    BEFORE_EVENT = "before_event"
    AFTER_EVENT = "after_event"
    REGULAR = "regular"


class CampaignStatus(enum.StrEnum):
    """Where a campaign stands. Only drafts can be edited."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


# The status changes a campaign may make (the sending engine drives all but the
# first steps; a draft is the only state in which content may change).
CAMPAIGN_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.SENDING}),
    CampaignStatus.SCHEDULED: frozenset(
        {CampaignStatus.DRAFT, CampaignStatus.SENDING, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.SENDING: frozenset(
        {CampaignStatus.PAUSED, CampaignStatus.SENT, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.PAUSED: frozenset(
        {CampaignStatus.SENDING, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.SENT: frozenset(),
    CampaignStatus.CANCELLED: frozenset(),
}


event_club = Table(
    "event_club",
    db.metadata,
    Column(
        "event_id",
        ForeignKey("event.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "club_id",
        ForeignKey("club.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class Event(db.Model):
    """Something happening at a library: a reading, a debate, a première."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_library_starts", "library_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Stored in UTC; entered and shown in the library's time zone.
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    venue: Mapped[str] = mapped_column(String(300), default="")
    image_url: Mapped[str | None] = mapped_column(String(2000))
    ticket_url: Mapped[str | None] = mapped_column(String(2000))
    # Added after the event: [{"label", "url", "tag"}] (slides, articles, books).
    materials: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    library: Mapped[Library] = relationship()
    clubs: Mapped[list[Club]] = relationship(
        secondary=event_club, order_by="Club.name", passive_deletes=True
    )


class Template(db.Model):
    """An MJML newsletter template of one library, or shared by a consortium."""

    __tablename__ = "newsletter_template"
    __table_args__ = (
        CheckConstraint(
            "(library_id IS NULL) <> (consortium_id IS NULL)", name="one_owner"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    consortium_id: Mapped[int | None] = mapped_column(
        ForeignKey("consortium.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[CampaignKind] = mapped_column(str_enum(CampaignKind, "campaign_kind"))
    language: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def shared(self) -> bool:
        """Whether this is a consortium's template (usable by every member)."""
        return self.consortium_id is not None


class Campaign(db.Model):
    """One newsletter of a club: a draft until the sending engine takes it."""

    __tablename__ = "campaign"
    __table_args__ = (
        CheckConstraint(
            "template_key IS NULL OR template_id IS NULL", name="one_template"
        ),
        Index("ix_campaign_club_status", "club_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    club_id: Mapped[int] = mapped_column(ForeignKey("club.id", ondelete="CASCADE"))
    kind: Mapped[CampaignKind] = mapped_column(str_enum(CampaignKind, "campaign_kind"))
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("event.id", ondelete="SET NULL"), index=True
    )
    subject: Mapped[str] = mapped_column(String(300), default="")
    preheader: Mapped[str] = mapped_column(String(300), default="")
    # A built-in template's key, or one of the library's / consortium's templates.
    template_key: Mapped[str | None] = mapped_column(String(100))
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletter_template.id", ondelete="SET NULL"), index=True
    )
    blocks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The "edit MJML" mode: the editor's own source replaces the template's.
    custom_mjml: Mapped[str | None] = mapped_column(Text)
    status: Mapped[CampaignStatus] = mapped_column(
        str_enum(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT
    )
    # Optimistic locking: every save bumps it; a save from an older version fails.
    version: Mapped[int] = mapped_column(default=1)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    updated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]

    __mapper_args__ = {"version_id_col": version}

    library: Mapped[Library] = relationship()
    club: Mapped[Club] = relationship()
    event: Mapped[Event | None] = relationship()
    template: Mapped[Template | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    updated_by: Mapped[User | None] = relationship(foreign_keys=[updated_by_id])
