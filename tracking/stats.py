"""Statistics for staff: what the pages, CSV files and API show.

Everything here reads the aggregates the roll-up keeps (`CampaignStats`,
`TrackCount`), so a page costs the same for a campaign of a hundred members as
for one of a million. Only a member's engagement looks at raw events (the tags
they clicked), through the member's own send log rows; raw events are deleted
after the retention period, so it only covers that period.

Rates (`None` where the denominator is 0, or where the club counts anonymously
and so has no unique figures):
- open rate = unique human opens / tracked members (only tracked copies can
  report an open);
- click-through = unique human clicks / delivered; the same over the tracked
  members only, which is what members who consented did;
- click-to-open = unique human clicks / unique human opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, SendLog, SendStatus
from subscribers.models import Club, Membership, Subscriber
from tracking.models import (
    CampaignStats,
    EventKind,
    TrackCount,
    TrackedLink,
    TrackEvent,
    TrackingMode,
)

HUMAN = "human"
HOURLY_SPAN = timedelta(hours=48)  # hourly buckets this long after sending starts
MAX_DAYS = 90  # daily buckets after that; later clicks share one last bucket
DEFAULT_TRENDS = 12
MAX_TRENDS = 100
PERIODS = (30, 90, 365, 0)  # days the interest view looks back; 0: all time

# The figures CampaignStats keeps, in the order tables and CSV files show them.
FIGURES = (
    "recipients",
    "delivered",
    "failed",
    "bounced",
    "unsubscribed",
    "tracked",
    "opens_human",
    "opens_machine",
    "unique_opens_human",
    "unique_opens_machine",
    "clicks_human",
    "clicks_machine",
    "unique_clicks_human",
    "unique_clicks_machine",
)
RATES = ("open_rate", "click_through", "click_through_tracked", "click_to_open")


def ratio(part: int, whole: int) -> float | None:
    """part / whole, or None when there is nothing to divide by."""
    return part / whole if whole else None


def campaign_rates(figures: dict[str, int], anonymous: bool) -> dict[str, float | None]:
    """The rates of the module docstring, by name, from a campaign's figures."""
    if anonymous:
        return dict.fromkeys(RATES)
    f = figures
    return {
        "open_rate": ratio(f["unique_opens_human"], f["tracked"]),
        "click_through": ratio(f["unique_clicks_human"], f["delivered"]),
        "click_through_tracked": ratio(f["unique_clicks_human"], f["tracked"]),
        "click_to_open": ratio(f["unique_clicks_human"], f["unique_opens_human"]),
    }


# ----------------------------------------------------------------- one campaign


@dataclass(frozen=True)
class CampaignSummary:
    """A campaign's headline figures and rates."""

    campaign_id: int
    subject: str
    started_at: datetime | None
    anonymous: bool  # the club counts without knowing who: no unique figures
    figures: dict[str, int]
    updated_at: datetime | None

    @property
    def rates(self) -> dict[str, float | None]:
        """The campaign's rates (see `campaign_rates`)."""
        return campaign_rates(self.figures, self.anonymous)


def _figures(stats: CampaignStats | None) -> dict[str, int]:
    return {name: getattr(stats, name) if stats else 0 for name in FIGURES}


def counts_anonymously(club: Club) -> bool:
    """Whether a club's figures have no per-member (unique) counts."""
    return club.tracking_mode == TrackingMode.ANONYMOUS


def campaign_summary(session: Session, campaign: Campaign) -> CampaignSummary:
    """The headline figures of one campaign (zeros before the first roll-up)."""
    stats = session.get(CampaignStats, campaign.id)
    return CampaignSummary(
        campaign_id=campaign.id,
        subject=campaign.subject,
        started_at=campaign.started_at,
        anonymous=counts_anonymously(campaign.club),
        figures=_figures(stats),
        updated_at=stats.updated_at if stats else None,
    )


