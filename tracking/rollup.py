"""From raw hits to the figures staff read, and the clean-up of old raw hits.

`roll_up(session, now)` reads the raw events past its watermark, in id order,
and stops at the first one younger than `SETTLE` (so every hit within the rule
windows around an event is committed before the event is judged, and a slow
worker's late flush is not skipped). Hits could still be skipped in one rare
case: old hits, retried after a database outage, committed while a younger batch
with lower ids is not yet committed, at the moment the roll-up runs. For each
event it:

1. adds the verdicts that need the message's other hits (the hit-time verdict
   already covers HEAD, user agents and Apple's network): a click of the
   honeypot link makes every hit of that message within `HONEYPOT_WINDOW`
   machine; three different links of one message clicked within two seconds
   are a scanner burst; a hit within five seconds of our server handing the
   message over is too soon to be a person;
2. forgets the member (sets `send_id` to None) if they have withdrawn their
   tracking consent, been erased, or the club no longer tracks individually;
3. counts it in `TrackCount` (hits, and uniques: the first hit of the member on
   that link, or first open, with that verdict; a hit without a member counts
   as unique, there is no one to tell apart);
4. sets the member's `SendLog.opened_at` / `clicked_at` from human hits.

Then `CampaignStats` is recomputed for the campaigns that had hits, for those
sending or sent in the last `RECENT` days (their delivery, bounce and
unsubscribe figures still move) when their figures are a minute old, and for
those sent in the last `LATE` days when they are an hour old. Its unique clicks
are members (a member who clicked two links counts once), so rates stay rates.

`purge_events(session, now)` deletes raw events older than
`TRACKING_RETENTION_DAYS` in batches, only once they are rolled up: counts,
uniques and the first-open/click times stay. (A member's click on a link more
than the retention period after their first one counts as unique again.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Row, and_, bindparam, case, delete, func, or_, select
from sqlalchemy.orm import Session

from campaigns.models import Campaign, CampaignStatus, SendLog, SendStatus
from klubpost.db import utcnow
from subscribers.models import Club, Membership, MembershipStatus
from tracking import machines
from tracking.models import (
    CampaignStats,
    EventKind,
    RollupState,
    TrackCount,
    TrackEvent,
    TrackingMode,
)

SETTLE = timedelta(seconds=15)
HONEYPOT_WINDOW = timedelta(seconds=10)
BATCH = 5000
CHUNK = 500  # ids per IN (...) list
RECENT = timedelta(days=2)
STATS_REFRESH = timedelta(seconds=60)
LATE = timedelta(days=30)
LATE_REFRESH = timedelta(hours=1)
PURGE_BATCH = 10_000
PURGE_BATCHES_PER_RUN = 20
HONEYPOT = "honeypot_link"


@dataclass
class _Event:
    id: int
    campaign_id: int
    send_id: int | None
    link_id: int | None
    kind: EventKind
    occurred_at: datetime
    human: bool
    reason: str


@dataclass
class _Send:
    sent_at: datetime | None
    may_track: bool  # the member may still be named in the raw hits


# ------------------------------------------------------------------ roll-up


def roll_up(session: Session, now: datetime | None = None) -> int:
    """Roll the settled raw events up into the aggregates; commits. Returns how many."""
    now = now or utcnow()
    cutoff = now - SETTLE
    done, campaigns = 0, set()
    while True:
        state = _state(session)
        batch = [
            _Event(*row)
            for row in session.execute(
                select(*_EVENT_COLUMNS)
                .where(TrackEvent.id > state.last_event_id)
                .order_by(TrackEvent.id)
                .limit(BATCH)
            )
        ]
        settled = _settled(batch, cutoff)
        if settled:
            campaigns |= _process(session, settled, state.last_event_id)
            state.last_event_id = settled[-1].id
            state.updated_at = now
            done += len(settled)
        session.commit()
        if len(settled) < BATCH:
            break
    refresh_stats(session, campaigns, now)
    session.commit()
    return done


_EVENT_COLUMNS = (
    TrackEvent.id,
    TrackEvent.campaign_id,
    TrackEvent.send_id,
    TrackEvent.link_id,
    TrackEvent.kind,
    TrackEvent.occurred_at,
    TrackEvent.human,
    TrackEvent.reason,
)


def _state(session: Session) -> RollupState:
    """The watermark row, locked on PostgreSQL so two roll-ups never overlap."""
    state = session.scalar(
        select(RollupState)
        .order_by(RollupState.id)
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if state is None:
        state = RollupState(id=1, last_event_id=0)
        session.add(state)
        session.flush()
    return state


def _settled(batch: list[_Event], cutoff: datetime) -> list[_Event]:
    """The batch up to (not including) the first event still settling."""
    for index, event in enumerate(batch):
        if event.occurred_at > cutoff:
            return batch[:index]
    return batch


def _process(session: Session, events: list[_Event], watermark: int) -> set[int]:
    """Judge, count and apply one batch of settled events; returns their campaigns."""
    send_ids = sorted({e.send_id for e in events if e.send_id is not None})
    sends = _sends(session, send_ids)
    context = _context(session, send_ids, events)
    seen = _seen(session, send_ids, watermark)
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    changed, firsts = [], {EventKind.OPEN: {}, EventKind.CLICK: {}}
    for event in events:
        before = (event.human, event.reason, event.send_id)
        send = sends.get(event.send_id) if event.send_id is not None else None
        if event.human:
            _judge(event, send, context.get(event.send_id, []))
        key = (event.send_id, event.link_id or 0, event.kind, event.human)
        unique = event.send_id is None or key not in seen
        seen.add(key)
        if send is not None and not send.may_track:
            event.send_id = None
        elif send is not None and event.human:
            first = firsts[event.kind]
            at = event.occurred_at
            first[event.send_id] = min(first.get(event.send_id, at), at)
        bucket = counts[_bucket(event)]
        bucket[0] += 1
        bucket[1] += unique
        if (event.human, event.reason, event.send_id) != before:
            changed.append(event)
    _save_verdicts(session, changed)
    _save_firsts(session, firsts)
    _add_counts(session, counts)
    return {event.campaign_id for event in events}


def _judge(event: _Event, send: _Send | None, hits: list[_Event]) -> None:
    """Apply the rules that need the message's other hits (in time order)."""
    verdict = _contextual(event, send, hits)
    if verdict is not None:
        event.human, event.reason = verdict.human, verdict.reason


