"""What tracking keeps: the links of each sent campaign, raw hits, and aggregates.

- `TrackedLink`: every link of a campaign, stored when sending starts. Click
  tokens name one of these rows, never a URL, so a redirect can only go where the
  newsletter itself pointed. One hidden honeypot link per campaign catches the
  scanners that follow every link.
- `TrackEvent`: one raw open or click with its verdict (human or machine, and
  why). No IP address or user agent is stored. Raw events are kept for
  `TRACKING_RETENTION_DAYS` (13 months by default), then deleted.
- `TrackCount` and `CampaignStats`: the aggregates the statistics pages read. They
  are filled from raw events by the roll-up and outlive the retention clean-up.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from klubpost.db import NEVER_REUSE_IDS, db, str_enum, utcnow

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class TrackingMode(enum.StrEnum):
    """How much a club's newsletters track (on top of the consent rule)."""

    OFF = "off"  # plain links, no pixel
    ANONYMOUS = "anonymous"  # counts per link and campaign, nobody identified
    INDIVIDUAL = "individual"  # per member, so staff can see each one's engagement


class EventKind(enum.StrEnum):
    """What a hit was."""

    OPEN = "open"
    CLICK = "click"


class TrackedLink(db.Model):
    """One link of a sent campaign, in the order it appears in the newsletter."""

    __tablename__ = "tracked_link"
    __table_args__ = (UniqueConstraint("campaign_id", "position"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE")
    )
    # Place in the newsletter, from 1; the honeypot link has position 0.
    position: Mapped[int]
    url: Mapped[str] = mapped_column(String(2000))
    label: Mapped[str] = mapped_column(String(300), default="")
    tag: Mapped[str | None] = mapped_column(String(40))
    honeypot: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackEvent(db.Model):
    """One raw open or click. Deleted after the retention period.

    `send_id` is the member's `send_log` row (None when the club counts
    anonymously); `link_id` is None for opens. Neither has a foreign key: both
    rows only go away with their campaign, and this table is written on every hit.
    """

    __tablename__ = "track_event"
    __table_args__ = (
        Index("ix_track_event_send", "send_id", "occurred_at"),
        Index("ix_track_event_campaign", "campaign_id", "id"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE")
    )
    send_id: Mapped[int | None]
    link_id: Mapped[int | None]
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind, "track_event_kind"))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    human: Mapped[bool]
    # Why: "human", or the machine rule that matched (see tracking.machines).
    reason: Mapped[str] = mapped_column(String(32))


class TrackCount(db.Model):
    """Hits per campaign, link, hour and verdict: what charts and tables read.

    `link_id` 0 stands for opens (no link). `uniques` counts the hits that were
    the first of their member for that link (or first open) with that verdict
    (human or machine), so unique figures survive the clean-up of raw events.
    A hit without a member (anonymous clubs, withdrawn consent) counts as
    unique: there is nobody to tell apart. Filled by tracking.rollup.
    """

    __tablename__ = "track_count"
    __table_args__ = (
        UniqueConstraint("campaign_id", "link_id", "kind", "hour", "reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE")
    )
    link_id: Mapped[int] = mapped_column(default=0)
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind, "track_event_kind"))
    hour: Mapped[datetime]  # start of the UTC hour
    reason: Mapped[str] = mapped_column(String(32))  # "human" or a machine rule
    hits: Mapped[int] = mapped_column(default=0)
    uniques: Mapped[int] = mapped_column(default=0)


class CampaignStats(db.Model):
    """One campaign's headline figures, kept up to date by the roll-up.

    `recipients`: send-log rows (the audience when sending started);
    `delivered` / `failed` / `bounced`: rows with that status; `tracked`: sent
    or bounced rows whose copy was tracked; `unsubscribed`: recipients who left
    the club after this campaign started and before its next one started;
    opens and clicks: sums of `TrackCount` (reason "human" or any machine rule).
    """

    __tablename__ = "campaign_stats"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
    )
    recipients: Mapped[int] = mapped_column(default=0)
    delivered: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    bounced: Mapped[int] = mapped_column(default=0)
    unsubscribed: Mapped[int] = mapped_column(default=0)
    tracked: Mapped[int] = mapped_column(default=0)  # members sent tracked mail
    opens_human: Mapped[int] = mapped_column(default=0)
    opens_machine: Mapped[int] = mapped_column(default=0)
    unique_opens_human: Mapped[int] = mapped_column(default=0)
    unique_opens_machine: Mapped[int] = mapped_column(default=0)
    clicks_human: Mapped[int] = mapped_column(default=0)
    clicks_machine: Mapped[int] = mapped_column(default=0)
    unique_clicks_human: Mapped[int] = mapped_column(default=0)
    unique_clicks_machine: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RollupState(db.Model):
    """How far the roll-up has read the raw events (one row)."""

    __tablename__ = "track_rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_event_id: Mapped[int] = mapped_column(EventId, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