@dataclass(frozen=True)
class LinkRow:
    """One link of a newsletter and its clicks."""

    link_id: int
    position: int
    label: str
    tag: str | None
    url: str
    clicks_human: int
    clicks_machine: int
    unique_clicks_human: int
    unique_clicks_machine: int


def link_table(session: Session, campaign_id: int) -> list[LinkRow]:
    """The campaign's links in newsletter order (never the honeypot)."""
    human = TrackCount.reason == HUMAN
    totals = (
        select(
            TrackCount.link_id,
            _sum_if(TrackCount.hits, human).label("clicks_human"),
            _sum_if(TrackCount.hits, ~human).label("clicks_machine"),
            _sum_if(TrackCount.uniques, human).label("unique_clicks_human"),
            _sum_if(TrackCount.uniques, ~human).label("unique_clicks_machine"),
        )
        .where(
            TrackCount.campaign_id == campaign_id,
            TrackCount.kind == EventKind.CLICK,
        )
        .group_by(TrackCount.link_id)
        .subquery()
    )
    rows = session.execute(
        select(
            TrackedLink,
            totals.c.clicks_human,
            totals.c.clicks_machine,
            totals.c.unique_clicks_human,
            totals.c.unique_clicks_machine,
        )
        .outerjoin(totals, totals.c.link_id == TrackedLink.id)
        .where(
            TrackedLink.campaign_id == campaign_id,
            TrackedLink.position > 0,
            TrackedLink.honeypot.is_(False),
        )
        .order_by(TrackedLink.position)
    ).all()
    return [
        LinkRow(
            link.id,
            link.position,
            link.label,
            link.tag,
            link.url,
            *(c or 0 for c in counts),
        )
        for link, *counts in rows
    ]


def _sum_if(column, condition):
    """SUM(column) over the rows meeting `condition` (0 when none do)."""
    return func.coalesce(func.sum(column).filter(condition), 0)


@dataclass(frozen=True)
class ReasonRow:
    """Hits of one verdict reason ("human" or a machine rule)."""

    reason: str
    opens: int
    clicks: int


def reason_table(session: Session, campaign_id: int) -> list[ReasonRow]:
    """Opens and clicks by verdict reason, people first, then the most frequent."""
    rows = session.execute(
        select(
            TrackCount.reason,
            _sum_if(TrackCount.hits, TrackCount.kind == EventKind.OPEN),
            _sum_if(TrackCount.hits, TrackCount.kind == EventKind.CLICK),
        )
        .where(TrackCount.campaign_id == campaign_id)
        .group_by(TrackCount.reason)
    ).all()
    result = [ReasonRow(reason, opens, clicks) for reason, opens, clicks in rows]
    return sorted(result, key=lambda r: (r.reason != HUMAN, -(r.opens + r.clicks)))


# ----------------------------------------------------------------- over time


@dataclass(frozen=True)
class Bucket:
    """Clicks in one stretch of time (an hour or a local day)."""

    start: datetime  # UTC
    label: str  # in the library's time zone
    tick: str  # a shorter label, for a chart's axis
    human: int = 0
    machine: int = 0


@dataclass(frozen=True)
class Timeline:
    """Clicks by hour for the first two days of sending, then by local day."""

    zone: str
    hourly: list[Bucket] = field(default_factory=list)
    daily: list[Bucket] = field(default_factory=list)

    @property
    def buckets(self) -> list[tuple[str, Bucket]]:
        """Every bucket with its size ("hour" or "day"), oldest first."""
        return [("hour", b) for b in self.hourly] + [("day", b) for b in self.daily]