def _contextual(
    event: _Event, send: _Send | None, hits: list[_Event]
) -> machines.Verdict | None:
    at = event.occurred_at
    for hit in hits:
        if hit.reason == HONEYPOT and abs(hit.occurred_at - at) <= HONEYPOT_WINDOW:
            return machines.Verdict(False, HONEYPOT)
    if event.kind is EventKind.CLICK and _in_burst(event, hits):
        return machines.Verdict(False, "scanner_burst")
    if (
        send is not None
        and send.sent_at is not None
        and at - send.sent_at < (machines.TOO_SOON)
    ):
        return machines.Verdict(False, "too_soon_after_sending")
    return None


def _in_burst(event: _Event, hits: list[_Event]) -> bool:
    """Whether a window of BURST_WINDOW that holds this click also holds clicks
    on BURST_LINKS different links of the message (a scanner's signature)."""
    at, window = event.occurred_at, machines.BURST_WINDOW
    near = [
        h
        for h in hits
        if h.kind is EventKind.CLICK and abs(h.occurred_at - at) <= window
    ]
    for start in near:
        if start.occurred_at > at:
            continue
        end = start.occurred_at + window
        links = {h.link_id for h in near if start.occurred_at <= h.occurred_at <= end}
        if len(links) >= machines.BURST_LINKS:
            return True
    return False


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _sends(session: Session, send_ids: list[int]) -> dict[int, _Send]:
    """When each message was handed over, and whether its member may be named."""
    sends = {}
    for chunk in _chunks(send_ids):
        rows = session.execute(
            select(
                SendLog.id,
                SendLog.sent_at,
                SendLog.subscriber_id,
                Membership.tracking_consent,
                Club.tracking_consent_required,
                Club.tracking_mode,
            )
            .join(Campaign, Campaign.id == SendLog.campaign_id)
            .join(Club, Club.id == Campaign.club_id)
            .join(Membership, Membership.id == SendLog.membership_id, isouter=True)
            .where(SendLog.id.in_(chunk))
        )
        for send_id, sent_at, subscriber, consent, required, mode in rows:
            may_track = (
                subscriber is not None
                and mode is TrackingMode.INDIVIDUAL
                and (bool(consent) or not required)
            )
            sends[send_id] = _Send(sent_at, may_track)
    return sends


