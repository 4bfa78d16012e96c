"""How a campaign is sent: its schedule, its audience, and exactly one mail each.

1. **Schedule.** `schedule()` sets when a draft is due: now, at a fixed time, or
   relative to its event (N minutes before it starts / after it ends), in the
   library's time zone. Moving the event moves its scheduled campaigns
   (`follow_event`). A regular issue may repeat (weekly, fortnightly, monthly on
   a weekday or a day): when it starts, its next issue is made as a draft
   proposed for the next date, which an editor approves (`plan_next_issue`).
2. **Start.** The scheduler process calls `start_due()`: a due campaign's audience
   is fixed in one statement that writes a `SendLog` row per confirmed member. The
   row is unique per (campaign, subscriber): nobody can be queued twice, and
   people who join later are not mixed in.
3. **Send.** Senders (`send_batches`, any number of threads, processes or
   machines) claim batches of queued rows: on PostgreSQL with `FOR UPDATE SKIP
   LOCKED`, the rows staying locked in the batch's transaction until their
   results are written (each row is written once); on SQLite with a lease
   (`claimed_until`). Two senders never claim the same row. Rows whose member
   left the club meanwhile are skipped. Each batch is sent over a reused SMTP
   connection and its results are committed together.
4. **Results.** 2xx: sent. 4xx: tried again later with back-off. 5xx: failed; a
   permanent refusal of the address (5.1.x, 5.2.1...) marks the member bounced,
   a 5.7.x policy refusal is the sender's problem and is only recorded. A server
   that is down (or goes away) releases the batch without counting an attempt,
   so the campaign waits and resumes, and never drops mail.

**Exactly once.** A row is marked sent only after the server accepted its mail,
in the same transaction as the rest of its batch. If a sender is killed (even
with SIGKILL), the rows it had claimed are sent again: on PostgreSQL as soon as
its connection is gone, on SQLite when their lease expires. So after a crash
every member has received exactly one mail,
except the messages in flight at the kill: at most one batch
(`SEND_BATCH_SIZE`, 100 by default) per SMTP connection (`SEND_CONNECTIONS`) of
each killed sender process can be delivered twice. (`klubpost send` forks
`SEND_PROCESSES` sender processes, which die with it.)
Nothing is ever lost. A sender that is alive never sends past half of its
lease (`SEND_LEASE_SECONDS`): what the rate limit or a slow server holds back
longer goes back to the queue unsent, so no other sender can claim a row that is
still being sent.
"""

from __future__ import annotations

