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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import Library, User
from klubpost.db import NEVER_REUSE_IDS, db, str_enum, utcnow
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


class ScheduleMode(enum.StrEnum):
    """How a campaign's sending time is chosen."""

    NOW = "now"
    FIXED = "fixed"  # at a date and time in the library's time zone
    BEFORE_EVENT = "before_event"  # offset_minutes before the event starts
    AFTER_EVENT = "after_event"  # offset_minutes after the event ends


class Repeat(enum.StrEnum):
    """How a regular issue repeats, counted from its own sending time (local)."""

    WEEKLY = "weekly"
    FORTNIGHTLY = "fortnightly"
    MONTHLY_WEEKDAY = "monthly_weekday"  # e.g. the first Tuesday of the month
    MONTHLY_LAST_WEEKDAY = "monthly_last_weekday"  # e.g. the last Friday
    MONTHLY_DAY = "monthly_day"  # e.g. the 15th (a short month's last day)


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
    __table_args__ = (
        Index("ix_event_library_starts", "library_id", "starts_at"),
        NEVER_REUSE_IDS,
    )

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
        NEVER_REUSE_IDS,
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
    # Scheduling (see campaigns/sending.py): when it is due, and how that was
    # chosen; relative schedules follow their event when it moves.
    schedule_mode: Mapped[ScheduleMode | None] = mapped_column(
        str_enum(ScheduleMode, "schedule_mode")
    )
    offset_minutes: Mapped[int] = mapped_column(default=0)
    send_at: Mapped[datetime | None] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # The audience (campaigns/sending.py): the members confirmed at
    # `audience_fixed_at` (`audience_size` of them), written down in chunks by
    # membership id while the first mails go out; `audience_after` is the last
    # membership id written so far, None once all are.
    audience_fixed_at: Mapped[datetime | None]
    audience_size: Mapped[int | None]
    audience_after: Mapped[int | None]
    # A repeating regular issue: when it starts sending, its next issue is made
    # as a draft (proposed for the next date) that an editor approves.
    repeat: Mapped[Repeat | None] = mapped_column(str_enum(Repeat, "campaign_repeat"))
    previous_issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="SET NULL"), unique=True
    )

    __mapper_args__ = {"version_id_col": version}

    library: Mapped[Library] = relationship()
    club: Mapped[Club] = relationship()
    event: Mapped[Event | None] = relationship()
    template: Mapped[Template | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    updated_by: Mapped[User | None] = relationship(foreign_keys=[updated_by_id])
    previous_issue: Mapped[Campaign | None] = relationship(
        remote_side=[id], foreign_keys=[previous_issue_id]
    )


class SendStatus(enum.StrEnum):
    """Where one member's copy of a campaign stands."""

    QUEUED = "queued"  # waiting (or claimed by a sender, see claimed_until)
    SENT = "sent"  # the SMTP server accepted it
    FAILED = "failed"  # refused for good, or too many temporary failures
    BOUNCED = "bounced"  # accepted, then bounced back (a DSN arrived)
    SKIPPED = "skipped"  # the member left the club before their turn came


class SendLog(db.Model):
    """One member's copy of one campaign: sent exactly once, and what happened."""

    __tablename__ = "send_log"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id"),
        Index("ix_send_log_work", "campaign_id", "status", "id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE")
    )
    # Erasing a member keeps the row (for the campaign's figures) without them.
    # Indexed: erasing a member or deleting a club updates these rows by them.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    membership_id: Mapped[int | None] = mapped_column(
        ForeignKey("membership.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[SendStatus] = mapped_column(
        str_enum(SendStatus, "send_status"), default=SendStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # Indexed: a complaint report names the copy only by its Message-ID.
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # A sender's lease on the row; an expired lease means the sender died.
    claimed_until: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # Whether this copy carried tracked links and a pixel (consent and the
    # club's tracking mode decide), and the member's first human open and click.
    tracked: Mapped[bool] = mapped_column(default=False)
    opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]


class BounceKind(enum.StrEnum):
    """What a bounce or complaint says about one copy (see campaigns/bounces.py)."""

    HARD = "hard"  # the address is gone: the member is bounced at once
    SOFT = "soft"  # a temporary failure: bounced after BOUNCE_SOFT_LIMIT of them
    POLICY = "policy"  # refused for the sender's reasons: staff are told
    COMPLAINT = "complaint"  # marked as spam: the member is unsubscribed


class BounceReport(db.Model):
    """A processed bounce or complaint report, so the same one never acts twice."""

    __tablename__ = "bounce_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the report's Message-ID (or of its bytes when it has none).
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class BounceEvent(db.Model):
    """One failed or complaining address of a report, and what was done about it."""

    __tablename__ = "bounce_event"
    __table_args__ = (
        Index("ix_bounce_event_membership", "membership_id", "kind", "created_at"),
        Index("ix_bounce_event_campaign", "campaign_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("bounce_report.id", ondelete="CASCADE"), index=True
    )
    # Null when no copy of ours could be found for it (nobody is touched then).
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE")
    )
    send_log_id: Mapped[int | None] = mapped_column(
        ForeignKey("send_log.id", ondelete="SET NULL"), index=True
    )
    # Erasing the person erases their bounces too (the diagnostic names them).
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    membership_id: Mapped[int | None] = mapped_column(
        ForeignKey("membership.id", ondelete="SET NULL")
    )
    kind: Mapped[BounceKind] = mapped_column(str_enum(BounceKind, "bounce_kind"))
    email: Mapped[str] = mapped_column(String(320), default="")
    status: Mapped[str] = mapped_column(String(16), default="")
    diagnostic: Mapped[str] = mapped_column(String(500), default="")
    # What it did: bounced, unsubscribed, counted, reported, unmatched...
    action: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def reason(self) -> str:
        """The status code and the server's words, as staff read them."""
        if self.status and self.status not in self.diagnostic:
            return f"{self.status} {self.diagnostic}".strip()
        return self.diagnostic or self.status