def clicks_over_time(session: Session, campaign: Campaign, zone: str) -> Timeline:
    """The campaign's clicks in hourly, then daily buckets (see Timeline)."""
    if campaign.started_at is None:
        return Timeline(zone)
    tz = ZoneInfo(zone)
    start = campaign.started_at.replace(minute=0, second=0, microsecond=0)
    rows = session.execute(
        select(TrackCount.hour, TrackCount.reason, func.sum(TrackCount.hits))
        .where(
            TrackCount.campaign_id == campaign.id,
            TrackCount.kind == EventKind.CLICK,
        )
        .group_by(TrackCount.hour, TrackCount.reason)
    ).all()
    hours = [_hour_bucket(start + timedelta(hours=i), tz) for i in range(48)]
    hourly = {b.start: [0, 0] for b in hours}
    daily: dict[date, list[int]] = {}
    for hour, reason, hits in rows:
        slot = 0 if reason == HUMAN else 1
        if hour < start + HOURLY_SPAN:
            hourly[max(hour, start)][slot] += hits
        else:
            daily.setdefault(hour.astimezone(tz).date(), [0, 0])[slot] += hits
    return Timeline(
        zone=zone,
        hourly=[_with(b, *hourly[b.start]) for b in hours],
        daily=_daily_buckets(daily, start + HOURLY_SPAN, tz),
    )


def _hour_bucket(start: datetime, tz: ZoneInfo) -> Bucket:
    local = start.astimezone(tz)
    # The zone's abbreviation tells apart the two 02:00 hours of a DST change.
    return Bucket(
        start, local.strftime("%Y-%m-%d %H:%M %Z"), local.strftime("%m-%d %H:%M")
    )


def _with(bucket: Bucket, human: int, machine: int) -> Bucket:
    return Bucket(bucket.start, bucket.label, bucket.tick, human, machine)


def _daily_buckets(
    counts: dict[date, list[int]], since: datetime, tz: ZoneInfo
) -> list[Bucket]:
    """One bucket per local day from `since` to the last day with clicks.

    A local day has 23 or 25 hours on a DST change; it is still one bucket.
    After MAX_DAYS days, the rest go into one last bucket.
    """
    if not counts:
        return []
    first = since.astimezone(tz).date()
    last = max(counts)
    buckets = []
    for offset in range(min((last - first).days + 1, MAX_DAYS)):
        day = first + timedelta(days=offset)
        human, machine = counts.get(day, (0, 0))
        buckets.append(
            Bucket(_day_start(day, tz, since), str(day), f"{day:%m-%d}", human, machine)
        )
    later = [v for day, v in counts.items() if (day - first).days >= MAX_DAYS]
    if later:
        day = first + timedelta(days=MAX_DAYS)
        buckets.append(
            Bucket(
                _day_start(day, tz, since),
                f"{day}…{last}",
                f"{day:%m-%d}…",
                sum(v[0] for v in later),
                sum(v[1] for v in later),
            )
        )
    return buckets


def _day_start(day: date, tz: ZoneInfo, since: datetime) -> datetime:
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    return max(midnight.astimezone(since.tzinfo), since)


# ----------------------------------------------------------------- one club


@dataclass(frozen=True)
class TrendRow:
    """One sent campaign of a club, for the club's trends."""

    campaign_id: int
    subject: str
    started_at: datetime
    anonymous: bool
    figures: dict[str, int]

    @property
    def rates(self) -> dict[str, float | None]:
        """The campaign's rates (see `campaign_rates`)."""
        return campaign_rates(self.figures, self.anonymous)


def club_trends(
    session: Session, club: Club, limit: int = DEFAULT_TRENDS
) -> list[TrendRow]:
    """The club's newest `limit` campaigns that started sending, newest first."""
    rows = session.execute(
        select(Campaign.id, Campaign.subject, Campaign.started_at, CampaignStats)
        .outerjoin(CampaignStats, CampaignStats.campaign_id == Campaign.id)
        .where(Campaign.club_id == club.id, Campaign.started_at.is_not(None))
        .order_by(Campaign.started_at.desc(), Campaign.id.desc())
        .limit(limit)
    ).all()
    anonymous = counts_anonymously(club)
    return [
        TrendRow(cid, subject, started, anonymous, _figures(stats))
        for cid, subject, started, stats in rows
    ]


@dataclass(frozen=True)
class InterestRow:
    """People's clicks on the links of one tag in a club's newsletters."""

    tag: str | None  # None: links nobody tagged
    clicks: int
    unique_clicks: int  # first clicks per member and link, summed over links