import calendar
import copy
import ctypes
import ctypes.util
import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, current_app
from flask_babel import gettext as _
from sqlalchemy import (
    Integer,
    Select,
    String,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from campaigns import compose, dkim
from campaigns.bounces import classify
from campaigns.messages import MessageFrame, build_message
from campaigns.models import (
    CAMPAIGN_TRANSITIONS,
    BounceKind,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Event,
    Repeat,
    ScheduleMode,
    SendLog,
    SendStatus,
)
from campaigns.rendering import CompiledNewsletter, Recipient
from campaigns.smtp import Envelope, Result, SmtpConnection, SmtpError
from klubpost.db import db, utcnow
from klubpost.links import external_url
from klubpost.mail import OutboxTransport, SmtpTransport, transport_from_url
from klubpost.security import id_token_maker
from subscribers.models import Club, Membership, MembershipStatus, Subscriber
from tracking import mail as tracking_mail

log = logging.getLogger("klubpost.sending")

MAX_ATTEMPTS = 6
PACE_CHUNK = 25  # messages let through the rate limit at a time
ZERO = timedelta(0)
DOWN_PAUSE = timedelta(seconds=30)  # how long to wait for a server that is down


def lease() -> timedelta:
    """How long a sender may hold claimed rows before others take them over."""
    return timedelta(seconds=current_app.config["SEND_LEASE_SECONDS"])


class SendingError(Exception):
    """A campaign can't be scheduled or changed like that; the message says why."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# ------------------------------------------------------------------ states


def change_status(campaign: Campaign, new: CampaignStatus) -> None:
    """Move the campaign to `new` if the transition table allows it."""
    if new not in CAMPAIGN_TRANSITIONS[campaign.status]:
        raise SendingError(
            _(
                "A campaign that is %(old)s can't become %(new)s.",
                old=campaign.status.value,
                new=new.value,
            ),
            "status",
        )
    campaign.status = new


def unschedule(campaign: Campaign) -> None:
    """Take a scheduled campaign back to a draft (it can be edited again)."""
    change_status(campaign, CampaignStatus.DRAFT)
    campaign.schedule_mode = None
    campaign.send_at = None


def pause(campaign: Campaign) -> None:
    """Stop handing out new batches; the batches in flight finish."""
    change_status(campaign, CampaignStatus.PAUSED)


def resume(campaign: Campaign) -> None:
    """Go on sending a paused campaign where it stopped."""
    change_status(campaign, CampaignStatus.SENDING)


def cancel(session: Session, campaign: Campaign) -> None:
    """Stop for good: whatever was not sent yet is skipped."""
    change_status(campaign, CampaignStatus.CANCELLED)
    campaign.audience_after = None  # nobody more is written down
    session.execute(
        update(SendLog)
        .where(SendLog.campaign_id == campaign.id, SendLog.status == SendStatus.QUEUED)
        .values(status=SendStatus.SKIPPED, last_error="campaign cancelled")
    )


# ------------------------------------------------------------------ schedule


def due_time(campaign: Campaign, now: datetime) -> datetime:
    """When the campaign should go out, from its schedule mode (UTC)."""
    mode, offset = campaign.schedule_mode, timedelta(minutes=campaign.offset_minutes)
    if mode is ScheduleMode.NOW:
        return now
    if mode is ScheduleMode.FIXED:
        if campaign.send_at is None:
            raise SendingError(_("Choose the date and time to send."), "send_at")
        return campaign.send_at
    event = campaign.event
    if event is None:
        raise SendingError(
            _("A schedule relative to an event needs an event."), "event"
        )
    if mode is ScheduleMode.BEFORE_EVENT:
        return event.starts_at - offset
    return (event.ends_at or event.starts_at) + offset


def schedule(
    campaign: Campaign,
    mode: ScheduleMode,
    *,
    send_at: datetime | None = None,
    offset_minutes: int = 0,
    repeat: Repeat | None = None,
    now: datetime | None = None,
) -> datetime:
    """Schedule a draft (or move a scheduled campaign); returns the due time."""
    now = now or utcnow()
    if repeat and campaign.kind is not CampaignKind.REGULAR:
        raise SendingError(_("Only regular issues can repeat."), "repeat")
    if repeat and mode not in (ScheduleMode.NOW, ScheduleMode.FIXED):
        raise SendingError(
            _("A repeating issue is sent now or at a fixed time."), "repeat"
        )
    campaign.repeat = repeat
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        raise SendingError(_("Only drafts and scheduled campaigns can be scheduled."))
    if not campaign.subject.strip():
        raise SendingError(
            _("The newsletter needs a subject before it is sent."), "subject"
        )
    if not 0 <= offset_minutes <= 60 * 24 * 90:
        raise SendingError(_("The offset must be between 0 and 90 days."), "offset")
    campaign.schedule_mode = mode
    campaign.offset_minutes = offset_minutes
    if mode is ScheduleMode.FIXED:
        campaign.send_at = send_at
    due = due_time(campaign, now)
    if mode is not ScheduleMode.NOW and due < now - timedelta(minutes=1):
        raise SendingError(_("That time has already passed."), "send_at")
    campaign.send_at = due
    if campaign.status is CampaignStatus.DRAFT:
        change_status(campaign, CampaignStatus.SCHEDULED)
    return due


def follow_event(session: Session, event: Event, now: datetime | None = None) -> int:
    """Move the scheduled campaigns that are timed relative to `event`."""
    now = now or utcnow()
    moved = 0
    for campaign in session.scalars(
        select(Campaign).where(
            Campaign.event_id == event.id,
            Campaign.status == CampaignStatus.SCHEDULED,
            Campaign.schedule_mode.in_(
                [ScheduleMode.BEFORE_EVENT, ScheduleMode.AFTER_EVENT]
            ),
        )
    ):
        campaign.send_at = due_time(campaign, now)
        moved += 1
    return moved


# ------------------------------------------------------------------ repeat


def next_occurrence(
    repeat: Repeat, after: datetime, zone: str, anchor_day: int | None = None
) -> datetime:
    """The next sending time of a repeating issue: same wall-clock time, in UTC.

    `anchor_day` is the series' day of the month for MONTHLY_DAY, so that an
    issue moved to the 28th of February goes back to the 31st in March.
    """
    tz = ZoneInfo(zone)
    local = after.astimezone(tz)
    day = local.date()
    if repeat in (Repeat.WEEKLY, Repeat.FORTNIGHTLY):
        target = day + timedelta(weeks=1 if repeat is Repeat.WEEKLY else 2)
    else:
        year, month = (day.year, day.month + 1) if day.month < 12 else (day.year + 1, 1)
        last = calendar.monthrange(year, month)[1]
        if repeat is Repeat.MONTHLY_DAY:
            target = date(year, month, min(anchor_day or day.day, last))
        else:
            first = (local.weekday() - date(year, month, 1).weekday()) % 7 + 1
            week = (day.day - 1) // 7  # 0 = the first such weekday of the month
            if repeat is Repeat.MONTHLY_LAST_WEEKDAY or first + 7 * week > last:
                week = (last - first) // 7
            target = date(year, month, first + 7 * week)
    wall = datetime.combine(target, local.time().replace(tzinfo=None))
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def plan_next_issue(session: Session, campaign: Campaign) -> Campaign | None:
    """Make the next issue of a repeating campaign as a draft (once)."""
    if campaign.repeat is None or campaign.send_at is None:
        return None
    existing = session.scalar(
        select(Campaign).where(Campaign.previous_issue_id == campaign.id)
    )
    if existing is not None:
        return existing
    previous = campaign.previous_issue
    zone = campaign.library.timezone
    anchor = max(
        campaign.send_at.astimezone(ZoneInfo(zone)).day,
        previous.send_at.astimezone(ZoneInfo(zone)).day
        if previous is not None and previous.send_at and previous.repeat
        else 0,
    )
    issue = Campaign(
        library_id=campaign.library_id,
        club_id=campaign.club_id,
        kind=campaign.kind,
        subject=campaign.subject,
        preheader=campaign.preheader,
        template_key=campaign.template_key,
        template_id=campaign.template_id,
        blocks=copy.deepcopy(campaign.blocks),
        custom_mjml=campaign.custom_mjml,
        created_by_id=campaign.updated_by_id or campaign.created_by_id,
        repeat=campaign.repeat,
        previous_issue_id=campaign.id,
        send_at=next_occurrence(campaign.repeat, campaign.send_at, zone, anchor),
    )
    session.add(issue)
    return issue


# ------------------------------------------------------------------ start


def start_due(session: Session, now: datetime | None = None) -> list[int]:
    """Start every scheduled campaign that is due; commits each. Returns their ids."""
    now = now or utcnow()
    started = []
    query = (
        select(Campaign)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.send_at <= now)
        .order_by(Campaign.send_at)
        .with_for_update(skip_locked=True)
    )
    for campaign in session.scalars(query).all():
        try:
            with session.begin_nested():  # one campaign's failure is its own
                start(session, campaign, now)
        except Exception:
            log.exception(
                "campaign %s could not start; it is a draft again", campaign.id
            )
            change_status(campaign, CampaignStatus.DRAFT)
            continue
        started.append(campaign.id)
    session.commit()
    return started


def start(
    session: Session,
    campaign: Campaign,
    now: datetime | None = None,
    *,
    whole: bool = False,
) -> int:
    """Fix the audience and start sending; returns the audience's size.

    The audience is the club's members confirmed now. Its first chunk of
    queued rows (`SEND_AUDIENCE_CHUNK`) is written here, the rest by the
    senders while the first mails go out (`fill_audience`): a big club's
    campaign starts at once, and the scheduler is not held up. With `whole`,
    all of it is written here.

    Also keeps the links that clicks will be counted on, and marks whose copy is
    tracked (see tracking.mail).
    """
    change_status(campaign, CampaignStatus.SENDING)
    campaign.started_at = now or utcnow()
    plan_next_issue(session, campaign)
    _store_tracked_links(session, campaign)
    # The clock's time, also where `now` is another (a campaign started as of
    # an earlier time in the demo): members are confirmed by that clock.
    campaign.audience_fixed_at = utcnow()
    members = _audience(campaign.id, campaign.club, campaign.audience_fixed_at)
    campaign.audience_size = session.scalar(
        select(func.count()).select_from(members.subquery())
    )
    if whole:
        rows, campaign.audience_after = members, None
    else:
        rows, campaign.audience_after = _next_chunk(
            session, campaign.id, campaign.club, campaign.audience_fixed_at, 0, _chunk()
        )
    _write(session, rows)
    return campaign.audience_size


def _chunk() -> int:
    return max(1, current_app.config["SEND_AUDIENCE_CHUNK"])


def _audience(campaign_id: int, club: Club, fixed_at: datetime) -> Select:
    """A queued row's columns for each member in the campaign's audience: the
    club's confirmed members, as they were at `fixed_at`. People who
    confirm later (or renew their consent later) are not mixed in; people
    who leave before their chunk is written are left out."""
    return select(
        literal(campaign_id, Integer).label("campaign_id"),
        Membership.subscriber_id,
        Membership.id,
        tracking_mail.tracked_column(club),
    ).where(
        Membership.club_id == club.id,
        Membership.status == MembershipStatus.CONFIRMED,
        or_(Membership.confirmed_at.is_(None), Membership.confirmed_at <= fixed_at),
    )


def _next_chunk(
    session: Session,
    campaign_id: int,
    club: Club,
    fixed_at: datetime,
    after: int,
    size: int,
) -> tuple[Select, int | None]:
    """The rows of up to `size` more members of the audience (membership ids
    above `after`), and the last id among them, or None if that completes
    the audience."""
    members = _audience(campaign_id, club, fixed_at).where(Membership.id > after)
    ids = (
        members.with_only_columns(Membership.id)
        .order_by(Membership.id)
        .limit(size)
        .subquery()
    )
    count, last = session.execute(select(func.count(), func.max(ids.c.id))).one()
    rows = members.where(Membership.id <= (last or after))
    return rows, last if count == size else None


def _write(session: Session, rows: Select) -> None:
    session.execute(
        insert(SendLog).from_select(
            ["campaign_id", "subscriber_id", "membership_id", "tracked"], rows
        )
    )


def fill_audience(session: Session, campaign_id: int) -> bool:
    """Write the next chunk of a sending campaign's audience, unless it is
    complete or another sender is writing one. Commits; True if it wrote.

    On PostgreSQL the campaign's row is locked meanwhile (others skip it);
    everywhere, the chunk is taken by moving `audience_after` on from the
    value it was read with, so no chunk is written twice.
    """
    table = Campaign.__table__
    row = session.execute(
        select(table.c.club_id, table.c.audience_fixed_at, table.c.audience_after)
        .where(
            table.c.id == campaign_id,
            table.c.status == CampaignStatus.SENDING,
            table.c.audience_after.is_not(None),
        )
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        session.commit()
        return False
    club = session.get(Club, row.club_id)
    rows, last = _next_chunk(
        session, campaign_id, club, row.audience_fixed_at, row.audience_after, _chunk()
    )
    # Taking the chunk first: where there are no row locks (SQLite), a sender
    # that read the same `audience_after` finds it moved on and writes nothing.
    taken = session.execute(
        table.update()
        .where(table.c.id == campaign_id, table.c.audience_after == row.audience_after)
        .values(audience_after=last)
    ).rowcount
    if taken:
        _write(session, rows)
        session.commit()
    else:
        session.rollback()
    return bool(taken)


def _store_tracked_links(session: Session, campaign: Campaign) -> None:
    from campaigns.rendering import RenderError

    try:
        newsletter, _warnings = compose.compile_draft(
            session, campaign, compose.draft_of(campaign)
        )
    except RenderError:
        return  # nothing can be sent; prepare() reports the error
    tracking_mail.store_links(session, campaign.id, campaign.club, newsletter)


# ------------------------------------------------------------------ progress


@dataclass
class Progress:
    """How far a campaign's sending has come."""

    total: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    queued: int
    rate_per_s: float | None
    expected_end: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        data = dict(self.__dict__)
        data["expected_end"] = (
            self.expected_end.isoformat() if self.expected_end else None
        )
        return data


# Counting a big campaign's rows is work for the database (about 0.1 s per
# 100,000 rows while they are being written). While a campaign sends, a count
# that took that long is reused for REUSE_FACTOR times as long as it took (at
# most REUSE_MAX_SECONDS), so that watching it (the progress bar of `klubpost
# send`, the campaign page asking every 2 s) costs the database about 1/20 of a
# core at most, per process, and a small campaign is always counted afresh.
REUSE_MIN_SECONDS = 0.02
REUSE_FACTOR = 20
REUSE_MAX_SECONDS = 30.0
_counted: dict[int, tuple[float, datetime, dict[SendStatus, int]]] = {}


def _status_counts(
    session: Session, campaign: Campaign, now: datetime
) -> tuple[datetime, dict[SendStatus, int]]:
    """The campaign's rows per status, and when they were counted."""
    sending = campaign.status is CampaignStatus.SENDING
    reused = _counted.get(campaign.id) if sending else None
    if reused is not None and reused[0] > time.monotonic():
        return reused[1], reused[2]
    started = time.monotonic()
    counts = dict(
        session.execute(
            select(SendLog.status, func.count())
            .where(SendLog.campaign_id == campaign.id)
            .group_by(SendLog.status)
        ).all()
    )
    took = time.monotonic() - started
    if sending and took >= REUSE_MIN_SECONDS:
        until = started + took + min(REUSE_FACTOR * took, REUSE_MAX_SECONDS)
        _counted[campaign.id] = (until, now, counts)
    else:
        _counted.pop(campaign.id, None)
    return now, counts


def progress(
    session: Session, campaign: Campaign, now: datetime | None = None
) -> Progress:
    """Counts per status, the rate so far and when it should be done.

    While a big campaign sends, the counts may be a few seconds old (see
    REUSE_FACTOR); the rate and the expected end are those of that moment.
    """
    now, counts = _status_counts(session, campaign, now or utcnow())
    done = sum(counts.get(s, 0) for s in (SendStatus.SENT, SendStatus.FAILED))
    queued = counts.get(SendStatus.QUEUED, 0)
    total = sum(counts.values())
    if campaign.audience_after is not None and campaign.audience_size:
        unwritten = max(campaign.audience_size - total, 0)  # queued, too
        total, queued = total + unwritten, queued + unwritten
    rate = None
    end = None
    if campaign.started_at and done:
        # A finished send is measured up to its end, not up to now.
        until = campaign.sent_at if not queued and campaign.sent_at else now
        elapsed = max((until - campaign.started_at).total_seconds(), 0.001)
        rate = done / elapsed
        end = until + timedelta(seconds=queued / rate) if queued else until
    return Progress(
        total=total,
        sent=counts.get(SendStatus.SENT, 0),
        failed=counts.get(SendStatus.FAILED, 0),
        bounced=counts.get(SendStatus.BOUNCED, 0),
        skipped=counts.get(SendStatus.SKIPPED, 0),
        queued=queued,
        rate_per_s=rate,
        expected_end=end,
    )


# ------------------------------------------------------------------ sending


@dataclass
class Prepared:
    """A campaign made ready to send: rendered once, with what every mail shares."""

    campaign_id: int
    club_id: int
    library_id: int
    frame: MessageFrame
    newsletter: CompiledNewsletter
    web_url: str
    links: MemberLinks
    tracking: tracking_mail.MailTracking | None = None


@dataclass
class Claimed:
    """One claimed row with what its mail needs."""

    send_id: int
    subscriber_id: int
    email: str
    first_name: str
    last_name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    tracked: bool = False


def holds_rows(session: Session) -> bool:
    """Whether a sender keeps its batch's rows locked until their results are
    written (PostgreSQL: `FOR UPDATE SKIP LOCKED` in the batch's transaction),
    so that each row is written once, when it is sent. SQLite has no row locks:
    there a batch is claimed with a lease (`claimed_until`) and committed."""
    return session.get_bind().dialect.name == "postgresql"


def claim_batch(
    session: Session, campaign_id: int, size: int, now: datetime, after: int = 0
) -> tuple[list[Claimed], int]:
    """Take up to `size` due rows (with ids above `after`, in id order); rows
    whose member left are skipped. Returns the claimed rows and how many were
    skipped.

    On PostgreSQL the rows stay locked in the open transaction, which
    `record_results` (or `release`) commits; a sender that dies lets go of them
    at once. Elsewhere they are leased and the claim is committed.

    Written against the tables, not the ORM classes: the rows are never loaded
    as objects, and the ORM's bookkeeping for a bulk UPDATE (looking for the
    rows in the session to refresh them) was a good part of the CPU a batch
    cost the sender.
    """
    log = SendLog.__table__
    due = (
        log.c.campaign_id == campaign_id,
        log.c.status == SendStatus.QUEUED,
        log.c.id > after,
        or_(log.c.claimed_until.is_(None), log.c.claimed_until < now),
        or_(log.c.next_attempt_at.is_(None), log.c.next_attempt_at <= now),
    )
    member, subscriber = Membership.__table__.c, Subscriber.__table__
    columns = select(
        log.c.id,
        subscriber.c.id,
        subscriber.c.email,
        subscriber.c.first_name,
        subscriber.c.last_name,
        subscriber.c.attributes,
        member.status,
        log.c.tracked,
    ).select_from(
        log.join(subscriber, subscriber.c.id == log.c.subscriber_id, isouter=True).join(
            Membership.__table__, member.id == log.c.membership_id, isouter=True
        )
    )
    held = holds_rows(session)
    if held:
        # One statement: the rows, locked, with what their mails need.
        rows = session.execute(
            columns.where(*due)
            .order_by(log.c.id)
            .limit(size)
            .with_for_update(skip_locked=True, of=log)
        ).all()
    else:
        next_ids = select(log.c.id).where(*due).order_by(log.c.id).limit(size)
        ids = session.scalars(
            log.update()
            .where(log.c.id.in_(next_ids.scalar_subquery()))
            .values(claimed_until=now + lease(), attempts=log.c.attempts + 1)
            .returning(log.c.id)
        ).all()
        rows = []
        if ids:
            rows = session.execute(
                columns.where(log.c.id.in_(ids)).order_by(log.c.id)
            ).all()
    if not rows:
        session.commit()
        return [], 0
    claimed, gone = [], []
    for send_id, sub_id, email, first, last, attrs, status, tracked in rows:
        if sub_id is None or status is not MembershipStatus.CONFIRMED:
            gone.append(send_id)  # unsubscribed, bounced or erased meanwhile
        else:
            claimed.append(
                Claimed(send_id, sub_id, email, first, last, attrs or {}, tracked)
            )
    if gone:
        session.execute(
            log.update()
            .where(log.c.id.in_(gone))
            .values(status=SendStatus.SKIPPED, claimed_until=None)
        )
    if not held or not claimed:
        session.commit()
    return claimed, len(gone)


def _is_bad_address(result: Result) -> bool:
    """A permanent refusal that blames the address (5.1.x, 5.2.1), not policy."""
    return classify(None, result.code, result.text) is BounceKind.HARD


def record_results(
    session: Session,
    results: list[tuple[Claimed, Result, str]],
    now: datetime,
    *,
    commit: bool = True,
) -> None:
    """Write a batch's outcomes (sent / retry / failed) in one transaction.

    Commits, unless `commit` is false: then the caller's next commit does
    (on SQLite a sender commits them with its next claim, one commit a batch
    instead of two: each commit waits for the disk, and SQLite lets one writer
    commit at a time). Where the claim held the rows locked instead of counting
    an attempt (`holds_rows`), the attempt is counted here.
    """
    counted = holds_rows(session)
    sent, retry, failed, bounced_members = [], [], [], []
    for row, result, message_id in results:
        if result.accepted:
            sent.append({"i": row.send_id, "m": message_id})
        elif result.permanent:
            failed.append({"i": row.send_id, "e": f"{result.code} {result.text}"[:500]})
            if _is_bad_address(result):
                bounced_members.append(row.send_id)
        else:
            retry.append({"i": row.send_id, "e": f"{result.code} {result.text}"[:500]})
    table = SendLog.__table__
    if sent and session.get_bind().dialect.name == "postgresql":
        session.execute(
            _mark_sent_arrays(counted),
            {
                "now": now,
                "ids": [item["i"] for item in sent],
                "message_ids": [item["m"] for item in sent],
            },
        )
        sent = []
    for start in range(0, len(sent), _MARK_SENT_MAX):
        chunk = sent[start : start + _MARK_SENT_MAX]
        params: dict[str, Any] = {"now": now}
        for n, item in enumerate(chunk):
            params[f"i{n}"], params[f"m{n}"] = item["i"], item["m"]
        session.execute(_mark_sent(len(chunk), counted), params)
    if failed:
        session.execute(
            table.update()
            .where(table.c.id == bindparam("i"))
            .values(
                status=SendStatus.FAILED,
                last_error=bindparam("e"),
                claimed_until=None,
                attempts=table.c.attempts + int(counted),
            ),
            failed,
        )
    for item in retry:
        _retry_later(session, item["i"], item["e"], now, counted)
    if bounced_members:
        member_ids = select(SendLog.membership_id).where(
            SendLog.id.in_(bounced_members)
        )
        session.execute(
            update(Membership)
            .where(Membership.id.in_(member_ids))
            .values(status=MembershipStatus.BOUNCED)
        )
    if commit:
        session.commit()


_MARK_SENT_MAX = 500  # rows per statement (two parameters each)
_MARK_SENT: dict[tuple[int, bool], Update] = {}


def _mark_sent(count: int, counted: bool) -> Update:
    """The UPDATE that marks `count` rows sent, each with its own Message-ID.

    SQLite (PostgreSQL: `_mark_sent_arrays`). One statement, each row written
    once (its Message-ID by a CASE on its id), rather than an executemany's
    statement per row. Made once per row count: building the CASE of a hundred rows
    anew for every batch cost more than running it. Parameters: `now`, and
    `i0`, `m0`... each row's id and Message-ID. `counted`: the attempt is
    counted here (see `holds_rows`).
    """
    statement = _MARK_SENT.get((count, counted))
    if statement is None:
        table = SendLog.__table__
        ids = [bindparam(f"i{n}", type_=table.c.id.type) for n in range(count)]
        message_ids = [
            bindparam(f"m{n}", type_=table.c.message_id.type) for n in range(count)
        ]
        statement = _MARK_SENT[count, counted] = (
            table.update()
            .where(table.c.id.in_(ids))
            .values(
                status=SendStatus.SENT,
                message_id=case(
                    *[
                        (table.c.id == i, m)
                        for i, m in zip(ids, message_ids, strict=True)
                    ]
                ),
                sent_at=bindparam("now", type_=table.c.sent_at.type),
                claimed_until=None,
                attempts=table.c.attempts + int(counted),
            )
        )
    return statement


@functools.cache
def _mark_sent_arrays(counted: bool) -> Update:
    """PostgreSQL: the UPDATE that marks rows sent, the ids and Message-IDs
    passed as two arrays (`ids`, `message_ids`; and `now`). A short text with
    three parameters, whatever the batch's size: the driver parses a long
    statement's text again on every execution (it caches short ones only),
    which for the CASE of `_mark_sent` cost the sender more CPU than the
    database spent running it."""
    table = SendLog.__table__
    rows = (
        func.unnest(
            bindparam("ids", type_=postgresql.ARRAY(Integer)),
            bindparam("message_ids", type_=postgresql.ARRAY(String)),
        )
        .table_valued("i", "m")
        .render_derived(name="v")
    )
    return (
        table.update()
        .where(table.c.id == rows.c.i)
        .values(
            status=SendStatus.SENT,
            message_id=rows.c.m,
            sent_at=bindparam("now", type_=table.c.sent_at.type),
            claimed_until=None,
            attempts=table.c.attempts + int(counted),
        )
    )


def _retry_later(
    session: Session, send_id: int, error: str, now: datetime, counted: bool
) -> None:
    row = session.get(SendLog, send_id)
    assert row is not None
    if counted:
        row.attempts += 1
    row.last_error = error
    row.claimed_until = None
    if row.attempts >= MAX_ATTEMPTS:
        row.status = SendStatus.FAILED
    else:
        row.next_attempt_at = now + timedelta(minutes=2 ** (row.attempts - 1))


def release(
    session: Session,
    rows: list[Claimed],
    now: datetime,
    error: str,
    pause: timedelta = DOWN_PAUSE,
) -> None:
    """Give rows back unsent, due again after `pause` (default: the server was
    unreachable): no attempt is counted. Commits."""
    if rows:
        uncounted = 0 if holds_rows(session) else 1  # the lease counted one
        session.execute(
            update(SendLog)
            .where(SendLog.id.in_([row.send_id for row in rows]))
            .values(
                claimed_until=None,
                attempts=SendLog.attempts - uncounted,
                next_attempt_at=now + pause,
                last_error=error[:500],
            )
        )
    session.commit()


def finish_if_done(session: Session, campaign_id: int, now: datetime) -> bool:
    """Mark a sending campaign sent once its audience is written and no row
    is queued any more. Commits."""
    left = session.scalar(
        select(func.count())
        .select_from(SendLog)
        .where(SendLog.campaign_id == campaign_id, SendLog.status == SendStatus.QUEUED)
    )
    done = False
    if not left:
        done = bool(
            session.execute(
                update(Campaign)
                .where(
                    Campaign.id == campaign_id,
                    Campaign.status == CampaignStatus.SENDING,
                    Campaign.audience_after.is_(None),
                )
                .values(status=CampaignStatus.SENT, sent_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
        )
    session.commit()
    return done


def sending_campaign_ids(session: Session) -> list[int]:
    """The campaigns senders should work on now."""
    return list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status == CampaignStatus.SENDING)
            .order_by(Campaign.started_at, Campaign.id)
        )
    )