def _context(
    session: Session, send_ids: list[int], events: list[_Event]
) -> dict[int, list[_Event]]:
    """Every hit of these messages around the batch's events, by message."""
    if not send_ids:
        return {}
    margin = max(HONEYPOT_WINDOW, machines.BURST_WINDOW)
    start = min(e.occurred_at for e in events) - margin
    end = max(e.occurred_at for e in events) + margin
    hits: dict[int, list[_Event]] = defaultdict(list)
    for chunk in _chunks(send_ids):
        for row in session.execute(
            select(*_EVENT_COLUMNS)
            .where(
                TrackEvent.send_id.in_(chunk),
                TrackEvent.occurred_at.between(start, end),
            )
            .order_by(TrackEvent.occurred_at, TrackEvent.id)
        ):
            hits[row.send_id].append(_Event(*row))
    return hits


def _seen(session: Session, send_ids: list[int], watermark: int) -> set[tuple]:
    """(send, link, kind, verdict) of the hits already rolled up: not unique again."""
    seen = set()
    for chunk in _chunks(send_ids):
        rows = session.execute(
            select(
                TrackEvent.send_id,
                func.coalesce(TrackEvent.link_id, 0),
                TrackEvent.kind,
                TrackEvent.human,
            )
            .where(TrackEvent.send_id.in_(chunk), TrackEvent.id <= watermark)
            .distinct()
        )
        seen.update(tuple(row) for row in rows)
    return seen


def _bucket(event: _Event) -> tuple:
    """The TrackCount row an event is counted in."""
    hour = event.occurred_at.replace(minute=0, second=0, microsecond=0)
    return (event.campaign_id, event.link_id or 0, event.kind, hour, event.reason)


def _save_verdicts(session: Session, events: list[_Event]) -> None:
    if not events:
        return
    table = TrackEvent.__table__
    session.execute(
        table.update()
        .where(table.c.id == bindparam("i"))
        .values(human=bindparam("h"), reason=bindparam("r"), send_id=bindparam("s")),
        [{"i": e.id, "h": e.human, "r": e.reason, "s": e.send_id} for e in events],
    )


def _save_firsts(session: Session, firsts: dict[EventKind, dict[int, datetime]]):
    """The member's first human open and click: only ever moved earlier."""
    table = SendLog.__table__
    for kind, column in (
        (EventKind.OPEN, table.c.opened_at),
        (EventKind.CLICK, table.c.clicked_at),
    ):
        if firsts[kind]:
            session.execute(
                table.update()
                .where(
                    table.c.id == bindparam("i"),
                    or_(column.is_(None), column > bindparam("t")),
                )
                .values({column.name: bindparam("t")}),
                [{"i": i, "t": t} for i, t in firsts[kind].items()],
            )


def _insert_for(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _add_counts(session: Session, counts: dict[tuple, list[int]]) -> None:
    if not counts:
        return
    table = TrackCount.__table__
    stmt = _insert_for(session)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["campaign_id", "link_id", "kind", "hour", "reason"],
        set_={
            "hits": table.c.hits + stmt.excluded.hits,
            "uniques": table.c.uniques + stmt.excluded.uniques,
        },
    )
    session.execute(
        stmt,
        [
            {
                "campaign_id": campaign_id,
                "link_id": link_id,
                "kind": kind,
                "hour": hour,
                "reason": reason,
                "hits": hits,
                "uniques": uniques,
            }
            for (campaign_id, link_id, kind, hour, reason), (hits, uniques) in sorted(
                counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][3])
            )
        ],
    )


# ------------------------------------------------------------------ campaign figures


def refresh_stats(
    session: Session, campaign_ids: Iterable[int], now: datetime | None = None
) -> None:
    """Recompute CampaignStats of these campaigns, and of recent ones when stale."""
    now = now or utcnow()
    recent = session.scalars(
        select(Campaign.id)
        .outerjoin(CampaignStats, CampaignStats.campaign_id == Campaign.id)
        .where(
            or_(
                and_(
                    or_(
                        Campaign.status == CampaignStatus.SENDING,
                        Campaign.sent_at >= now - RECENT,
                    ),
                    or_(
                        CampaignStats.updated_at.is_(None),
                        CampaignStats.updated_at < now - STATS_REFRESH,
                    ),
                ),
                # Late bounces and unsubscribes still come in for weeks.
                and_(
                    Campaign.sent_at >= now - LATE,
                    or_(
                        CampaignStats.updated_at.is_(None),
                        CampaignStats.updated_at < now - LATE_REFRESH,
                    ),
                ),
            ),
        )
    ).all()
    for campaign_id in sorted(set(campaign_ids) | set(recent)):
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            _campaign_stats(session, campaign, now)