def period_start(days: int, now: datetime) -> datetime | None:
    """The start of a look-back period of `days` days (None: all time)."""
    return now - timedelta(days=days) if days else None


def club_interests(
    session: Session, club: Club, since: datetime | None
) -> list[InterestRow]:
    """Human clicks by link tag in the club's newsletters since `since`, most first."""
    stmt = (
        select(TrackedLink.tag, func.sum(TrackCount.hits), func.sum(TrackCount.uniques))
        .join(TrackedLink, TrackedLink.id == TrackCount.link_id)
        .where(
            TrackCount.campaign_id.in_(_club_campaign_ids(club)),
            TrackCount.kind == EventKind.CLICK,
            TrackCount.reason == HUMAN,
            TrackedLink.honeypot.is_(False),
        )
        .group_by(TrackedLink.tag)
    )
    if since is not None:
        stmt = stmt.where(TrackCount.hour >= since)
    rows = [InterestRow(*row) for row in session.execute(stmt)]
    return sorted(rows, key=lambda r: (-r.clicks, r.tag or ""))


def _club_campaign_ids(club: Club) -> Select:
    return select(Campaign.id).where(
        Campaign.club_id == club.id, Campaign.started_at.is_not(None)
    )


# ----------------------------------------------------------------- one member


@dataclass(frozen=True)
class Engagement:
    """One member's engagement with one club's newsletters.

    `hidden` names why nothing personal is shown ("no_consent": the member did
    not consent to tracking in this club; "anonymous"/"off": the club does not
    track individuals); then every figure is None.
    """

    club_id: int
    club_name: str
    hidden: str | None = None
    received: int | None = None  # copies sent with tracking
    opened: int | None = None
    clicked: int | None = None
    last_activity: datetime | None = None
    tags: list[tuple[str | None, int]] = field(default_factory=list)


def hidden_reason(club: Club, membership: Membership) -> str | None:
    """Why a member's engagement in a club must not be shown, or None."""
    if club.tracking_mode == TrackingMode.OFF:
        return "off"
    if club.tracking_mode == TrackingMode.ANONYMOUS:
        return "anonymous"
    if not membership.tracking_consent:
        return "no_consent"
    return None


def member_engagement(session: Session, subscriber: Subscriber) -> list[Engagement]:
    """The member's engagement per club, by club name."""
    result = []
    for membership in sorted(subscriber.memberships, key=lambda m: m.club.name):
        club = membership.club
        reason = hidden_reason(club, membership)
        if reason is not None:
            result.append(Engagement(club.id, club.name, hidden=reason))
        else:
            result.append(_engagement(session, subscriber.id, club))
    return result


def _engagement(session: Session, subscriber_id: int, club: Club) -> Engagement:
    mine = (
        SendLog.subscriber_id == subscriber_id,
        SendLog.tracked.is_(True),
        SendLog.campaign_id.in_(_club_campaign_ids(club)),
    )
    received, opened, clicked, last_open, last_click = session.execute(
        select(
            func.count().filter(SendLog.status == SendStatus.SENT),
            func.count(SendLog.opened_at),
            func.count(SendLog.clicked_at),
            func.max(SendLog.opened_at),
            func.max(SendLog.clicked_at),
        ).where(*mine)
    ).one()
    tags = session.execute(
        select(TrackedLink.tag, func.count())
        .select_from(TrackEvent)
        .join(SendLog, SendLog.id == TrackEvent.send_id)
        .join(TrackedLink, TrackedLink.id == TrackEvent.link_id)
        .where(*mine, TrackEvent.kind == EventKind.CLICK, TrackEvent.human.is_(True))
        .group_by(TrackedLink.tag)
        .order_by(func.count().desc(), TrackedLink.tag)
    ).all()
    return Engagement(
        club_id=club.id,
        club_name=club.name,
        received=received,
        opened=opened,
        clicked=clicked,
        last_activity=_latest(last_open, last_click),
        tags=[(tag, count) for tag, count in tags],
    )


def _latest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