def sending_campaigns(session: Session) -> list[tuple[int, bool]]:
    """The campaigns senders should work on now, and for each whether its
    audience is still being written."""
    rows = session.execute(
        select(Campaign.id, Campaign.audience_after.is_not(None))
        .where(Campaign.status == CampaignStatus.SENDING)
        .order_by(Campaign.started_at, Campaign.id)
    )
    return [(campaign_id, bool(filling)) for campaign_id, filling in rows]


class RateLimit:
    """At most `per_second` and `per_hour` messages, shared by a sender's threads."""

    def __init__(self, per_second: float | None, per_hour: float | None) -> None:
        self.per_second, self.per_hour = per_second, per_hour
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self._hour: list[float] = []

    def delay(self, count: int) -> float:
        """Seconds until `count` more messages may go (nothing reserved)."""
        if not self.per_second and not self.per_hour:
            return 0.0
        with self._lock:
            now = time.monotonic()
            delay = max(self._next, now) - now if self.per_second else 0.0
            hour = [t for t in self._hour if t > now - 3600]
            if self.per_hour and len(hour) + count > self.per_hour:
                delay = max(delay, hour[0] + 3600 - now)
            return delay

    def wait(self, count: int, deadline: float | None = None) -> bool:
        """Block until `count` more messages may go; True when they may.

        False, at once and reserving nothing, if that would be after
        `deadline` (a `time.monotonic()` value).
        """
        if not self.per_second and not self.per_hour:
            return True
        with self._lock:
            now = time.monotonic()
            delay = 0.0
            if self.per_second:
                delay = max(self._next, now) - now
            if self.per_hour:
                self._hour = [t for t in self._hour if t > now - 3600]
                if len(self._hour) + count > self.per_hour:
                    delay = max(delay, self._hour[0] + 3600 - now)
            if deadline is not None and now + delay > deadline:
                return False
            if self.per_second:
                self._next = max(self._next, now) + count / self.per_second
            if self.per_hour:
                self._hour.extend([now + delay] * count)
        if delay > 0:
            time.sleep(delay)
        return True