def _campaign_stats(session: Session, campaign: Campaign, now: datetime) -> None:
    stats = session.get(CampaignStats, campaign.id)
    if stats is None:
        stats = CampaignStats(campaign_id=campaign.id)
        session.add(stats)
    rows = session.execute(
        select(SendLog.status, func.count(), func.count(SendLog.clicked_at))
        .where(SendLog.campaign_id == campaign.id)
        .group_by(SendLog.status)
    ).all()
    by_status = {status: count for status, count, _clicked in rows}
    clickers = sum(clicked for _status, _count, clicked in rows)
    stats.recipients = sum(by_status.values())
    stats.delivered = by_status.get(SendStatus.SENT, 0)
    stats.failed = by_status.get(SendStatus.FAILED, 0)
    stats.bounced = by_status.get(SendStatus.BOUNCED, 0)
    stats.tracked = session.scalar(
        select(func.count())
        .select_from(SendLog)
        .where(
            SendLog.campaign_id == campaign.id,
            SendLog.tracked.is_(True),
            SendLog.status.in_([SendStatus.SENT, SendStatus.BOUNCED]),
        )
    )
    stats.unsubscribed = _unsubscribed(session, campaign)
    _hit_figures(session, stats)
    # Unique clicks are people, not link clicks: members with a first (human)
    # click; for machines, the copies with a machine click among the raw hits
    # (kept as they were once those are purged).
    stats.unique_clicks_human = clickers
    machine_copies = session.scalar(
        select(func.count(func.distinct(TrackEvent.send_id))).where(
            TrackEvent.campaign_id == campaign.id,
            TrackEvent.kind == EventKind.CLICK,
            TrackEvent.human.is_(False),
        )
    )
    if machine_copies or not stats.unique_clicks_machine:
        stats.unique_clicks_machine = machine_copies or 0
    stats.updated_at = now


def _unsubscribed(session: Session, campaign: Campaign) -> int:
    """Members it went to who left the club after it started and before the
    club's next campaign started: the unsubscribes this campaign is blamed for."""
    if campaign.started_at is None:
        return 0
    next_start = session.scalar(
        select(func.min(Campaign.started_at)).where(
            Campaign.club_id == campaign.club_id,
            Campaign.started_at > campaign.started_at,
        )
    )
    left = Membership.unsubscribed_at
    window = [left >= campaign.started_at]
    if next_start is not None:
        window.append(left < next_start)
    return session.scalar(
        select(func.count())
        .select_from(SendLog)
        .join(Membership, Membership.id == SendLog.membership_id)
        .where(
            SendLog.campaign_id == campaign.id,
            SendLog.status.in_([SendStatus.SENT, SendStatus.BOUNCED]),
            Membership.status == MembershipStatus.UNSUBSCRIBED,
            and_(*window),
        )
    )


def _hit_figures(session: Session, stats: CampaignStats) -> None:
    human = case((TrackCount.reason == "human", True), else_=False)
    rows: list[Row] = session.execute(
        select(
            TrackCount.kind,
            human,
            func.sum(TrackCount.hits),
            func.sum(TrackCount.uniques),
        )
        .where(TrackCount.campaign_id == stats.campaign_id)
        .group_by(TrackCount.kind, human)
    ).all()
    figures = {
        (kind, bool(flag)): (hits, uniques) for kind, flag, hits, uniques in rows
    }
    for kind, name in ((EventKind.OPEN, "opens"), (EventKind.CLICK, "clicks")):
        for is_human, side in ((True, "human"), (False, "machine")):
            hits, uniques = figures.get((kind, is_human), (0, 0))
            setattr(stats, f"{name}_{side}", int(hits or 0))
            setattr(stats, f"unique_{name}_{side}", int(uniques or 0))


# ------------------------------------------------------------------ retention


def purge_events(session: Session, now: datetime | None = None) -> int:
    """Delete rolled-up raw events past the retention period; commits each batch."""
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["TRACKING_RETENTION_DAYS"])
    state = session.scalar(select(RollupState).order_by(RollupState.id).limit(1))
    if state is None:
        return 0
    deleted = 0
    for _ in range(PURGE_BATCHES_PER_RUN):
        old = (
            select(TrackEvent.id)
            .where(
                TrackEvent.occurred_at < cutoff,
                TrackEvent.id <= state.last_event_id,
            )
            .limit(PURGE_BATCH)
        )
        count = session.execute(
            delete(TrackEvent)
            .where(TrackEvent.id.in_(old.scalar_subquery()))
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        deleted += count
        if count < PURGE_BATCH:
            break
    return deleted