# ------------------------------------------------------------------ messages


class MemberLinks:
    """Each member's signed links, built from one URL pattern per kind of link."""

    def __init__(self, club_id: int) -> None:
        self.club_id = club_id
        marker = "KLUBPOST-TOKEN"
        # Each URL around its token, and the token makers resolved once: they
        # are used twice a mail.
        self._unsubscribe = external_url("public.unsubscribe", token=marker).split(
            marker, 1
        )
        self._preferences = external_url("public.preferences", token=marker).split(
            marker, 1
        )
        self._unsubscribe_tokens = id_token_maker("unsubscribe")
        self._manage_tokens = id_token_maker("manage")

    def unsubscribe(self, subscriber_id: int) -> str:
        """The member's one-click unsubscribe URL for this club."""
        token = self._unsubscribe_tokens.dumps_ids(subscriber_id, self.club_id)
        return self._unsubscribe[0] + token + self._unsubscribe[1]

    def preferences(self, subscriber_id: int) -> str:
        """The member's preferences page."""
        token = self._manage_tokens.dumps_ids(subscriber_id)
        return self._preferences[0] + token + self._preferences[1]


def prepare(session: Session, campaign: Campaign) -> Prepared:
    """Render the campaign once and encode what all its mails share."""
    club, library = campaign.club, campaign.library
    newsletter, _warnings = compose.compile_draft(
        session, campaign, compose.draft_of(campaign)
    )
    domain = current_app.config["MAIL_FROM_DOMAIN"]
    frame = MessageFrame(
        from_name=club.from_name,
        from_email=club.from_email,
        reply_to=club.reply_to,
        subject=campaign.subject,
        list_id=f"{club.name} <{club.slug}.{library.slug}.{library.domain}>",
        message_id_domain=library.domain or domain,
        bounce_domain=current_app.config.get("BOUNCE_DOMAIN") or domain,
        verp_secret=current_app.config["SECRET_KEY"].encode(),
        dkim=dkim.signer_for(library),
    )
    return Prepared(
        campaign_id=campaign.id,
        club_id=club.id,
        library_id=library.id,
        frame=frame,
        newsletter=newsletter,
        web_url=compose.web_url(campaign),
        links=MemberLinks(club.id),
        tracking=tracking_mail.mail_tracking(session, campaign.id, club, newsletter),
    )


def envelope_for(prepared: Prepared, row: Claimed) -> tuple[Envelope, str]:
    """The finished mail of one member, and its Message-ID."""
    unsubscribe = prepared.links.unsubscribe(row.subscriber_id)
    link_urls, tracking_html = None, ""
    if prepared.tracking is not None:
        link_urls, tracking_html = prepared.tracking.for_member(
            row.send_id, row.tracked
        )
    html, text = prepared.newsletter.encoded(
        Recipient(
            first_name=row.first_name,
            email=row.email,
            unsubscribe_url=unsubscribe,
            preferences_url=prepared.links.preferences(row.subscriber_id),
            web_url=prepared.web_url,
            extra=row.attributes,
        ),
        link_urls=link_urls,
        tracking_html=tracking_html,
    )
    name = f"{row.first_name} {row.last_name}".strip()
    built = build_message(
        prepared.frame,
        send_id=row.send_id,
        to_email=row.email,
        to_name=name or None,
        html=html,
        text=text,
        unsubscribe_url=unsubscribe,
    )
    return Envelope(
        row.send_id, built.envelope_from, row.email, built.data
    ), built.message_id


# ------------------------------------------------------------------ the sender


class Sender:
    """One sending process: a thread per SMTP connection, each with its own session.

    Any number of these may run at once (on PostgreSQL also on several machines):
    the database hands each batch to exactly one of them.
    """

    def __init__(
        self,
        app: Flask,
        *,
        connections: int | None = None,
        batch_size: int | None = None,
        stop: threading.Event | None = None,
        rate_share: int = 1,
        idle_wait: float = 0.5,
    ) -> None:
        config = app.config
        # How long a thread with nothing to do waits before it looks again.
        self.idle_wait = idle_wait
        self.app = app
        self.connections = connections or config["SEND_CONNECTIONS"]
        self.batch_size = batch_size or config["SEND_BATCH_SIZE"]
        # Several processes of one machine split its rate limit between them.
        per_second = config.get("SEND_RATE_PER_SECOND")
        per_hour = config.get("SEND_RATE_PER_HOUR")
        self.rate = RateLimit(
            per_second / rate_share if per_second else None,
            per_hour / rate_share if per_hour else None,
        )
        self.stop = stop or threading.Event()
        self.sent = 0
        self.errors: list[Exception] = []
        self._count_lock = threading.Lock()
        # Per campaign, the highest row id this sender has claimed: the next
        # claim looks ahead of it (see `_claim`).
        self._cursors: dict[int, int] = {}

    def run(self, *, wait_for: Callable[[], bool] | None = None) -> int:
        """Send until there is nothing to do now (or until `wait_for()` is true).

        Returns how many mails the server accepted.
        """
        threads = [
            threading.Thread(target=self._work, args=(wait_for,), daemon=True)
            for _ in range(self.connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]
        return self.sent

    def _work(self, wait_for: Callable[[], bool] | None) -> None:
        try:
            self._loop(wait_for)
        except Exception as exc:  # a thread's failure must reach whoever runs us
            log.exception("sender thread failed")
            self.errors.append(exc)
            self.stop.set()

    def _loop(self, wait_for: Callable[[], bool] | None) -> None:
        with self.app.app_context():
            session = db.session
            channel = _Channel(self.app.config["MAIL_URL"], session)
            prepared: dict[int, Prepared] = {}
            try:
                while not self.stop.is_set():
                    if self._round(session, channel, prepared):
                        continue
                    if wait_for is None or wait_for():
                        break
                    self.stop.wait(self.idle_wait)
            except BaseException:
                # What the server accepted before the failure stays recorded.
                _commit_if_possible(session)
                raise
            else:
                session.commit()  # the last batch's results
            finally:
                channel.close()
                db.session.remove()

    def _round(self, session: Session, channel: _Channel, prepared: dict) -> bool:
        """One batch of one campaign; False if no campaign had due work.

        The previous batch's results are committed here, with the next claim
        (or before waiting, when there is nothing to claim).
        """
        pause = self.rate.delay(min(PACE_CHUNK, self.batch_size))
        if pause > 0:  # claim nothing while the rate limit holds mails back
            session.commit()
            self.stop.wait(min(pause, lease().total_seconds() / 4))
            return not self.stop.is_set()
        for campaign_id, filling in sending_campaigns(session):
            if filling:
                fill_audience(session, campaign_id)
            # Sending stops well before the lease runs out: after it, another
            # sender (or another thread of this one) may claim the same rows.
            deadline = time.monotonic() + lease().total_seconds() / 2
            rows, skipped = self._claim(session, campaign_id)
            if not rows:
                if skipped:
                    return True  # members who left meanwhile: go on
                finish_if_done(session, campaign_id, utcnow())
                continue
            if campaign_id not in prepared:
                campaign = session.get(Campaign, campaign_id)
                prepared[campaign_id] = prepare(session, campaign)
            self._send(session, channel, prepared[campaign_id], rows, deadline)
            return True
        session.commit()
        return False

    def _claim(self, session: Session, campaign_id: int) -> tuple[list[Claimed], int]:
        """Claim the next batch: first ahead of the rows this sender claimed
        last, then (when nothing is left ahead) from the start, for rows that
        were given back or are due for another attempt.

        Looking ahead keeps a claim cheap: from the start, the database would
        step over the index entries of every row sent so far (on PostgreSQL,
        old row versions stay in the index until a vacuum), which made a
        claim cost more as the campaign went on.
        """
        after = self._cursors.get(campaign_id, 0)
        rows, skipped = claim_batch(
            session, campaign_id, self.batch_size, utcnow(), after=after
        )
        if not rows and not skipped and after:
            rows, skipped = claim_batch(session, campaign_id, self.batch_size, utcnow())
        if rows:
            with self._count_lock:
                last = max(self._cursors.get(campaign_id, 0), rows[-1].send_id)
                self._cursors[campaign_id] = last
        return rows, skipped

    def _send(
        self,
        session: Session,
        channel: _Channel,
        prepared: Prepared,
        rows: list[Claimed],
        deadline: float,
    ) -> None:
        messages = {}
        envelopes = []
        for row in rows:
            envelope, message_id = envelope_for(prepared, row)
            envelopes.append(envelope)
            messages[row.send_id] = (row, message_id)
        results: list[tuple[Claimed, Result, str]] = []
        error = None
        try:
            paced = self._paced(envelopes, deadline)
            for result in channel.send_many(paced, prepared.library_id):
                row, message_id = messages.pop(result.key)
                results.append((row, result, message_id))
        except SmtpError as exc:
            error = str(exc)
        now = utcnow()
        # Committed at once: on PostgreSQL the rows' locks go with it, and on
        # SQLite a write transaction held on into the next claim would keep
        # the other sender threads waiting (measured: a fifth slower). If the
        # rest goes back unsent, `release` commits.
        record_results(session, results, now, commit=not messages)
        with self._count_lock:
            self.sent += sum(1 for _r, result, _m in results if result.accepted)
        if messages:
            # Unsent rows go back to the queue: the server broke off (it is
            # given a pause), or the rate limit held them past the lease.
            unsent = [row for row, _m in messages.values()]
            if error is not None:
                release(session, unsent, now, error)
                self.stop.wait(min(DOWN_PAUSE.total_seconds(), 5))
            else:
                release(session, unsent, now, "held back by the rate limit", ZERO)

    def _paced(self, envelopes: list[Envelope], deadline: float) -> Iterator[Envelope]:
        """The envelopes, as the rate limit lets them go, and none after
        `deadline` (the rest stays unsent and goes back to the queue)."""
        for start in range(0, len(envelopes), PACE_CHUNK):
            chunk = envelopes[start : start + PACE_CHUNK]
            if not self.rate.wait(len(chunk), deadline):
                return
            if time.monotonic() > deadline:
                return
            yield from chunk


def _commit_if_possible(session: Session) -> None:
    """Commit the recorded results while a sender thread fails for another
    reason; if the transaction itself failed, nothing more can be done (its
    rows are sent again when their lease runs out)."""
    try:
        session.commit()
    except Exception:
        log.exception("a sender's last results could not be committed")
        session.rollback()


def run_processes(
    app: Flask,
    processes: int,
    *,
    connections: int | None = None,
    wait_for: Callable[[], bool] | None = None,
    idle_wait: float = 0.5,
) -> list[multiprocessing.Process]:
    """Fork `processes` - 1 more sender processes; returns them.

    Python runs one thread at a time per process, and building mails is CPU
    work: one process per core is what makes a machine send fast. The caller
    is the first of them (`klubpost send` runs a `Sender` itself). The children
    die with their parent (even a SIGKILL'd one), so "a sender was killed"
    means all of it, and the exactly-once bound counts every process's batches.
    """
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(
            target=_sender_process,
            args=(app, connections, processes, wait_for, idle_wait),
            name=f"klubpost-sender-{n}",
        )
        for n in range(1, processes)
    ]
    for child in children:
        child.start()
    return children


def _sender_process(
    app: Flask,
    connections: int | None,
    share: int,
    wait_for: Callable[[], bool] | None,
    idle_wait: float,
) -> None:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)  # the parent died before we could ask to follow it
    with app.app_context():
        # The parent's pooled connections must not be shared: forget them.
        db.engine.dispose(close=False)
    sender = Sender(app, connections=connections, rate_share=share, idle_wait=idle_wait)
    sender.run(wait_for=wait_for)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (elsewhere: no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Channel:
    """Where a sender thread's mail goes: an SMTP connection, or the dev outbox."""

    def __init__(self, mail_url: str, session: Session) -> None:
        transport = transport_from_url(mail_url, session)
        self.outbox = transport if isinstance(transport, OutboxTransport) else None
        self.smtp = None
        if isinstance(transport, SmtpTransport):
            self.smtp = SmtpConnection(
                transport.host,
                transport.port,
                implicit_tls=transport.implicit_tls,
                starttls=transport.starttls,
                username=transport.username,
                password=transport.password,
            )

    def send_many(self, envelopes: list[Envelope], library_id: int):
        """Hand the mails over; yield a Result for each."""
        if self.smtp is not None:
            yield from self.smtp.send_many(envelopes)
            return
        assert self.outbox is not None
        self.outbox.library_id = library_id  # the library's staff read them
        for envelope in envelopes:
            self.outbox.send(envelope.sender, [envelope.recipient], envelope.data)
            yield Result(envelope.key, 250, "kept in the outbox")

    def close(self) -> None:
        """Close the SMTP connection, if any."""
        if self.smtp is not None:
            self.smtp.close()
